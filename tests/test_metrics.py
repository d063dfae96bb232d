"""Tie-aware ranking metrics: hand-worked values, brute force over tie orders, naive sort."""

from __future__ import annotations

import doctest
import itertools
import math

import numpy as np
import pytest
import torch

import seqrec.metrics as metrics_module
from seqrec.errors import ConfigError, SeqrecError
from seqrec.metrics import MetricAccumulator, metric_names, rank_metrics

KS = (1, 2, 3, 5, 10)


def one(greater: int, ties: int, ks=KS) -> dict[str, float]:
    return {k: float(v[0]) for k, v in rank_metrics([greater], [ties], ks=ks).items()}


def test_doctests_run() -> None:
    result = doctest.testmod(metrics_module)
    assert result.attempted > 0 and result.failed == 0


def test_keys_and_order() -> None:
    assert metric_names((1, 10)) == ["hr@1", "hr@10", "ndcg@1", "ndcg@10", "mrr@1", "mrr@10", "mrr"]
    assert list(rank_metrics([0], [0], ks=(1, 10))) == metric_names((1, 10))


def test_rank_one_is_perfect() -> None:
    m = one(0, 0)
    assert all(v == 1.0 for v in m.values())


def test_rank_three_by_hand() -> None:
    # greater = 2, no ties -> rank 3.
    m = one(2, 0)
    assert m["hr@1"] == 0.0 and m["hr@2"] == 0.0 and m["hr@3"] == 1.0 and m["hr@5"] == 1.0
    assert m["ndcg@2"] == 0.0
    assert m["ndcg@3"] == pytest.approx(0.5, abs=1e-15)  # 1/log2(4)
    assert m["ndcg@10"] == pytest.approx(0.5, abs=1e-15)
    assert m["mrr@2"] == 0.0
    assert m["mrr@3"] == pytest.approx(1 / 3, abs=1e-15)
    assert m["mrr"] == pytest.approx(1 / 3, abs=1e-15)


def test_rank_seven_by_hand() -> None:
    m = one(6, 0)  # rank 7
    assert m["hr@5"] == 0.0 and m["hr@10"] == 1.0
    assert m["ndcg@10"] == pytest.approx(1 / 3, abs=1e-15)  # 1/log2(8)
    assert m["mrr@10"] == pytest.approx(1 / 7, abs=1e-15)
    assert m["mrr"] == pytest.approx(1 / 7, abs=1e-15)
    assert m["ndcg@5"] == 0.0 and m["mrr@5"] == 0.0


def test_tied_with_three_others_at_top() -> None:
    # greater = 0, ties = 3: rank uniform on {1, 2, 3, 4}.
    m = one(0, 3)
    assert m["hr@1"] == pytest.approx(1 / 4)
    assert m["hr@2"] == pytest.approx(2 / 4)
    assert m["hr@3"] == pytest.approx(3 / 4)
    assert m["hr@5"] == 1.0
    assert m["ndcg@1"] == pytest.approx(1 / 4)
    assert m["ndcg@2"] == pytest.approx((1 + 1 / math.log2(3)) / 4)
    assert m["ndcg@5"] == pytest.approx((1 + 1 / math.log2(3) + 1 / 2 + 1 / math.log2(5)) / 4)
    assert m["mrr@2"] == pytest.approx((1 + 1 / 2) / 4)  # 3/8
    assert m["mrr"] == pytest.approx(25 / 48)  # (1 + 1/2 + 1/3 + 1/4) / 4


def test_ties_straddling_the_cutoff() -> None:
    # greater = 3, ties = 3: rank uniform on {4, 5, 6, 7}; cutoff 5 keeps ranks 4 and 5.
    m = one(3, 3)
    assert m["hr@3"] == 0.0
    assert m["hr@5"] == pytest.approx(2 / 4)
    assert m["ndcg@5"] == pytest.approx((1 / math.log2(5) + 1 / math.log2(6)) / 4)
    assert m["mrr@5"] == pytest.approx((1 / 4 + 1 / 5) / 4)
    assert m["hr@10"] == 1.0
    assert m["mrr"] == pytest.approx((1 / 4 + 1 / 5 + 1 / 6 + 1 / 7) / 4)


def test_constant_scorer_equals_random_ranking() -> None:
    C = 100  # every item tied: greater = 0, ties = C - 1
    m = one(0, C - 1, ks=(1, 5, 10, 20))
    for k in (1, 5, 10, 20):
        assert m[f"hr@{k}"] == pytest.approx(k / C, abs=1e-15)
        assert m[f"ndcg@{k}"] == pytest.approx(
            sum(1 / math.log2(r + 1) for r in range(1, k + 1)) / C, abs=1e-15
        )
        assert m[f"mrr@{k}"] == pytest.approx(sum(1 / r for r in range(1, k + 1)) / C, abs=1e-15)
    assert m["mrr"] == pytest.approx(sum(1 / r for r in range(1, C + 1)) / C, abs=1e-15)


