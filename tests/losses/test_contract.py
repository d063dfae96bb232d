"""One contract over the whole registry: finite scalar, finite gradients, row-order invariance,
a gradient step raises the target's score, zero gradient on the padding row."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from seqrec.config import LossConfig
from seqrec.errors import ConfigError
from seqrec.losses import LOSSES, build_loss
from seqrec.losses.base import History, SequenceLoss
from seqrec.losses.sampled import SampledLoss

N_ITEMS = 40


def _make(name: str, pool: str = "not-target") -> SequenceLoss:
    counts = np.arange(N_ITEMS + 1)
    return build_loss(LossConfig(name=name, negatives=5, pool=pool), N_ITEMS, item_counts=counts)


def _batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(12, 8, generator=g)
    table = torch.randn(N_ITEMS + 1, 8, generator=g) * 0.5
    targets = torch.randint(1, N_ITEMS + 1, (12,), generator=g)
    return hidden, table, targets


def _call(loss: SequenceLoss, hidden, targets, table, negatives=None):
    if isinstance(loss, SampledLoss):
        return loss(hidden, targets, table, negatives=negatives)
    return loss(hidden, targets, table)


def _negatives(loss: SequenceLoss, targets):
    if isinstance(loss, SampledLoss):
        return loss.sample(targets, generator=torch.Generator().manual_seed(3))
    return None


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_finite_scalar_and_gradients(name):
    loss = _make(name)
    hidden, table, targets = _batch()
    h = hidden.clone().requires_grad_()
    w = table.clone().requires_grad_()
    value = _call(loss, h, targets, w, _negatives(loss, targets))
    assert value.dim() == 0 and torch.isfinite(value)
    value.backward()
    assert torch.isfinite(h.grad).all() and torch.isfinite(w.grad).all()
    assert h.grad.abs().sum() > 0
    assert torch.count_nonzero(w.grad[0]) == 0  # padding is never a candidate


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_invariant_to_row_order(name):
    loss = _make(name)
    hidden, table, targets = _batch(1)
    negatives = _negatives(loss, targets)
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(4))
    a = _call(loss, hidden, targets, table, negatives)
    b = _call(
        loss, hidden[perm], targets[perm], table, None if negatives is None else negatives[perm]
    )
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_gradient_step_raises_target_score(name):
    loss = _make(name)
    hidden, table, targets = _batch(2)
    negatives = _negatives(loss, targets)
    h = hidden.clone().requires_grad_()
    w = table.clone().requires_grad_()
    _call(loss, h, targets, w, negatives).backward()
    lr = 1e-2
    before = (hidden * table[targets]).sum(1)  # (N,)
    after = ((hidden - lr * h.grad) * (table - lr * w.grad)[targets]).sum(1)
    # the mean score margin of the target rises (per row it can dip when items are shared)
    assert (after - before).mean() > 0
    assert (after > before).float().mean() >= 0.75


@pytest.mark.parametrize("pool", ["all", "not-target", "not-history", "popularity", "shared"])
def test_every_sampled_loss_runs_with_every_pool(pool):
    hidden, table, targets = _batch(3)
    history = History(items=torch.arange(1, 11).view(2, 5), row=torch.arange(12) % 2)
    for name, cls in LOSSES.items():
        if issubclass(cls, SampledLoss):
            value = _make(name, pool)(
                hidden, targets, table, history=history, generator=torch.Generator()
            )
            assert torch.isfinite(value)


def test_build_loss_unknown_name_suggests():
    with pytest.raises(ConfigError, match="did you mean 'bpr'"):
        build_loss(LossConfig(name="bprr"), N_ITEMS)


def test_build_loss_passes_config():
    loss = build_loss(LossConfig(name="bce", negatives=7, pool="not-history"), N_ITEMS)
    assert isinstance(loss, SampledLoss)
    assert (loss.negatives, loss.pool, loss.n_items) == (7, "not-history", N_ITEMS)


class _RecordingConfig:
    """A LossConfig that records which fields are read."""

    def __init__(self, cfg: LossConfig) -> None:
        self._cfg, self.read = cfg, set()

    def __getattr__(self, field: str):
        self.read.add(field)
        return getattr(self._cfg, field)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_config_settings_name_every_field_the_loss_reads(name):
    """Reports name methods by the settings a loss reads (``config_settings``): a field read
    but not declared would merge two different methods under one label."""
    cfg = _RecordingConfig(LossConfig(name=name, negatives=5, pool="not-target"))
    counts = np.arange(N_ITEMS + 1)
    build_loss(cfg, N_ITEMS, item_counts=counts)  # type: ignore[arg-type]
    cls = LOSSES[name]
    assert cfg.read - {"name", "positions"} == set(cls.config_settings()), name
    unknown = set(cls.config_settings()) - {f.name for f in dataclasses.fields(LossConfig)}
    assert not unknown, unknown
