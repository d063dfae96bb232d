from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from seqrec.data.preprocess import prepare
from seqrec.data.readers import Interactions
from seqrec.data.sequences import Sequences
from seqrec.errors import DataError


def rows(seqs: Sequences) -> list[list[int]]:
    return [seqs[u].tolist() for u in range(seqs.n_users)]


def raw_rows(seqs: Sequences, vocab) -> dict[str, list[str]]:
    return {vocab.users[u]: [vocab.items[i - 1] for i in seqs[u]] for u in range(seqs.n_users)}


def inter(users, items, ts=None) -> Interactions:
    return Interactions(
        users=np.asarray(users),
        items=np.asarray(items),
        timestamps=None if ts is None else np.asarray(ts),
    )


def test_chronological_with_stable_ties() -> None:
    x = inter(
        users=[1, 2, 1, 1, 2, 1],
        items=[10, 20, 11, 12, 21, 13],
        ts=[5, 1, 3, 5, 0, 3],
    )
    seqs, vocab = prepare(x)
    got = raw_rows(seqs, vocab)
    # user 1: t=3 (11, 13 in file order), then t=5 (10, 12 in file order)
    assert got == {"1": ["11", "13", "10", "12"], "2": ["21", "20"]}
    assert rows(seqs)[0] == [2, 4, 1, 3]
    assert seqs.timestamps.tolist() == [3, 3, 5, 5, 0, 1]


def test_without_timestamps_file_order_per_user() -> None:
    seqs, vocab = prepare(inter(users=[2, 1, 2, 1], items=[5, 6, 7, 5]))
    assert raw_rows(seqs, vocab) == {"1": ["6", "5"], "2": ["5", "7"]}
    assert seqs.timestamps is None


def test_dedupe_consecutive() -> None:
    seqs, _ = prepare(inter(users=[0] * 6, items=[1, 1, 2, 1, 1, 3]), dedupe_consecutive=True)
    assert rows(seqs) == [[1, 2, 1, 3]]
    seqs, _ = prepare(inter(users=[0] * 6, items=[1, 1, 2, 1, 1, 3]))
    assert rows(seqs) == [[1, 1, 2, 1, 1, 3]]


def test_remap_keeps_already_remapped_ids_and_sorts_numerically() -> None:
    users = [1, 2, 3, 10, 9]
    items = [1, 2, 3, 4, 5]
    seqs, vocab = prepare(inter(users=users, items=items))
    assert vocab.items == ("1", "2", "3", "4", "5")
    assert vocab.users == ("1", "2", "3", "9", "10")  # numeric, not "10" < "9"
    assert rows(seqs) == [[1], [2], [3], [5], [4]]
    # integer ids given as strings are ordered numerically too
    _, vocab2 = prepare(inter(users=["10", "9"], items=["20", "100"]))
    assert vocab2.users == ("9", "10") and vocab2.items == ("20", "100")


def test_string_ids_are_lexicographic() -> None:
    seqs, vocab = prepare(inter(users=["b", "a", "b"], items=["y", "x", "z"]))
    assert vocab.users == ("a", "b") and vocab.items == ("x", "y", "z")
    assert rows(seqs) == [[1], [2, 3]]


def test_k_core_needs_more_than_one_pass() -> None:
    # 2-core. Pass 1 drops user C (1 item) and item q (1 user); then z has 1 user -> dropped;
    # then B has 1 item -> dropped; then y has 1 user -> dropped. A and D survive on w, x.
    users = ["A", "A", "B", "B", "C", "D", "D", "A", "D"]
    items = ["w", "x", "y", "z", "z", "w", "x", "y", "q"]
    seqs, vocab = prepare(inter(users, items), min_user_interactions=2, min_item_interactions=2)
    assert raw_rows(seqs, vocab) == {"A": ["w", "x"], "D": ["w", "x"]}


def naive_k_core(pairs: list[tuple[int, int]], ku: int, ki: int) -> list[tuple[int, int]]:
    while True:
        cu = Counter(u for u, _ in pairs)
        ci = Counter(i for _, i in pairs)
        kept = [(u, i) for u, i in pairs if cu[u] >= ku and ci[i] >= ki]
        if len(kept) == len(pairs):
            return kept
        pairs = kept


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_k_core_is_a_fixed_point_and_matches_naive(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 3000
    users = rng.integers(0, 400, size=n)
    items = (rng.zipf(1.6, size=n) % 500).astype(np.int64)
    seqs, vocab = prepare(inter(users, items), min_user_interactions=5, min_item_interactions=4)
    lengths = seqs.lengths()
    counts = np.bincount(seqs.items, minlength=seqs.n_items + 1)[1:]
    assert lengths.min() >= 5 and counts.min() >= 4
    expected = naive_k_core(list(zip(users.tolist(), items.tolist(), strict=True)), 5, 4)
    got = [
        (int(vocab.users[u]), int(vocab.items[i - 1])) for u in range(seqs.n_users) for i in seqs[u]
    ]
    exp_by_user = sorted(expected, key=lambda p: p[0])  # stable: file order within a user
    assert got == exp_by_user


def test_dedupe_and_k_core_reach_a_joint_fixed_point() -> None:
    # removing item 'b' (too rare) makes 'a a' consecutive; dedupe must then drop one 'a'
    users = [0, 0, 0, 1, 1, 2, 2]
    items = ["a", "b", "a", "a", "c", "a", "c"]
    seqs, vocab = prepare(inter(users, items), min_item_interactions=2, dedupe_consecutive=True)
    got = raw_rows(seqs, vocab)
    assert got["0"] == ["a"]
    for u in range(seqs.n_users):
        s = seqs[u]
        assert not np.any(s[1:] == s[:-1])


def test_nothing_left_names_thresholds() -> None:
    with pytest.raises(DataError, match="min_user_interactions=10"):
        prepare(inter([1, 1, 2], [1, 2, 3]), min_user_interactions=10)


def test_empty_input() -> None:
    with pytest.raises(DataError, match="no interactions"):
        prepare(inter(np.zeros(0, np.int64), np.zeros(0, np.int64)))
