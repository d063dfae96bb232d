"""Training losses on hidden states (DESIGN §2-3) and an explicit registry.

Registered names:

- ``ce``: exact full-softmax cross-entropy over all C items, computed in chunks (never
  materialises N × C logits). ``cce`` is not a separate loss: it is ``ce`` at all positions
  (``loss.positions = "all"``), chosen by the trainer; ``ce`` at the last position is Li et
  al.'s "CE".
- ``ce-naive``: the same on materialised logits (reference and benchmark baseline).
- ``bce``: binary cross-entropy with K sampled negatives (SASRec).
- ``bpr``: Bayesian personalised ranking with K sampled negatives.
- ``top1``, ``bpr-max``, ``top1-max``: GRU4Rec's pairwise losses (Hidasi & Karatzoglou 2018).
- ``gbce``: gSASRec's calibrated BCE (Petrov & Macdonald 2023).
- ``nce``, ``neg``: noise-contrastive estimation and negative sampling (as in Xu et al. 2024).
- ``sampled-softmax``: CE over the target and K negatives, optional logQ correction.
- ``sce``: scaled cross-entropy (Xu et al. 2024).
- ``rece``: reduced cross-entropy over LSH-chosen hard negatives (Gusak et al. 2024).

Loss-specific hyperparameters come from LossConfig fields when present (``alpha``, ``nce_c``,
``gbce_t``, ``logq``, ``bpr_max_reg``, ``popularity_power``, ``ce_chunk_size``, ``ce_impl``,
``rece_buckets``, ``rece_chunks``, ``rece_extra_chunks``, ``rece_rounds``),
else from the papers' defaults; see each class's ``config_fields`` / ``from_config``.

Sampled losses draw ``loss.negatives`` negatives per position from ``loss.pool``
("all" | "not-target" | "not-history" | "in-batch" | "popularity" | "shared") and accept ``negatives=`` (N, K) to inject them.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from seqrec.config import LossConfig, suggest
from seqrec.errors import ConfigError
from seqrec.losses.base import History, SequenceLoss
from seqrec.losses.pairwise import BPRLoss, BPRMaxLoss, TOP1Loss, TOP1MaxLoss
from seqrec.losses.pointwise import BCELoss, GBCELoss, NCELoss, NEGLoss
from seqrec.losses.rece import RECELoss
from seqrec.losses.sampled import SampledLoss
from seqrec.losses.softmax import ChunkedCE, NaiveCE, SampledSoftmaxLoss, SCELoss

LOSSES: dict[str, type[SequenceLoss]] = {
    "ce": ChunkedCE,
    "ce-naive": NaiveCE,
    "bce": BCELoss,
    "bpr": BPRLoss,
    "top1": TOP1Loss,
    "bpr-max": BPRMaxLoss,
    "top1-max": TOP1MaxLoss,
    "gbce": GBCELoss,
    "nce": NCELoss,
    "neg": NEGLoss,
    "sampled-softmax": SampledSoftmaxLoss,
    "sce": SCELoss,
    "rece": RECELoss,
}


def build_loss(
    cfg: LossConfig, n_items: int, *, item_counts: np.ndarray | None = None
) -> SequenceLoss:
    """The loss named by ``cfg.name``, built for a catalogue of ``n_items`` items.

    ``item_counts`` (int[C + 1], training counts by item id) is used by popularity-based pools.
    """
    cls = LOSSES.get(cfg.name)
    if cls is None:
        raise ConfigError(
            f"unknown loss '{cfg.name}'{suggest(cfg.name, sorted(LOSSES))}; "
            f"choose one of {', '.join(sorted(LOSSES))}"
        )
    from_config = getattr(cls, "from_config", None)
    if from_config is not None:
        return from_config(cfg, n_items, item_counts=item_counts)
    return cls()


def loss_settings(name: str) -> frozenset[str]:
    """The ``loss.*`` settings (LossConfig fields besides name and positions) the loss ``name``
    reads; every field for a name not in the registry."""
    cls = LOSSES.get(name)
    if cls is None:
        return frozenset(f.name for f in dataclasses.fields(LossConfig)) - {"name", "positions"}
    return cls.config_settings()


__all__ = ["LOSSES", "History", "SampledLoss", "SequenceLoss", "build_loss", "loss_settings"]
