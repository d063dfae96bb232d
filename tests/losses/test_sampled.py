"""Sampled losses (bce, bpr) against plain-math loops, with injected negatives."""

from __future__ import annotations

import math

import pytest
import torch

from seqrec.errors import ConfigError, DataError
from seqrec.losses import sampled
from seqrec.losses.pairwise import BPRLoss
from seqrec.losses.pointwise import BCELoss
from seqrec.losses.sampled import sampled_scores
from seqrec.losses.samplers import sample_shared

from .helpers import case, dot, sig


def _naive_bce(hidden, table, targets, negatives) -> float:
    total = 0.0
    for i in range(hidden.shape[0]):
        sp = dot(hidden[i], table[targets[i]])
        term = -math.log(sig(sp))
        k = negatives.shape[1]
        for j in range(k):
            sn = dot(hidden[i], table[negatives[i, j]])
            term -= math.log(1.0 - sig(sn)) / k
        total += term
    return total / hidden.shape[0]


def _naive_bpr(hidden, table, targets, negatives) -> float:
    total = 0.0
    for i in range(hidden.shape[0]):
        sp = dot(hidden[i], table[targets[i]])
        k = negatives.shape[1]
        total += sum(
            -math.log(sig(sp - dot(hidden[i], table[negatives[i, j]]))) / k for j in range(k)
        )
    return total / hidden.shape[0]


@pytest.mark.parametrize(("cls", "naive"), [(BCELoss, _naive_bce), (BPRLoss, _naive_bpr)])
@pytest.mark.parametrize("k", [1, 3])
def test_matches_naive_formula_with_injected_negatives(cls, naive, k):
    hidden, table, targets, negatives = case(k=k)
    loss = cls(9, negatives=k)(hidden, targets, table, negatives=negatives)
    assert loss.item() == pytest.approx(naive(hidden, table, targets, negatives), rel=1e-10)


@pytest.mark.parametrize("cls", [BCELoss, BPRLoss])
def test_sampled_negatives_reproducible_and_used(cls):
    hidden, table, targets, _ = case()
    loss = cls(9, negatives=4, pool="not-target")
    a = loss(hidden, targets, table, generator=torch.Generator().manual_seed(1))
    b = loss(hidden, targets, table, generator=torch.Generator().manual_seed(1))
    assert a.item() == b.item()
    # the same draw injected by hand gives the same value
    neg = loss.sample(targets, generator=torch.Generator().manual_seed(1))
    assert loss(hidden, targets, table, negatives=neg).item() == pytest.approx(a.item(), rel=1e-12)


def test_stable_for_huge_scores():
    hidden = torch.tensor([[100.0, 0.0]])
    table = torch.tensor([[0.0, 0.0], [-10.0, 0.0], [10.0, 0.0]])  # target scores -1000
    for cls in (BCELoss, BPRLoss):
        loss = cls(2)(hidden, torch.tensor([1]), table, negatives=torch.tensor([[2]]))
        assert torch.isfinite(loss) and loss.item() > 900


def test_shared_negatives_score_like_per_row():
    hidden, table, targets, _ = case(n=6)
    shared = sample_shared(6, 9, 4, generator=torch.Generator().manual_seed(2))
    pos_a, neg_a = sampled_scores(hidden, targets, shared, table)
    pos_b, neg_b = sampled_scores(hidden, targets, shared.contiguous(), table)
    torch.testing.assert_close(neg_a, neg_b)
    torch.testing.assert_close(pos_a, pos_b)


def test_bad_injected_negatives_raise():
    hidden, table, targets, negatives = case()
    loss = BCELoss(9, negatives=3)
    with pytest.raises(DataError, match=r"1\.\.9"):
        loss(hidden, targets, table, negatives=negatives * 0)
    with pytest.raises(DataError, match=r"\(N, K\)"):
        loss(hidden, targets, table, negatives=negatives[:2])
    with pytest.raises(DataError, match="built for"):
        BCELoss(8)(hidden, targets, table)


