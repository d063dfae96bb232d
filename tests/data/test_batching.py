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


@pytest.mark.parametrize("bucket", [True, False])
def test_every_training_pair_once_per_epoch(bucket: bool) -> None:
    seqs = random_seqs(2)
    maxlen, bs = 10, 16
    rng = np.random.default_rng(0)
    batches = list(
        train_batches(seqs, maxlen=maxlen, batch_size=bs, rng=rng, bucket=bucket, return_rows=True)
    )
    got = epoch_pairs(batches)
    assert got == expected_pairs(seqs, maxlen)
    assert max(got.values()) == 1
    assert len(batches) == n_train_batches(seqs, maxlen=maxlen, batch_size=bs, bucket=bucket)
    all_rows = np.concatenate([r for _, _, r in batches])
    assert sorted(all_rows.tolist()) == np.flatnonzero(seqs.lengths() >= 2).tolist()
    if not bucket:
        assert all(b[0].shape[1] == maxlen for b in batches)


def test_bucketing_changes_only_order_and_padding() -> None:
    seqs = random_seqs(3, n_users=2000, max_len=60)
    kw = dict(maxlen=50, batch_size=8, return_rows=True)
    a = list(train_batches(seqs, rng=np.random.default_rng(0), bucket=True, **kw))
    b = list(train_batches(seqs, rng=np.random.default_rng(0), bucket=False, **kw))
    assert epoch_pairs(a) == epoch_pairs(b)
    cells = lambda bs: sum(x[0].size for x in bs)  # noqa: E731
    assert cells(a) < 0.8 * cells(b)  # bucketing saves padding
    for inputs, _, _ in a:  # each bucketed batch is trimmed to its longest row
        assert np.any(inputs[:, 0] != 0)


def test_shuffling_is_seeded_and_changes_between_epochs() -> None:
    seqs = random_seqs(4)
    kw = dict(maxlen=10, batch_size=16, return_rows=True)
    rng1, rng2 = np.random.default_rng(5), np.random.default_rng(5)
    e1 = [r.tolist() for _, _, r in train_batches(seqs, rng=rng1, **kw)]
    e1b = [r.tolist() for _, _, r in train_batches(seqs, rng=rng2, **kw)]
    e2 = [r.tolist() for _, _, r in train_batches(seqs, rng=rng1, **kw)]
    assert e1 == e1b
    assert e1 != e2


def test_without_rows_yields_pairs() -> None:
    seqs = Sequences.from_lists([[1, 2, 3], [4]])
    out = list(train_batches(seqs, maxlen=5, batch_size=4, rng=np.random.default_rng(0)))
    assert len(out) == 1 and len(out[0]) == 2
    assert out[0][0].tolist() == [[1, 2]] and out[0][1].tolist() == [[2, 3]]


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
