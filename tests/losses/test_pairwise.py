"""top1, bpr-max, top1-max against explicit per-row formulas (Hidasi & Karatzoglou 2018)."""

from __future__ import annotations

import math

import pytest
import torch

from seqrec.errors import ConfigError
from seqrec.losses.pairwise import BPRMaxLoss, TOP1Loss, TOP1MaxLoss

from .helpers import case, scores, sig


def _softmax(xs: list[float]) -> list[float]:
    m = max(xs)
    e = [math.exp(x - m) for x in xs]
    return [v / sum(e) for v in e]


def _mean_rows(fn, hidden, table, targets, negatives) -> float:
    n = hidden.shape[0]
    return sum(fn(*scores(hidden, table, targets, negatives, i)) for i in range(n)) / n


def _top1(sp, sn):
    return sum(sig(s - sp) + sig(s * s) for s in sn) / len(sn)


def _top1_max(sp, sn):
    w = _softmax(sn)
    return sum(wk * (sig(s - sp) + sig(s * s)) for wk, s in zip(w, sn, strict=True))


def _bpr_max(reg):
    def f(sp, sn):
        w = _softmax(sn)
        inner = sum(wk * sig(sp - s) for wk, s in zip(w, sn, strict=True))
        return -math.log(inner) + reg * sum(wk * s * s for wk, s in zip(w, sn, strict=True))

    return f


@pytest.mark.parametrize("k", [1, 4])
@pytest.mark.parametrize(
    ("loss", "naive"),
    [
        (lambda k: TOP1Loss(9, negatives=k), _top1),
        (lambda k: TOP1MaxLoss(9, negatives=k), _top1_max),
        (lambda k: BPRMaxLoss(9, negatives=k), _bpr_max(0.0)),
        (lambda k: BPRMaxLoss(9, negatives=k, reg=0.7), _bpr_max(0.7)),
    ],
)
def test_matches_naive_formula(loss, naive, k):
    hidden, table, targets, negatives = case(seed=k, k=k)
    value = loss(k)(hidden, targets, table, negatives=negatives)
    assert value.item() == pytest.approx(_mean_rows(naive, hidden, table, targets, negatives))


def test_bpr_max_with_one_negative_is_bpr():
    """With K = 1 the softmax weight is 1: bpr-max = -log σ(s⁺ - s⁻)."""
    hidden, table, targets, negatives = case(k=1)
    value = BPRMaxLoss(9, negatives=1)(hidden, targets, table, negatives=negatives)
    ref = _mean_rows(lambda sp, sn: -math.log(sig(sp - sn[0])), hidden, table, targets, negatives)
    assert value.item() == pytest.approx(ref)


def test_bpr_max_stable_for_huge_margins():
    hidden = torch.tensor([[50.0, 0.0]])
    table = torch.tensor([[0.0, 0.0], [-30.0, 0.0], [30.0, 0.0], [29.0, 0.0]])
    neg = torch.tensor([[2, 3]])
    value = BPRMaxLoss(3, negatives=2)(hidden, torch.tensor([1]), table, negatives=neg)
    assert torch.isfinite(value) and value.item() > 2000


def test_bpr_max_rejects_negative_reg():
    with pytest.raises(ConfigError):
        BPRMaxLoss(5, reg=-1.0)
