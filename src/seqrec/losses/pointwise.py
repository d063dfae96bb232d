"""Pointwise sampled losses: each score is pushed up (target) or down (negative) on its own."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from seqrec.losses.sampled import SampledLoss


class BCELoss(SampledLoss):
    """``bce``: binary cross-entropy with K sampled negatives (SASRec, Kang & McAuley 2018).

        ℓ = -log σ(s⁺) - (1/K) Σ_k log(1 - σ(s⁻_k)) = softplus(-s⁺) + mean_k softplus(s⁻_k)

    SASRec's default is K = 1. Computed with softplus, stable for any score.
    """

    name = "bce"

    def row_loss(self, pos: Tensor, neg: Tensor, negatives: Tensor) -> Tensor:
        return F.softplus(-pos) + F.softplus(neg).mean(1)  # (N,)
