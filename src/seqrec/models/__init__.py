"""Sequence encoders. Each model is one file; this module holds the explicit registry.

``MODELS`` maps a config name (``ModelConfig.name``) to a class with
``from_config(cfg: ModelConfig, n_items: int)``; :func:`build_model` is the one way the trainer
and checkpoint loader construct a model.
"""

from __future__ import annotations

from seqrec.config import ModelConfig, suggest
from seqrec.errors import ConfigError
from seqrec.models.base import SequentialRecommender
from seqrec.models.gru4rec import GRU4Rec
from seqrec.models.sasrec import SASRec

MODELS: dict[str, type[SASRec] | type[GRU4Rec]] = {
    "sasrec": SASRec,
    "gru4rec": GRU4Rec,
}


def build_model(cfg: ModelConfig, n_items: int) -> SequentialRecommender:
    """The registered model ``cfg.name`` for a catalogue of ``n_items`` items (ids 1..n_items)."""
    if cfg.name not in MODELS:
        raise ConfigError(
            f"model.name must be one of {', '.join(sorted(MODELS))}; got '{cfg.name}'"
            f"{suggest(cfg.name, sorted(MODELS))}"
        )
    return MODELS[cfg.name].from_config(cfg, n_items)


__all__ = ["MODELS", "GRU4Rec", "SASRec", "SequentialRecommender", "build_model"]
