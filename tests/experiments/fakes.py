"""Hand-written run folders (config.toml, metrics.jsonl, results.json) for fast report tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from seqrec.config import RunConfig, merge, to_toml, validate

TINY = {
    "data": {"dataset": "synthetic", "synthetic_users": 200, "synthetic_items": 50},
    "model": {"name": "sasrec", "dim": 8, "layers": 1, "maxlen": 10},
    "train": {"epochs": 1, "batch_size": 64},
}


def tiny_config(**overrides: Any) -> RunConfig:
    raw: dict[str, Any] = {k: dict(v) for k, v in TINY.items()}
    for key, value in overrides.items():
        if isinstance(value, dict):
            raw.setdefault(key, {}).update(value)
        else:
            raw[key] = value
    return validate(merge(RunConfig(), raw))


def fake_run(
    run_dir: Path,
    cfg: RunConfig,
    test: dict[str, float],
    *,
    epochs: list[dict[str, Any]] | None = None,
    best_epoch: int = 1,
    train_seconds: float = 1.0,
) -> Path:
    """A finished run folder as seqrec.train.fit leaves it (minus the checkpoint)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.toml").write_text(to_toml(cfg), encoding="utf-8")
    if epochs is None:
        epochs = [
            {"epoch": 1, "loss": 2.0, "wall_seconds": 1.0, "valid": {"ndcg@10": 0.1}},
            {"epoch": 2, "loss": 1.5, "wall_seconds": 2.0, "valid": {"ndcg@10": 0.2}},
        ]
    (run_dir / "metrics.jsonl").write_text(
        "".join(json.dumps(e) + "\n" for e in epochs), encoding="utf-8"
    )
    results = {
        "valid": test,
        "test": test,
        "best_epoch": best_epoch,
        "epochs_run": len(epochs),
        "train_seconds": train_seconds,
        "wall_seconds": train_seconds + 0.5,
    }
    (run_dir / "results.json").write_text(json.dumps(results), encoding="utf-8")
    return run_dir


def metrics(ndcg10: float, **extra: float) -> dict[str, float]:
    """A full metric dict where every metric is derived from ndcg@10 (so they move together)."""
    out = {
        "hr@5": ndcg10 * 1.2,
        "hr@10": ndcg10 * 1.5,
        "hr@20": ndcg10 * 1.8,
        "ndcg@5": ndcg10 * 0.9,
        "ndcg@10": ndcg10,
        "ndcg@20": ndcg10 * 1.1,
        "mrr": ndcg10 * 0.8,
    }
    out.update(extra)
    return out