@pytest.mark.parametrize("method", ["gather", "dense", "sparse", "auto"])
@pytest.mark.parametrize("block", [1, 64, 1 << 22])  # one row per chunk, several rows, one chunk
def test_gather_scores_matches_plain_gather(monkeypatch, block, method):
    monkeypatch.setattr(sampled, "GATHER_BLOCK", block)
    monkeypatch.setattr(sampled, "SPARSE_BLOCK", block)
    g = torch.Generator().manual_seed(5)
    hidden = torch.randn(13, 4, generator=g, dtype=torch.float64, requires_grad=True)
    table = torch.randn(10, 4, generator=g, dtype=torch.float64, requires_grad=True)
    ids = torch.randint(1, 10, (13, 6), generator=g)
    ids[0, :3] = 4  # repeated ids within a row add up
    weights = torch.randn(13, 6, generator=g, dtype=torch.float64)
    ref = (table[ids] * hidden[:, None]).sum(-1)  # (N, M)
    gh_ref, gt_ref = torch.autograd.grad((ref * weights).sum(), (hidden, table))
    got = sampled.gather_scores(hidden, table, ids, method=method)
    gh, gt = torch.autograd.grad((got * weights).sum(), (hidden, table))
    torch.testing.assert_close(got, ref)
    torch.testing.assert_close(gh, gh_ref)
    torch.testing.assert_close(gt, gt_ref)
    assert torch.autograd.gradcheck(
        lambda h, t: sampled.gather_scores(h, t, ids[:3], method=method), (hidden[:3], table)
    )


def _spy(monkeypatch, cls: type) -> list[int]:
    calls: list[int] = []
    apply = cls.apply
    monkeypatch.setattr(cls, "apply", lambda *a: calls.append(1) or apply(*a))
    return calls


def test_sparse_scores_are_supported_and_chosen_by_auto(monkeypatch):
    """The torch CI runs passes the one-time check, so "auto" takes the sparse path (and the
    tests above exercise it); rows with more entries than the catalogue has rows go dense."""
    assert sampled.sparse_scores_supported()
    calls = _spy(monkeypatch, sampled._SparseGatherScores)
    dense = _spy(monkeypatch, sampled._DenseGatherScores)
    hidden, table = torch.randn(4, 3), torch.randn(1000, 3)
    sampled.gather_scores(hidden, table, torch.randint(1, 1000, (4, 7)))
    assert calls == [1] and dense == []
    hidden, table = torch.randn(3, 5, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64)
    ids = torch.randint(0, 4, (3, 9))  # 9 entries a row > 4 catalogue rows
    got = sampled.gather_scores(hidden, table, ids, method="sparse")
    assert calls == [1] and dense == [1]
    torch.testing.assert_close(got, (table[ids] * hidden[:, None]).sum(-1))


def test_sparse_scores_take_strided_inputs():
    """Views as a model hands them over (every other row/column, sliced ids) and an empty batch."""
    g = torch.Generator().manual_seed(1)
    big = torch.randn(40, 16, generator=g, dtype=torch.float64, requires_grad=True)
    table = torch.randn(30, 16, generator=g, dtype=torch.float64, requires_grad=True)
    hidden, items = big[::2, ::2], table[:, ::2]  # (20, 8), (30, 8), neither contiguous
    ids = torch.randint(0, 30, (20, 7), generator=g)[:, :5]  # (20, 5), not contiguous
    weights = torch.randn(20, 5, generator=g, dtype=torch.float64)
    ref = (items[ids] * hidden[:, None]).sum(-1)
    want = (ref, *torch.autograd.grad((ref * weights).sum(), (big, table)))
    got = sampled.gather_scores(hidden, items, ids, method="sparse")
    have = (got, *torch.autograd.grad((got * weights).sum(), (big, table)))
    for a, b in zip(have, want, strict=True):
        torch.testing.assert_close(a, b)
    empty = torch.zeros(0, 8, requires_grad=True)
    out = sampled.gather_scores(empty, torch.randn(30, 8), torch.zeros(0, 5, dtype=torch.long))
    assert out.shape == (0, 5)
    out.sum().backward()
    assert empty.grad is not None and empty.grad.shape == (0, 8)


