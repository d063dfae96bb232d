from __future__ import annotations

import numpy as np
import pytest

from seqrec.config import DataConfig
from seqrec.data.sequences import EvalSet, Sequences
from seqrec.data.split import leave_one_out, make_split, temporal_split
from seqrec.errors import DataError


def rows(seqs: Sequences) -> list[list[int]]:
    return [seqs[u].tolist() for u in range(seqs.n_users)]


def with_ts(lists: list[list[int]], times: list[list[int]]) -> Sequences:
    s = Sequences.from_lists(lists)
    ts = np.concatenate([np.asarray(t, dtype=np.int64) for t in times])
    return Sequences(offsets=s.offsets, items=s.items, n_items=s.n_items, timestamps=ts)


def examples(ev: EvalSet) -> list[tuple[int, list[int], int]]:
    return [(int(ev.users[j]), ev.inputs[j].tolist(), int(ev.targets[j])) for j in range(len(ev))]


def test_leave_one_out_hand_made() -> None:
    seqs = Sequences.from_lists([[1, 2, 3, 4], [5, 6], [7, 8, 9], [], [2]])
    split = leave_one_out(seqs)
    assert split.protocol == "leave-one-out"
    assert rows(split.train) == [[1, 2], [5, 6], [7], [], [2]]
    assert examples(split.valid) == [(0, [1, 2], 3), (2, [7], 8)]
    assert examples(split.test) == [(0, [1, 2, 3], 4), (2, [7, 8], 9)]
    assert split.train.n_items == seqs.n_items == split.valid.inputs.n_items


def test_leave_one_out_matches_naive_on_random() -> None:
    rng = np.random.default_rng(0)
    lists = [rng.integers(1, 50, size=int(rng.integers(0, 12))).tolist() for _ in range(200)]
    split = leave_one_out(Sequences.from_lists(lists, n_items=50))
    train = [s if len(s) < 3 else s[:-2] for s in lists]
    valid = [(u, s[:-2], s[-2]) for u, s in enumerate(lists) if len(s) >= 3]
    test = [(u, s[:-1], s[-1]) for u, s in enumerate(lists) if len(s) >= 3]
    assert rows(split.train) == train
    assert examples(split.valid) == valid
    assert examples(split.test) == test


def test_temporal_split_hand_made() -> None:
    # 10 timestamps 0..9 spread over users; quantiles 0.5 -> 4.5, 0.8 -> 7.2
    seqs = with_ts(
        [[1, 2, 3, 4], [5, 6, 7], [8, 9, 1]],
        [[0, 1, 5, 8], [2, 6, 9], [3, 4, 7]],
    )
    split = temporal_split(seqs, valid_quantile=0.5, test_quantile=0.8)
    assert split.protocol == "temporal"
    assert rows(split.train) == [[1, 2], [5], [8, 9]]
    assert split.train.timestamps.tolist() == [0, 1, 2, 3, 4]
    # valid window [4.5, 7.2): user 0 item 3 (t=5), user 1 item 6 (t=6), user 2 item 1 (t=7)
    assert examples(split.valid) == [(0, [1, 2], 3), (1, [5], 6), (2, [8, 9], 1)]
    # test window t >= 7.2: user 0 item 4 (t=8), user 1 item 7 (t=9); user 2 has none
    assert examples(split.test) == [(0, [1, 2, 3], 4), (1, [5, 6], 7)]


def test_temporal_drops_examples_without_history() -> None:
    seqs = with_ts([[1, 2], [3]], [[0, 1], [9]])
    split = temporal_split(seqs, valid_quantile=0.3, test_quantile=0.6)
    # user 1's only item is in the test window with no history: no example
    assert [int(u) for u in split.test.users] == []
    assert examples(split.valid) == [(0, [1], 2)]


def test_temporal_needs_timestamps() -> None:
    with pytest.raises(DataError, match="needs timestamps"):
        temporal_split(Sequences.from_lists([[1, 2, 3]]))


def test_make_split_dispatch() -> None:
    seqs = with_ts([[1, 2, 3, 4]], [[0, 1, 2, 3]])
    assert make_split(seqs, DataConfig()).protocol == "leave-one-out"
    cfg = DataConfig(split="temporal", valid_quantile=0.4, test_quantile=0.7)
    assert make_split(seqs, cfg).protocol == "temporal"
