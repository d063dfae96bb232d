"""A run killed at a random moment (kill -9) resumes and ends with exactly the uninterrupted metrics;
a NaN loss stops training with a diagnosis and keeps the last good checkpoint."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from seqrec import runs
from seqrec.config import RunConfig, merge, to_toml, validate
from seqrec.errors import TrainingError
from seqrec.train import fit, resume


def config(tmp_path, name: str, **train) -> RunConfig:
    return validate(
        merge(
            RunConfig(),
            {
                "data": {"synthetic_users": 500, "synthetic_items": 100, "synthetic_seed": 5},
                "model": {"dim": 16, "layers": 1, "maxlen": 15, "dropout": 0.3},
                "loss": {"name": "bce", "negatives": 2, "pool": "not-target"},
                "train": {
                    "epochs": 12,
                    "batch_size": 32,
                    "patience": 100,
                    "threads": 1,
                    "seed": 3,
                    **train,
                },
                "out_dir": str(tmp_path),
                "name": name,
            },
        )
    )


def test_kill_at_random_point_then_resume_matches_uninterrupted(tmp_path):
    reference = fit(config(tmp_path, "reference"), quiet=True)

    cfg = config(tmp_path, "killed")
    cfg_file = tmp_path / "killed.toml"
    cfg_file.write_text(to_toml(cfg))
    run_dir = tmp_path / "killed"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "seqrec.cli", "train", "--config", str(cfg_file), "--quiet"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    # kill at a random moment between the first and the second-to-last epoch
    deadline = time.monotonic() + 120
    while not (run_dir / runs.METRICS).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    delay = random.uniform(0.0, reference.results["train_seconds"] * 0.6)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before the kill: make it longer"
    done_before = len(runs.read_metrics(run_dir))
    assert not (run_dir / runs.RESULTS).exists()

    resumed = resume(run_dir, quiet=True)
    assert resumed.results["test"] == reference.results["test"], (
        f"killed after {done_before} epochs"
    )
    assert resumed.results["valid"] == reference.results["valid"]
    assert resumed.results["best_epoch"] == reference.results["best_epoch"]
    ref_log = runs.read_metrics(reference.run_dir)
    new_log = runs.read_metrics(run_dir)
    assert [r["epoch"] for r in new_log] == [r["epoch"] for r in ref_log]
    assert [r["loss"] for r in new_log] == [r["loss"] for r in ref_log]


def test_resume_of_a_finished_run_is_refused(tmp_path):
    done = fit(config(tmp_path, "done", epochs=1), quiet=True)
    with pytest.raises(TrainingError, match="already finished"):
        resume(done.run_dir, quiet=True)


def test_nan_loss_stops_with_diagnosis_and_keeps_checkpoint(tmp_path, monkeypatch):
    from seqrec.losses.pointwise import BCELoss

    calls = {"n": 0}
    original = BCELoss.forward

    def poisoned(self, *args, **kwargs):
        calls["n"] += 1
        out = original(self, *args, **kwargs)
        return out * float("nan") if calls["n"] > 40 else out

    monkeypatch.setattr(BCELoss, "forward", poisoned)
    cfg = config(tmp_path, "nan")
    with pytest.raises(TrainingError, match=r"loss became nan at epoch \d+.*last good checkpoint"):
        fit(cfg, quiet=True)
    run_dir = tmp_path / "nan"
    meta = json.loads((run_dir / "best" / "model.json").read_text())
    assert meta["epoch"] >= 1
    model, _ = runs.load_checkpoint(run_dir / "best")
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert not (run_dir / "results.json").exists()
