"""Negative samplers: ranges, exclusions, uniformity (chi-square), determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from seqrec.errors import ConfigError, DataError
from seqrec.losses.base import History
from seqrec.losses.samplers import (
    popularity_cdf,
    sample_negatives,
    sample_not_history,
    sample_popular,
    sample_shared,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("pool", ["all", "not-target"])
def test_values_in_range_and_shape(pool):
    targets = torch.randint(1, 31, (200,), generator=_gen(1))
    neg = sample_negatives(targets, 30, 7, pool=pool, generator=_gen(2))
    assert neg.shape == (200, 7) and neg.dtype == torch.int64
    assert int(neg.min()) >= 1 and int(neg.max()) <= 30


def test_all_pool_can_hit_the_target():
    targets = torch.full((500,), 2)
    neg = sample_negatives(targets, 3, 4, pool="all", generator=_gen())
    assert (neg == 2).any()


def test_not_target_never_returns_target_and_is_uniform():
    c, k = 12, 6000
    targets = torch.tensor([1, 5, 12])
    neg = sample_negatives(targets, c, k, pool="not-target", generator=_gen(3))
    for i, t in enumerate(targets.tolist()):
        assert not (neg[i] == t).any()
        counts = torch.bincount(neg[i], minlength=c + 1)[1:].numpy()
        observed = np.delete(counts, t - 1)  # the C - 1 allowed items
        assert observed.sum() == k
        assert chisquare(observed).pvalue > 1e-3


def _history():
    # row 0: {2, 5} with left padding and a repeat; row 1: {1, 3, 4, 6, 7}; row 2: empty
    items = torch.tensor([[0, 0, 2, 2, 5], [1, 3, 4, 6, 7], [0, 0, 0, 0, 0]])
    row = torch.tensor([0, 0, 1, 1, 2])
    targets = torch.tensor([3, 2, 8, 5, 4])
    allowed = [{1, 4, 6, 7, 8}, {1, 3, 4, 6, 7, 8}, {2, 5}, {2, 8}, {1, 2, 3, 5, 6, 7, 8}]
    return History(items=items, row=row), targets, allowed


def test_not_history_excludes_history_and_target_and_is_uniform():
    history, targets, allowed = _history()
    k = 4000
    neg = sample_negatives(targets, 8, k, pool="not-history", history=history, generator=_gen(4))
    assert neg.shape == (5, k)
    for i, ok in enumerate(allowed):
        assert set(neg[i].tolist()) == ok  # every allowed item appears, nothing else
        counts = torch.bincount(neg[i], minlength=9).numpy()[sorted(ok)]
        assert chisquare(counts).pvalue > 1e-3


def test_not_history_large_random_case_matches_set_semantics():
    g = _gen(5)
    c, b, h = 200, 6, 40
    items = torch.randint(0, c + 1, (b, h), generator=g).sort(dim=1).values  # zeros = padding
    row = torch.randint(0, b, (300,), generator=g)
    targets = torch.randint(1, c + 1, (300,), generator=g)
    neg = sample_not_history(targets, c, 9, History(items, row), generator=g)
    assert int(neg.min()) >= 1 and int(neg.max()) <= c
    for i in range(300):
        banned = set(items[row[i]].tolist()) | {int(targets[i])}
        assert not banned & set(neg[i].tolist())


def test_not_history_full_catalogue_raises():
    history = History(items=torch.tensor([[1, 2, 3]]), row=torch.tensor([0]))
    with pytest.raises(DataError, match="cover all 4 items"):
        sample_not_history(torch.tensor([4]), 4, 2, history)


def test_not_history_needs_history():
    with pytest.raises(ConfigError, match="history"):
        sample_negatives(torch.tensor([1]), 5, 2, pool="not-history")


def test_unknown_pool_and_bad_k():
    with pytest.raises(ConfigError, match="unknown negative pool"):
        sample_negatives(torch.tensor([1]), 5, 2, pool="nope")
    with pytest.raises(ConfigError):
        sample_negatives(torch.tensor([1]), 5, 0, pool="all")


@pytest.mark.parametrize("pool", ["all", "not-target", "not-history"])
def test_deterministic_under_seeded_generator(pool):
    history, targets, _ = _history()
    a = sample_negatives(targets, 8, 5, pool=pool, history=history, generator=_gen(7))
    b = sample_negatives(targets, 8, 5, pool=pool, history=history, generator=_gen(7))
    c = sample_negatives(targets, 8, 5, pool=pool, history=history, generator=_gen(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_popularity_proportional_and_skips_zero_counts():
    counts = np.array([0, 10, 0, 30, 60])  # entry 0 is padding
    cdf = popularity_cdf(counts)
    neg = sample_popular(1, 20000, cdf, generator=_gen(9))
    freq = torch.bincount(neg[0], minlength=5).numpy()
    assert freq[0] == 0 and freq[2] == 0
    assert chisquare(freq[[1, 3, 4]], f_exp=np.array([0.1, 0.3, 0.6]) * 20000).pvalue > 1e-3


def test_popularity_rejects_all_zero():
    with pytest.raises(DataError):
        popularity_cdf(np.array([0, 0, 0]))


def test_shared_is_one_draw_for_every_row():
    neg = sample_shared(4, 50, 6, generator=_gen())
    assert neg.shape == (4, 6)
    assert all(torch.equal(neg[0], neg[i]) for i in range(4))
    assert int(neg.min()) >= 1 and int(neg.max()) <= 50
