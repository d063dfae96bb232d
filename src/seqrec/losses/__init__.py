"""Training losses on hidden states (DESIGN §2-3) and an explicit registry.

Registered names:

- ``ce``: exact full-softmax cross-entropy over all C items, computed in item chunks (never
  materialises N × C logits). ``cce`` is not a separate loss: it is ``ce`` at all positions
  (``loss.positions = "all"``), chosen by the trainer; ``ce`` at the last position is Li et
  al.'s "CE".
- ``ce-naive``: the same on materialised logits (reference and benchmark baseline).
- ``bce``: binary cross-entropy with K sampled negatives (SASRec).
- ``bpr``: Bayesian personalised ranking with K sampled negatives.

Sampled losses draw ``loss.negatives`` negatives per position from ``loss.pool``
("all" | "not-target" | "not-history") and accept ``negatives=`` (N, K) to inject them.
"""

from __future__ import annotations

import numpy as np

from seqrec.config import LossConfig, suggest
from seqrec.errors import ConfigError
from seqrec.losses.base import History, SequenceLoss
from seqrec.losses.pairwise import BPRLoss
from seqrec.losses.pointwise import BCELoss
from seqrec.losses.sampled import SampledLoss
from seqrec.losses.softmax import ChunkedCE, NaiveCE

LOSSES: dict[str, type[SequenceLoss]] = {
    "ce": ChunkedCE,
    "ce-naive": NaiveCE,
    "bce": BCELoss,
    "bpr": BPRLoss,
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
    if issubclass(cls, SampledLoss):
        return cls.from_config(cfg, n_items, item_counts=item_counts)
    return cls()


__all__ = ["LOSSES", "History", "SampledLoss", "SequenceLoss", "build_loss"]