def test_large_ranks_grow_the_tables() -> None:
    g, t = 1_500_000, 700_000
    m = one(g, t, ks=(10,))
    want = math.fsum(1 / r for r in range(g + 1, g + t + 2)) / (t + 1)
    assert m["mrr"] == pytest.approx(want, rel=1e-9)
    assert m["hr@10"] == 0.0 and m["ndcg@10"] == 0.0


def _brute_force(scores: np.ndarray, target: int, ks) -> dict[str, float]:
    """Average the metrics over every tie-breaking order (all permutations of the items)."""
    C = len(scores)
    total = dict.fromkeys(metric_names(ks), 0.0)
    perms = list(itertools.permutations(range(C)))
    for perm in perms:
        tiebreak = np.empty(C)
        tiebreak[list(perm)] = np.arange(C)
        order = sorted(range(C), key=lambda i: (-scores[i], tiebreak[i]))
        rank = order.index(target) + 1
        for k in ks:
            total[f"hr@{k}"] += rank <= k
            total[f"ndcg@{k}"] += (rank <= k) / math.log2(rank + 1)
            total[f"mrr@{k}"] += (rank <= k) / rank
        total["mrr"] += 1 / rank
    return {k: v / len(perms) for k, v in total.items()}


def test_matches_brute_force_over_all_tie_orders() -> None:
    rng = np.random.default_rng(0)
    ks = (1, 2, 3, 5)
    for _ in range(6):
        scores = rng.integers(0, 3, size=6).astype(float)  # many ties among 6 items
        target = int(rng.integers(0, 6))
        greater = int((scores > scores[target]).sum())
        ties = int((scores == scores[target]).sum()) - 1
        got = one(greater, ties, ks=ks)
        want = _brute_force(scores, target, ks)
        for key in want:
            assert got[key] == pytest.approx(want[key], abs=1e-12), (scores, target, key)


def test_matches_naive_sort_without_ties() -> None:
    rng = np.random.default_rng(1)
    n, C, ks = 200, 50, (1, 5, 10, 20)
    scores = rng.standard_normal((n, C))
    targets = rng.integers(0, C, size=n)
    order = np.argsort(-scores, axis=1)
    rank = np.argmax(order == targets[:, None], axis=1) + 1  # 1-based rank of the target
    t_scores = scores[np.arange(n), targets][:, None]
    got = rank_metrics((scores > t_scores).sum(1), (scores == t_scores).sum(1) - 1, ks=ks)
    for k in ks:
        np.testing.assert_allclose(got[f"hr@{k}"], (rank <= k).astype(float))
        np.testing.assert_allclose(got[f"ndcg@{k}"], (rank <= k) / np.log2(rank + 1), atol=1e-15)
        np.testing.assert_allclose(got[f"mrr@{k}"], (rank <= k) / rank, atol=1e-15)
    np.testing.assert_allclose(got["mrr"], 1 / rank, atol=1e-15)


def test_accumulator_matches_functional_core_and_accepts_torch() -> None:
    rng = np.random.default_rng(2)
    g = rng.integers(0, 30, size=101)
    t = rng.integers(0, 4, size=101)
    acc = MetricAccumulator(ks=(1, 10))
    acc.update(torch.from_numpy(g[:40]), torch.from_numpy(t[:40]))
    acc.update(g[40:41], t[40:41])
    acc.update(list(g[41:]), list(t[41:]))
    assert acc.count == 101
    ref = rank_metrics(g, t, ks=(1, 10))
    per = acc.per_example()
    for key, values in ref.items():
        np.testing.assert_array_equal(per[key], values)
        assert acc.compute()[key] == pytest.approx(values.mean(), abs=1e-15)
    gg, tt = acc.greater_ties()
    np.testing.assert_array_equal(gg, g)
    np.testing.assert_array_equal(tt, t)
    acc.reset()
    assert acc.count == 0


def test_accumulator_empty_raises() -> None:
    with pytest.raises(SeqrecError, match="no examples"):
        MetricAccumulator().compute()


@pytest.mark.parametrize(
    ("greater", "ties", "match"),
    [
        ([1, 2], [0], "differ in length"),
        ([-1], [0], "greater must be >= 0"),
        ([0], [-1], "ties must be >= 0"),
        ([[0]], [[0]], "one-dimensional"),
        ([0.5], [0], "integer counts"),
    ],
)
def test_bad_inputs_raise(greater, ties, match) -> None:
    with pytest.raises(SeqrecError, match=match):
        rank_metrics(greater, ties)


@pytest.mark.parametrize("ks", [(), (0,), (5.5,), ("a",), (-1, 5)])
def test_bad_ks_raise(ks) -> None:
    with pytest.raises(ConfigError, match="positive integers"):
        rank_metrics([0], [0], ks=ks)


def test_empty_input_gives_empty_arrays() -> None:
    out = rank_metrics([], [], ks=(1,))
    assert all(v.shape == (0,) for v in out.values())
