from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from seqrec.data.batching import (
    left_pad,
    n_train_batches,
    sorted_history,
    train_batches,
    train_pairs,
)
from seqrec.data.sequences import Sequences


def random_seqs(seed: int, n_users: int = 300, n_items: int = 40, max_len: int = 30) -> Sequences:
    rng = np.random.default_rng(seed)
    lists = [
        rng.integers(1, n_items + 1, size=int(rng.integers(0, max_len))).tolist()
        for _ in range(n_users)
    ]
    return Sequences.from_lists(lists, n_items=n_items)


def naive_left_pad(seqs: Sequences, rows: np.ndarray, width: int, maxlen: int) -> np.ndarray:
    out = np.zeros((len(rows), width), dtype=np.int64)
    for b, u in enumerate(rows):
        s = seqs[u][-maxlen:] if maxlen > 0 else seqs[u][:0]
        if len(s):
            out[b, width - len(s) :] = s
    return out


def test_left_pad_hand_made() -> None:
    seqs = Sequences.from_lists([[1, 2, 3, 4], [5], [6, 7]])
    got = left_pad(seqs, np.array([0, 1, 2]), maxlen=3)
    assert got.tolist() == [[2, 3, 4], [0, 0, 5], [0, 6, 7]]
    got = left_pad(seqs, np.array([1, 2]), maxlen=5)
    assert got.tolist() == [[0, 5], [6, 7]]  # trimmed to the longest selected row
    got = left_pad(seqs, np.array([1, 2]), maxlen=5, trim=False)
    assert got.tolist() == [[0, 0, 0, 0, 5], [0, 0, 0, 6, 7]]
    assert got.dtype == np.int64


@pytest.mark.parametrize("maxlen", [1, 7, 50])
@pytest.mark.parametrize("trim", [True, False])
def test_left_pad_matches_naive(maxlen: int, trim: bool) -> None:
    seqs = random_seqs(0)
    rows = np.random.default_rng(1).choice(seqs.n_users, size=64, replace=False)
    got = left_pad(seqs, rows, maxlen, trim=trim)
    width = min(int(seqs.lengths()[rows].max()), maxlen) if trim else maxlen
    assert np.array_equal(got, naive_left_pad(seqs, rows, width, maxlen))


def test_train_pairs_hand_made_alignment() -> None:
    seqs = Sequences.from_lists([[1, 2, 3, 4, 5], [6, 7]])
    inputs, targets = train_pairs(seqs, np.array([0, 1]), maxlen=3)
    assert inputs.tolist() == [[2, 3, 4], [0, 0, 6]]
    assert targets.tolist() == [[3, 4, 5], [0, 0, 7]]


def epoch_pairs(batches) -> Counter:
    """(row, distance from the end, input, target) of every non-padding position."""
    out: Counter = Counter()
    for inputs, targets, rows in batches:
        assert inputs.shape == targets.shape and inputs.dtype == np.int64
        assert np.array_equal(inputs == 0, targets == 0)  # padding aligned
        L = inputs.shape[1]
        b, j = np.nonzero(targets)
        for bb, jj in zip(b.tolist(), j.tolist(), strict=True):
            out[(int(rows[bb]), L - jj, int(inputs[bb, jj]), int(targets[bb, jj]))] += 1
    return out


def expected_pairs(seqs: Sequences, maxlen: int) -> Counter:
    out: Counter = Counter()
    for u in range(seqs.n_users):
        s = seqs[u].tolist()[-(maxlen + 1) :]
        for k in range(1, len(s)):
            out[(u, len(s) - k, s[k - 1], s[k])] += 1
    return out


