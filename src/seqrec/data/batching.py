"""Padded numpy batches from CSR sequences, built with index arrays (no loop over rows).

Everything is **left-padded** with 0 (the models' contract): the most recent item of a row is
in its last column.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from seqrec.data.sequences import Sequences

BUCKET_WINDOW = 50  # batches per shuffled window that is sorted by length when bucketing


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


def n_train_batches(train: Sequences, *, maxlen: int, batch_size: int, bucket: bool = True) -> int:
    """The number of batches :func:`train_batches` yields per epoch (the same with or without
    bucketing: windows hold a whole number of batches)."""
    del maxlen, bucket  # the count does not depend on them
    n = len(trainable_rows(train))
    return -(-n // batch_size)


def batch_rows(
    train: Sequences, *, batch_size: int, rng: np.random.Generator, bucket: bool = True
) -> list[np.ndarray]:
    """One epoch's batches of row indices.

    Rows are shuffled by ``rng``. With ``bucket``, each window of ``BUCKET_WINDOW`` batches is
    sorted by length (stable) and cut into batches, and the batch order is shuffled, so rows of
    similar length share a batch (less padding) while the epoch stays random.
    """
    rows = rng.permutation(trainable_rows(train))
    if not bucket:
        return [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]
    lengths = train.lengths()
    window = BUCKET_WINDOW * batch_size
    batches: list[np.ndarray] = []
    for w in range(0, len(rows), window):
        chunk = rows[w : w + window]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    order = rng.permutation(len(batches))
    return [batches[i] for i in order]


def train_batches(
    train: Sequences,
    *,
    maxlen: int,
    batch_size: int,
    rng: np.random.Generator,
    bucket: bool = True,
    return_rows: bool = False,
) -> Iterator[tuple[np.ndarray, ...]]:
    """One epoch of ``(inputs, targets)`` int64[B, L] batches (``(inputs, targets, rows)`` with
    ``return_rows``; rows are the train rows of the batch, int64[B]).

    Every user with >= 2 training items appears once per epoch with their last ``maxlen + 1``
    items (see :func:`train_pairs`). With ``bucket`` batches group similar lengths and are
    trimmed to their longest row; without it every batch is ``maxlen`` wide.
    """
    for rows in batch_rows(train, batch_size=batch_size, rng=rng, bucket=bucket):
        inputs, targets = train_pairs(train, rows, maxlen, trim=bucket)
        yield (inputs, targets, rows) if return_rows else (inputs, targets)


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
