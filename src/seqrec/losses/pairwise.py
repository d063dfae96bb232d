"""Pairwise sampled losses: the target's score is compared with each negative's.

bpr (Rendle et al. 2009), top1 (Hidasi et al. 2016, GRU4Rec) and their "max" versions
bpr-max / top1-max (Hidasi & Karatzoglou 2018, GRU4Rec+), which weight each negative by its
softmax probability among the K negatives, so the loss focuses on the hardest ones.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from seqrec.errors import ConfigError
from seqrec.losses.sampled import SampledLoss


class BPRLoss(SampledLoss):
    """``bpr``: Bayesian personalised ranking (Rendle et al. 2009) with K sampled negatives.

    ℓ = -(1/K) Σ_k log σ(s⁺ - s⁻_k) = mean_k softplus(s⁻_k - s⁺)
    """

    name = "bpr"

    def row_loss(self, pos: Tensor, neg: Tensor, negatives: Tensor) -> Tensor:
        return F.softplus(neg - pos.unsqueeze(1)).mean(1)  # (N,)


class TOP1Loss(SampledLoss):
    """``top1``: GRU4Rec's TOP1 (Hidasi et al. 2016), a regularised approximation of the rank.

    ℓ = (1/K) Σ_k [ σ(s⁻_k - s⁺) + σ((s⁻_k)²) ]
    """

    name = "top1"

    def row_loss(self, pos: Tensor, neg: Tensor, negatives: Tensor) -> Tensor:
        return (torch.sigmoid(neg - pos.unsqueeze(1)) + torch.sigmoid(neg.square())).mean(1)


class BPRMaxLoss(SampledLoss):
    """``bpr-max`` (Hidasi & Karatzoglou 2018, eq. 7 with score regularisation):

    ℓ = -log Σ_k w_k σ(s⁺ - s⁻_k) + λ Σ_k w_k (s⁻_k)²,   w = softmax(s⁻) over the K negatives

    Computed stably in log space: log Σ_k w_k σ(x_k) = logsumexp_k(log_softmax(s⁻)_k +
    logsigmoid(s⁺ - s⁻_k)). Gradients flow through the weights, as in GRU4Rec. λ = ``reg``
    (default 0; GRU4Rec tunes it, typically 0..2).
    """

    name = "bpr-max"
    config_fields: ClassVar[dict[str, tuple[str, Any]]] = {"reg": ("bpr_max_reg", 0.0)}

    def __init__(self, n_items: int, *, reg: float = 0.0, **kwargs: Any) -> None:
        super().__init__(n_items, **kwargs)
        if reg < 0:
            raise ConfigError(f"bpr-max regularisation must be >= 0, got {reg}")
        self.reg = reg

    def row_loss(self, pos: Tensor, neg: Tensor, negatives: Tensor) -> Tensor:
        log_w = F.log_softmax(neg, dim=1)  # (N, K)
        loss = -torch.logsumexp(log_w + F.logsigmoid(pos.unsqueeze(1) - neg), dim=1)  # (N,)
        if self.reg:
            loss = loss + self.reg * (log_w.exp() * neg.square()).sum(1)
        return loss


class TOP1MaxLoss(SampledLoss):
    """``top1-max`` (Hidasi & Karatzoglou 2018): TOP1 weighted by the negatives' softmax.

    ℓ = Σ_k w_k [ σ(s⁻_k - s⁺) + σ((s⁻_k)²) ],   w = softmax(s⁻) over the K negatives
    """

    name = "top1-max"

    def row_loss(self, pos: Tensor, neg: Tensor, negatives: Tensor) -> Tensor:
        w = torch.softmax(neg, dim=1)  # (N, K)
        return (w * (torch.sigmoid(neg - pos.unsqueeze(1)) + torch.sigmoid(neg.square()))).sum(1)