def flat(batches) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Every piece of every batch as (inputs, targets, rows)."""
    return [(p.inputs, p.targets, p.rows) for pieces in batches for p in pieces]


@pytest.mark.parametrize("piece_rows", [None, 1, 5, 64])
def test_every_training_pair_once_per_epoch(piece_rows: int | None) -> None:
    seqs = random_seqs(2)
    maxlen, bs = 10, 16
    rng = np.random.default_rng(0)
    batches = list(
        train_batches(seqs, maxlen=maxlen, batch_size=bs, rng=rng, piece_rows=piece_rows)
    )
    got = epoch_pairs(flat(batches))
    assert got == expected_pairs(seqs, maxlen)
    assert max(got.values()) == 1
    assert len(batches) == n_train_batches(seqs, batch_size=bs)
    all_rows = np.concatenate([r for _, _, r in flat(batches)])
    assert sorted(all_rows.tolist()) == np.flatnonzero(seqs.lengths() >= 2).tolist()
    assert all(sum(len(p.rows) for p in pieces) <= bs for pieces in batches)
    if piece_rows is None:
        assert all(len(pieces) == 1 and pieces[0].inputs.shape[1] == maxlen for pieces in batches)
    else:
        assert all(len(p.rows) <= piece_rows for pieces in batches for p in pieces)


def test_pieces_change_only_padding_not_batches() -> None:
    """Cutting batches into length pieces keeps each batch's users and pairs, with less padding."""
    seqs = random_seqs(3, n_users=2000, max_len=60)
    kw = dict(maxlen=50, batch_size=64)
    a = list(train_batches(seqs, rng=np.random.default_rng(0), piece_rows=8, **kw))
    b = list(train_batches(seqs, rng=np.random.default_rng(0), piece_rows=None, **kw))
    assert len(a) == len(b)
    for pa, pb in zip(a, b, strict=True):  # the same users in the same batch
        assert sorted(np.concatenate([p.rows for p in pa]).tolist()) == sorted(pb[0].rows.tolist())
        assert epoch_pairs(flat([pa])) == epoch_pairs(flat([pb]))
    cells = lambda bs: sum(x[0].size for x in flat(bs))  # noqa: E731
    assert cells(a) < 0.8 * cells(b)  # pieces save padding
    for inputs, _, _ in flat(a):  # each piece is trimmed to its longest row
        assert np.any(inputs[:, 0] != 0)


def test_batches_are_not_grouped_by_length() -> None:
    """Batches are uniform samples: their mean lengths vary like random draws, not sorted ones."""
    seqs = random_seqs(7, n_users=4000, max_len=60)
    batches = list(train_batches(seqs, maxlen=50, batch_size=100, rng=np.random.default_rng(0)))
    lengths = seqs.lengths()
    means = np.array([lengths[np.concatenate([p.rows for p in b])].mean() for b in batches])
    overall = lengths[lengths >= 2]
    # a random batch of 100 has a mean within a few standard errors of the overall mean
    se = overall.std() / np.sqrt(100)
    assert np.all(np.abs(means[:-1] - overall.mean()) < 5 * se)


def test_shuffling_is_seeded_and_changes_between_epochs() -> None:
    seqs = random_seqs(4)
    kw = dict(maxlen=10, batch_size=16)
    rng1, rng2 = np.random.default_rng(5), np.random.default_rng(5)
    e1 = [r.tolist() for _, _, r in flat(train_batches(seqs, rng=rng1, **kw))]
    e1b = [r.tolist() for _, _, r in flat(train_batches(seqs, rng=rng2, **kw))]
    e2 = [r.tolist() for _, _, r in flat(train_batches(seqs, rng=rng1, **kw))]
    assert e1 == e1b
    assert e1 != e2


def test_tiny_batch_pairs() -> None:
    seqs = Sequences.from_lists([[1, 2, 3], [4]])
    out = list(train_batches(seqs, maxlen=5, batch_size=4, rng=np.random.default_rng(0)))
    assert len(out) == 1 and len(out[0]) == 1
    assert out[0][0].inputs.tolist() == [[1, 2]] and out[0][0].targets.tolist() == [[2, 3]]


def test_sorted_history_hand_made_and_naive() -> None:
    seqs = Sequences.from_lists([[5, 3, 5, 1], [], [2, 2], [9, 8, 7, 6]], n_items=9)
    got = sorted_history(seqs, np.array([0, 1, 2, 3]))
    assert got.tolist() == [[0, 1, 3, 5], [0, 0, 0, 0], [0, 0, 0, 2], [6, 7, 8, 9]]
    got = sorted_history(seqs, np.array([3, 0]), max_items=2)
    assert got.tolist() == [[6, 7], [1, 5]]

    big = random_seqs(6)
    rows = np.arange(big.n_users)
    h = sorted_history(big, rows, max_items=12)
    for u in rows:
        expected = sorted(set(big[u][-12:].tolist()))
        row = h[u]
        assert row[row > 0].tolist() == expected
        assert np.all(row[: len(row) - len(expected)] == 0)
