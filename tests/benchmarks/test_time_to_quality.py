"""The time-to-quality script: its configs are valid runs and its report says what was met."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from seqrec.config import RunConfig, load_toml, merge, validate

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

import time_to_quality as ttq  # noqa: E402


@pytest.mark.parametrize("name", sorted(ttq.RUNS))
def test_every_run_config_validates(name: str) -> None:
    config = ttq.RUNS[name][0]
    cfg = validate(merge(RunConfig(), load_toml(ttq.CONFIGS / config)))
    assert cfg.loss.name == "ce" and cfg.loss.positions == "all"


@pytest.mark.parametrize("dataset", ["beauty", "ml-1m"])
def test_fast_configs_differ_from_the_reference_only_where_stated(dataset: str) -> None:
    ref = load_toml(ttq.CONFIGS / f"{dataset}-sasrec-ce.toml")
    fast = load_toml(ttq.CONFIGS / f"{dataset}-sasrec-ce-fast.toml")
    assert ref["model"] == fast["model"] and ref["loss"] == fast["loss"]
    changed = {k for k in ref["train"] if ref["train"][k] != fast["train"][k]}
    assert changed == {"lr", "eval_every", "patience"}


def test_report_marks_met_and_missed_targets() -> None:
    machine = {"cpu": "x", "cores": 2, "memory_gib": 24, "torch": "2", "torch_threads": 2}
    run = {
        "deviation_from_reference": "s",
        "wall_seconds": 600.0,
        "target_minutes": 15,
        "test": {"ndcg@10": 0.058, "hr@10": 0.09},
        "target_test_ndcg@10": 0.057,
        "best_epoch": 30,
        "epochs_run": 40,
        "seconds_per_epoch": [12.0, 13.0, 11.0],
        "met": True,
        "machine": {**machine, "git_commit": "abc"},
    }
    slow = {**run, "wall_seconds": 1800.0, "met": False}
    text = ttq.render({"runs": {"a": run, "b": slow}})
    rows = [
        line for line in text.splitlines() if line.startswith("| a ") or line.startswith("| b ")
    ]
    assert "| 10.0 | 15 | 0.0580 |" in rows[0] and "| yes |" in rows[0]
    assert "| 30.0 |" in rows[1] and "| no |" in rows[1]
    assert "| 12.0 |" in rows[0]  # median seconds per epoch
