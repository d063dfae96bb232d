"""Pairwise sampled losses: the target's score is compared with each negative's."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from seqrec.losses.sampled import SampledLoss


class BPRLoss(SampledLoss):
    """``bpr``: Bayesian personalised ranking (Rendle et al. 2009) with K sampled negatives.

    ℓ = -(1/K) Σ_k log σ(s⁺ - s⁻_k) = mean_k softplus(s⁻_k - s⁺)
    """

    name = "bpr"

    def row_loss(self, pos: Tensor, neg: Tensor, negatives: Tensor) -> Tensor:
        return F.softplus(neg - pos.unsqueeze(1)).mean(1)  # (N,)
