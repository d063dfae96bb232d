"""Padded numpy batches from CSR sequences, built with index arrays (no loop over rows).

Everything is **left-padded** with 0 (the models' contract): the most recent item of a row is
in its last column.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from seqrec.data.sequences import Sequences

PIECE_ROWS = 64  # rows per separately encoded piece of a training batch (see train_batches)
#: the same for models that spend no work on padding (``packs_padding``, e.g. SASRec): only their
#: attention grid grows with a piece's width, so fewer, larger pieces are faster (measured on
#: Beauty, SASRec, forward + backward: 128 rows ~25% faster than 64-row padded pieces; 256 rows
#: and whole batches slower again, their attention grids are mostly padding)
PACKED_PIECE_ROWS = 128


def _gather_tails(
    seqs: Sequences, rows: np.ndarray, take: np.ndarray, width: int, shift: int = 0
) -> np.ndarray:
    """int64[B, width]: row b holds ``take[b]`` items ending ``shift`` items before the end of
    sequence ``rows[b]``, right-aligned, 0 elsewhere."""
    B = len(rows)
    out = np.zeros((B, width), dtype=np.int64)
    total = int(take.sum())
    if total == 0:
        return out
    b = np.repeat(np.arange(B, dtype=np.int64), take)  # (T,)
    starts = np.zeros(B, dtype=np.int64)
    np.cumsum(take[:-1], out=starts[1:])
    k = np.arange(total, dtype=np.int64) - starts[b]  # 0..take[b]-1
    col = width - take[b] + k
    src = seqs.offsets[rows[b] + 1] - shift - take[b] + k
    out[b, col] = seqs.items[src]
    return out


def left_pad(seqs: Sequences, rows: np.ndarray, maxlen: int, *, trim: bool = True) -> np.ndarray:
    """int64[B, L]: the last ``maxlen`` items of each selected row, left-padded with 0.

    L = maxlen, or with ``trim`` the longest selected row capped at maxlen (at least 1).
    """
    rows = np.asarray(rows, dtype=np.int64)
    take = np.minimum(seqs.lengths()[rows], maxlen)
    width = maxlen if not trim else max(int(take.max()) if len(take) else 0, 1)
    return _gather_tails(seqs, rows, take, width)


def train_pairs(
    train: Sequences, rows: np.ndarray, maxlen: int, *, trim: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets) int64[B, L] for the given rows (each must have >= 2 items).

    Of each row's last ``maxlen + 1`` items, inputs are all but the last and targets all but
    the first, right-aligned, so ``targets[b, j]`` is the item after ``inputs[b, j]``; 0 where
    padding. L = maxlen, or with ``trim`` the longest row's number of pairs.
    """
    rows = np.asarray(rows, dtype=np.int64)
    take = np.minimum(train.lengths()[rows] - 1, maxlen)
    width = maxlen if not trim else max(int(take.max()) if len(take) else 0, 1)
    inputs = _gather_tails(train, rows, take, width, shift=1)  # (B, L)
    targets = _gather_tails(train, rows, take, width, shift=0)  # (B, L)
    return inputs, targets


def trainable_rows(train: Sequences) -> np.ndarray:
    """int64: the rows with at least 2 training items (one input and one target)."""
    return np.flatnonzero(train.lengths() >= 2).astype(np.int64)


