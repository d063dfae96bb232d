"""The cheaper CPU dropout mask: its distribution, scaling, gradient and reproducibility."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from seqrec.models.dropout import FastDropout, dropout, keep_mask


@pytest.mark.parametrize("p", [0.1, 0.4, 0.6, 0.95])
def test_keep_rate_and_scale(p: float) -> None:
    torch.manual_seed(0)
    n = 600_001  # not a multiple of 3: the last 64-bit draw is used in part
    x = torch.ones(n)
    y = dropout(x, p, training=True)
    kept = y != 0
    p_eff = round(p * 65536) / 65536
    assert abs(p_eff - p) <= 2**-17
    sd = (p_eff * (1 - p_eff) / n) ** 0.5
    assert abs(kept.float().mean().item() - (1 - p_eff)) < 5 * sd  # binomial, 5 sigma
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / (1 - p_eff)))
    assert abs(y.mean().item() - 1.0) < 5 * sd / (1 - p_eff)  # unbiased: E[y] = x


def test_mask_elements_are_independent() -> None:
    """Neighbours (within one 64-bit draw and across draws) are uncorrelated; the unused top
    word (whose sign bit is always 0) must not leak in: it would bias every fourth element."""
    torch.manual_seed(1)
    m = keep_mask((300_000,), 0.5, torch.device("cpu")).float()
    for lag in (1, 2, 3, 4):
        a, b = m[:-lag] - m.mean(), m[lag:] - m.mean()
        corr = (a * b).mean() / m.var()
        assert abs(corr.item()) < 0.01, lag
    for phase in range(3):  # each of the three words of a draw keeps at rate 1/2
        assert abs(m[phase::3].mean().item() - 0.5) < 0.006


def test_gradient_is_the_mask() -> None:
    torch.manual_seed(2)
    x = torch.randn(50, 7, requires_grad=True)
    y = dropout(x, 0.3, training=True)
    y.sum().backward()
    expected = (y.detach() / x.detach()).nan_to_num()  # 0 or the scale where kept
    torch.testing.assert_close(x.grad, expected)


def test_seeded_and_identity_when_off() -> None:
    x = torch.randn(1000)
    torch.manual_seed(3)
    a = dropout(x, 0.4, training=True)
    torch.manual_seed(3)
    b = dropout(x, 0.4, training=True)
    assert torch.equal(a, b)
    assert dropout(x, 0.4, training=False) is x
    assert dropout(x, 0.0, training=True) is x
    module = FastDropout(0.4).eval()
    assert torch.equal(module(x), x)
    assert torch.count_nonzero(dropout(x, 1.0, training=True)) == 0


def test_same_distribution_as_torch_dropout() -> None:
    """Mean and variance of the output match F.dropout's for the same input and p."""
    torch.manual_seed(4)
    x = torch.randn(400_000)
    ours, ref = dropout(x, 0.4, training=True), F.dropout(x, 0.4, training=True)
    assert abs(ours.var().item() - ref.var().item()) < 0.02 * ref.var().item()
    assert abs(ours.mean().item() - ref.mean().item()) < 0.01


def test_rejects_bad_rates() -> None:
    with pytest.raises(ValueError, match="dropout probability"):
        FastDropout(1.5)