@pytest.mark.parametrize("threads", [1, 2])
def test_sparse_scores_at_training_size(threads):
    """A training-sized batch (many repeats, unsorted ids, several item-gradient chunks) in
    float32 at 1 and 2 threads: the kernels torch picks for large sparse products agree with
    the plain gather as the small cases do."""
    g = torch.Generator().manual_seed(11)
    hidden = torch.randn(3000, 16, generator=g, requires_grad=True)
    table = torch.randn(400, 16, generator=g, requires_grad=True)
    ids = torch.randint(0, 400, (3000, 101), generator=g)
    weights = torch.randn(3000, 101, generator=g)
    ref = (table[ids] * hidden[:, None]).sum(-1)  # (N, M)
    want = (ref, *torch.autograd.grad((ref * weights).sum(), (hidden, table)))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        got = sampled.gather_scores(hidden, table, ids, method="sparse")
        have = (got, *torch.autograd.grad((got * weights).sum(), (hidden, table)))
    finally:
        torch.set_num_threads(before)
    for a, b in zip(have, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_sparse_scores_check_is_not_fooled_by_the_callers_grad_mode():
    """First used from evaluation code (no_grad, inference_mode), the check still passes."""
    for mode in (torch.no_grad, torch.inference_mode):
        sampled.sparse_scores_supported.cache_clear()
        try:
            with mode():
                assert sampled.sparse_scores_supported()
        finally:
            sampled.sparse_scores_supported.cache_clear()


def test_sparse_scores_check_refuses_a_wrong_kernel(monkeypatch):
    """The one-time check is a real comparison: a kernel that loses a repeated entry fails it,
    and gather_scores then falls back to the other methods."""
    sampled.sparse_scores_supported.cache_clear()
    real = torch.sparse.sampled_addmm

    def loses_repeats(pattern, a, b, **kw):  # as if the kernel kept one entry per column
        out = real(pattern, a, b, **kw)
        v = out.values().clone()
        v[2] = 0.0  # the second of row 0's repeated column 2
        return torch.sparse_csr_tensor(
            out.crow_indices(), out.col_indices(), v, out.shape, check_invariants=False
        )

    monkeypatch.setattr(torch.sparse, "sampled_addmm", loses_repeats)
    try:
        assert not sampled.sparse_scores_supported()
        calls = _spy(monkeypatch, sampled._SparseGatherScores)
        sampled.gather_scores(torch.randn(4, 3), torch.randn(1000, 3), torch.ones(4, 2).long())
        assert calls == []
    finally:
        sampled.sparse_scores_supported.cache_clear()


def test_gather_scores_method_choice_and_bad_method(monkeypatch):
    """Without the sparse path, auto scores densely only when the M picked columns are a
    sizeable share of C + 1."""
    monkeypatch.setattr(sampled, "sparse_scores_supported", lambda: False)
    calls = _spy(monkeypatch, sampled._DenseGatherScores)
    hidden, table = torch.randn(4, 3), torch.randn(1000, 3)
    many = torch.randint(1, 1000, (4, 1000 // sampled.DENSE_RATIO + 1))
    few = torch.randint(1, 1000, (4, 1000 // sampled.DENSE_RATIO - 1))
    sampled.gather_scores(hidden, table, many)
    assert calls == [1]
    sampled.gather_scores(hidden, table, few)
    assert calls == [1]
    with pytest.raises(ConfigError, match="method must be"):
        sampled.gather_scores(hidden, table, torch.ones(4, 2, dtype=torch.long), method="fast")
