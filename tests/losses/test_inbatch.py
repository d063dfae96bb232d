"""The in-batch negative pool: other positions' targets, never the own target, frequency-
proportional, fallback for a batch with a single distinct target, wired into sampled losses."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from seqrec.losses.pointwise import BCELoss
from seqrec.losses.samplers import POOLS, sample_in_batch, sample_negatives
from seqrec.losses.softmax import SCELoss


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_draws_other_targets_never_the_own():
    targets = torch.tensor([5, 3, 5, 9, 1, 3, 3, 7])
    neg = sample_in_batch(targets, 20, 500, generator=_gen())
    assert neg.shape == (8, 500) and neg.dtype == torch.int64
    for i, t in enumerate(targets.tolist()):
        others = set(targets.tolist()) - {t}
        assert set(neg[i].tolist()) == others  # every other target appears, nothing else


def test_frequency_proportional_over_other_positions():
    """Row with target 5: the other positions hold 3 three times, 9, 1, 7 once each."""
    targets = torch.tensor([5, 3, 5, 9, 1, 3, 3, 7])
    k = 12000
    neg = sample_in_batch(targets, 20, k, generator=_gen(1))
    counts = torch.bincount(neg[0], minlength=21).numpy()[[1, 3, 7, 9]]
    expected = np.array([1, 3, 1, 1]) / 6 * k
    assert chisquare(counts, f_exp=expected).pvalue > 1e-3


def test_single_distinct_target_falls_back_to_not_target():
    targets = torch.tensor([4, 4, 4])
    neg = sample_in_batch(targets, 6, 50, generator=_gen(2))
    assert not (neg == 4).any()
    assert int(neg.min()) >= 1 and int(neg.max()) <= 6
    one = sample_in_batch(torch.tensor([2]), 6, 5, generator=_gen(2))
    assert not (one == 2).any()


def test_deterministic_and_dispatched_by_pool_name():
    assert "in-batch" in POOLS
    targets = torch.tensor([1, 2, 3, 2, 8])
    a = sample_negatives(targets, 9, 6, pool="in-batch", generator=_gen(3))
    b = sample_in_batch(targets, 9, 6, generator=_gen(3))
    c = sample_in_batch(targets, 9, 6, generator=_gen(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("cls", [BCELoss, SCELoss])
def test_sampled_losses_accept_the_pool(cls):
    g = _gen(5)
    hidden = torch.randn(16, 4, generator=g)
    table = torch.randn(31, 4, generator=g)
    targets = torch.randint(1, 31, (16,), generator=g)
    loss = cls(30, negatives=4, pool="in-batch")
    value = loss(hidden, targets, table, generator=_gen(6))
    neg = loss.sample(targets, generator=_gen(6))
    assert torch.isfinite(value)
    assert value.item() == pytest.approx(loss(hidden, targets, table, negatives=neg).item())
    assert set(neg.unique().tolist()) <= set(targets.tolist())
    assert not (neg == targets.unsqueeze(1)).any()