def n_train_batches(train: Sequences, *, batch_size: int) -> int:
    """The number of batches :func:`train_batches` yields per epoch."""
    return -(-len(trainable_rows(train)) // batch_size)


def batch_rows(train: Sequences, *, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch's batches of row indices: a uniform shuffle cut into batches.

    Batches are *not* grouped by length across the epoch: that makes every batch a sample of
    similar users, and since the loss is a mean per batch it gives the positions of short
    sequences far more weight than those of long ones. Measured on Beauty (SASRec-ce, Xu et al.
    settings) it cost ~10% test NDCG@10. Padding is saved inside each batch instead
    (:func:`length_pieces`), which leaves the objective untouched.
    """
    rows = rng.permutation(trainable_rows(train))
    return [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]


def length_pieces(rows: np.ndarray, lengths: np.ndarray, piece_rows: int) -> list[np.ndarray]:
    """Cut one batch's rows into pieces of at most ``piece_rows`` rows of similar length.

    rows: int64[B]; lengths: the length of every row of the store. Rows are sorted by length
    (stable), so each piece can be trimmed to its own longest row.
    """
    ordered = rows[np.argsort(lengths[rows], kind="stable")]
    return [ordered[i : i + piece_rows] for i in range(0, len(ordered), piece_rows)]


@dataclass(frozen=True)
class Piece:
    """Part of a training batch, encoded on its own: inputs and targets int64[b, L] (left-padded,
    ``targets[r, j]`` is the item after ``inputs[r, j]``), and the store rows int64[b]."""

    inputs: np.ndarray
    targets: np.ndarray
    rows: np.ndarray


def train_batches(
    train: Sequences,
    *,
    maxlen: int,
    batch_size: int,
    rng: np.random.Generator,
    piece_rows: int | None = PIECE_ROWS,
) -> Iterator[list[Piece]]:
    """One epoch of batches; each batch is a list of :class:`Piece`.

    Every user with >= 2 training items appears once per epoch with their last ``maxlen + 1``
    items (see :func:`train_pairs`), in a uniformly random batch. With ``piece_rows`` a batch is
    cut into pieces of similar length, each trimmed to its longest row (far less padding to
    encode; the loss still runs once over all positions of the batch). With ``None`` a batch is
    one piece, ``maxlen`` wide: the plain path, which gives the same hidden states.
    """
    lengths = train.lengths()
    for rows in batch_rows(train, batch_size=batch_size, rng=rng):
        if piece_rows is None:
            inputs, targets = train_pairs(train, rows, maxlen, trim=False)
            yield [Piece(inputs, targets, rows)]
            continue
        pieces = []
        for part in length_pieces(rows, lengths, piece_rows):
            inputs, targets = train_pairs(train, part, maxlen, trim=True)
            pieces.append(Piece(inputs, targets, part))
        yield pieces


def sorted_history(seqs: Sequences, rows: np.ndarray, max_items: int | None = None) -> np.ndarray:
    """int64[B, H]: the distinct items of each selected row sorted ascending, left-padded with 0.

    With ``max_items`` only the row's last ``max_items`` interactions count. H is the largest
    number of distinct items in a row (at least 1). Used for "not-history" negative sampling
    (``seqrec.losses.base.History``).
    """
    rows = np.asarray(rows, dtype=np.int64)
    lengths = seqs.lengths()[rows]
    take = lengths if max_items is None else np.minimum(lengths, max_items)
    B = len(rows)
    total = int(take.sum())
    if total == 0:
        return np.zeros((B, 1), dtype=np.int64)
    b = np.repeat(np.arange(B, dtype=np.int64), take)
    starts = np.zeros(B, dtype=np.int64)
    np.cumsum(take[:-1], out=starts[1:])
    k = np.arange(total, dtype=np.int64) - starts[b]
    items = seqs.items[seqs.offsets[rows[b] + 1] - take[b] + k].astype(np.int64)
    key = np.sort(b * (seqs.n_items + 1) + items)  # by row, then item
    fresh = np.ones(len(key), dtype=bool)
    fresh[1:] = key[1:] != key[:-1]
    key = key[fresh]
    b, items = key // (seqs.n_items + 1), key % (seqs.n_items + 1)
    count = np.bincount(b, minlength=B)
    width = max(int(count.max()), 1)
    ends = np.cumsum(count)
    col = width - (ends[b] - np.arange(len(key)))  # last item of a row goes to column width-1
    out = np.zeros((B, width), dtype=np.int64)
    out[b, col] = items
    return out
