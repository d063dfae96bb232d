"""Pointwise sampled losses: each score is pushed up (target) or down (negative) on its own.

bce (SASRec), gbce (gSASRec, Petrov & Macdonald 2023), nce and neg (as defined by Xu et al.
2024, after Gutmann & Hyvärinen 2010 and Mikolov et al. 2013). All use softplus, so they are
stable for any score: -log σ(x) = softplus(-x), -log(1 - σ(x)) = softplus(x).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch.nn.functional as F
from torch import Tensor

from seqrec.errors import ConfigError
from seqrec.losses.sampled import SampledLoss


class BCELoss(SampledLoss):
    """``bce``: binary cross-entropy with K sampled negatives (SASRec, Kang & McAuley 2018).

    ℓ = -log σ(s⁺) - (1/K) Σ_k log(1 - σ(s⁻_k)) = softplus(-s⁺) + mean_k softplus(s⁻_k)

    SASRec's default is K = 1.
    """

    name = "bce"

    def row_loss(self, pos: Tensor, neg: Tensor, negatives: Tensor) -> Tensor:
        return F.softplus(-pos) + F.softplus(neg).mean(1)  # (N,)


class GBCELoss(SampledLoss):
    """``gbce``: generalised BCE of gSASRec (Petrov & Macdonald 2023), which undoes the
    overconfidence that negative sampling induces in BCE.

    s⁺ is replaced by log(1 / (σ(s⁺)^(-β) - 1)), so σ(s⁺') = σ(s⁺)^β and, as in the paper and
    its reference code (BCE averaged over the K + 1 logits, negatives summed):

        ℓ = ( -β log σ(s⁺) - Σ_k log(1 - σ(s⁻_k)) ) / (K + 1)
          = ( β softplus(-s⁺) + Σ_k softplus(s⁻_k) ) / (K + 1)

    with α = K / (C - 1) the sampling rate and β = α (t (1 - 1/α) + 1/α); t ∈ [0, 1] is the
    calibration (t = 0: β = 1, plain BCE with summed negatives; t = 1: β = α, fully calibrated;
    paper default t = 0.75). The closed form -β log σ(s⁺) is exact and stable, unlike
    evaluating the transformed logit, which overflows as σ(s⁺) → 1.
    """

    name = "gbce"
    config_fields: ClassVar[dict[str, tuple[str, Any]]] = {"t": ("gbce_t", 0.75)}

    def __init__(self, n_items: int, *, t: float = 0.75, **kwargs: Any) -> None:
        super().__init__(n_items, **kwargs)
        if not 0.0 <= t <= 1.0:
            raise ConfigError(f"gbce calibration t must be in [0, 1], got {t}")
        if n_items < 2:
            raise ConfigError(f"gbce needs at least 2 items, got {n_items}")
        self.t = t
        alpha = self.negatives / (n_items - 1)
        self.beta = alpha * (t * (1.0 - 1.0 / alpha) + 1.0 / alpha)

    def row_loss(self, pos: Tensor, neg: Tensor, negatives: Tensor) -> Tensor:
        k = neg.shape[1]
        return (self.beta * F.softplus(-pos) + F.softplus(neg).sum(1)) / (k + 1)  # (N,)


class NCELoss(SampledLoss):
    """``nce``: noise-contrastive estimation as in Xu et al. 2024 (uniform noise, fixed
    log-normaliser c).

    With model probability exp(s - c) and noise K·q = K/C, the classifier logit is
    s + log(C/K) - c, and

        ℓ = softplus(-(s⁺ + b)) + Σ_k softplus(s⁻_k + b),   b = log(C/K) - c,  c = 10 default
    """

    name = "nce"
    config_fields: ClassVar[dict[str, tuple[str, Any]]] = {"c": ("nce_c", 10.0)}

    def __init__(self, n_items: int, *, c: float = 10.0, **kwargs: Any) -> None:
        super().__init__(n_items, **kwargs)
        self.c = c
        self.shift = math.log(n_items / self.negatives) - c

    def row_loss(self, pos: Tensor, neg: Tensor, negatives: Tensor) -> Tensor:
        b = self.shift
        return F.softplus(-(pos + b)) + F.softplus(neg + b).sum(1)  # (N,)


class NEGLoss(SampledLoss):
    """``neg``: negative sampling (word2vec, Mikolov et al. 2013): NCE without the shift.

    ℓ = softplus(-s⁺) + Σ_k softplus(s⁻_k)   (negatives summed, unlike ``bce``'s mean)
    """

    name = "neg"

    def row_loss(self, pos: Tensor, neg: Tensor, negatives: Tensor) -> Tensor:
        return F.softplus(-pos) + F.softplus(neg).sum(1)  # (N,)
