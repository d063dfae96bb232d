"""Sweeps: resumable (finished runs never repeat, killed ones are redone cleanly), ETA, failures."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from seqrec.config import RunConfig
from seqrec.errors import SeqrecError, TrainingError
from seqrec.experiments import sweep as sweep_mod
from seqrec.experiments.sweep import eta_seconds, fmt_seconds, is_finished, run_sweep
from seqrec.train import TrainResult, fit

from .fakes import fake_run, metrics

STUDY = """
name = "tiny"
out_dir = "OUT"
baseline = "bce"
seeds = [1]
[base]
model = {{ name = "sasrec", dim = 8, layers = 1, maxlen = 10 }}
data = {{ dataset = "synthetic", synthetic_users = 200, synthetic_items = 50 }}
train = {{ epochs = {epochs}, batch_size = 64 }}
[grid]
"loss.name" = ["ce", "bce"]
"""


def write_study(tmp_path: Path, epochs: int = 1) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(
        STUDY.format(epochs=epochs).replace("OUT", str(tmp_path / "runs")), encoding="utf-8"
    )
    return path


class FakeFit:
    """Stands in for seqrec.train.fit: writes a finished run folder and counts calls."""

    def __init__(self, fail: set[str] | None = None) -> None:
        self.calls: list[str] = []
        self.fail = fail or set()

    def __call__(self, cfg: RunConfig, *, quiet: bool = False, on_epoch: Any = None) -> TrainResult:
        self.calls.append(cfg.name or "")
        run_dir = Path(cfg.out_dir) / (cfg.name or "")
        assert not run_dir.exists(), "a run must start in a fresh folder"
        if cfg.name in self.fail:
            run_dir.mkdir(parents=True)
            raise TrainingError(f"loss became nan in {cfg.name}")
        record = {"epoch": 1, "loss": 1.0, "wall_seconds": 0.1, "valid": {"ndcg@10": 0.2}}
        if on_epoch is not None:
            on_epoch(record)
        fake_run(run_dir, cfg, metrics(0.3), epochs=[record])
        return TrainResult(
            run_dir=run_dir, results=json.loads((run_dir / "results.json").read_text())
        )


def test_eta_and_time_format():
    assert eta_seconds([], 3) is None
    assert eta_seconds([10.0, 20.0], 0) == 0.0
    assert eta_seconds([10.0, 20.0], 3) == pytest.approx(45.0)
    assert eta_seconds([10.0], 2, current_elapsed=4.0) == pytest.approx(16.0)
    assert eta_seconds([10.0], 1, current_elapsed=25.0) == 0.0  # overdue: never negative
    assert fmt_seconds(None) == "?" and fmt_seconds(12.4) == "12s"
    assert fmt_seconds(185) == "3m05s" and fmt_seconds(3720) == "1h02m"


def test_killed_run_is_moved_aside_and_redone_finished_runs_are_not(tmp_path, monkeypatch):
    fake = FakeFit()
    monkeypatch.setattr(sweep_mod, "fit", fake)
    study = write_study(tmp_path)
    dirs = run_sweep(study, quiet=True)
    names = ["synthetic-sasrec-ce-all-seed1", "synthetic-sasrec-bce-all-seed1"]
    assert [d.name for d in dirs] == names and fake.calls == names
    manifest = json.loads((tmp_path / "runs" / "sweep.json").read_text())
    assert [r["name"] for r in manifest["runs"]] == names and manifest["baseline"] == "bce"

    # everything finished: a rerun does nothing
    assert [d.name for d in run_sweep(study, quiet=True)] == names
    assert len(fake.calls) == 2

    # simulate a kill during the second run: its folder has no results.json
    killed = tmp_path / "runs" / names[1]
    (killed / "results.json").unlink()
    (killed / "partial-marker").write_text("from the killed process")
    assert not is_finished(killed)
    run_sweep(study, quiet=True)
    assert fake.calls == [*names, names[1]]  # only the killed run was redone
    assert is_finished(killed) and not (killed / "partial-marker").exists()  # never mixed
    aside = list((tmp_path / "runs" / ".incomplete").iterdir())
    assert len(aside) == 1 and (aside[0] / "partial-marker").is_file()


def test_a_changed_study_does_not_reuse_stale_finished_runs(tmp_path, monkeypatch):
    fake = FakeFit()
    monkeypatch.setattr(sweep_mod, "fit", fake)
    run_sweep(write_study(tmp_path, epochs=1), quiet=True)
    with pytest.raises(SeqrecError, match=r"train\.epochs: 1 != 2"):
        run_sweep(write_study(tmp_path, epochs=2), quiet=True)
    assert len(fake.calls) == 2  # nothing ran


def test_a_failed_run_does_not_stop_the_others_and_is_reported(tmp_path, monkeypatch):
    fake = FakeFit(fail={"synthetic-sasrec-ce-all-seed1"})
    monkeypatch.setattr(sweep_mod, "fit", fake)
    with pytest.raises(SeqrecError, match=r"1 of 2 runs failed.*loss became nan"):
        run_sweep(write_study(tmp_path), quiet=True)
    assert len(fake.calls) == 2
    assert is_finished(tmp_path / "runs" / "synthetic-sasrec-bce-all-seed1")
    fake.fail = set()
    assert len(run_sweep(write_study(tmp_path), quiet=True)) == 2  # retried on the next sweep
    assert fake.calls[-1] == "synthetic-sasrec-ce-all-seed1"


def test_progress_lines_when_not_quiet(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sweep_mod, "fit", FakeFit())
    run_sweep(write_study(tmp_path), quiet=False)
    err = capsys.readouterr().err
    assert "2 runs" in err and "[1/2]" in err and "[2/2]" in err and "ETA" in err


def test_real_tiny_sweep_resumes_only_the_missing_run(tmp_path, monkeypatch):
    """End to end with the real trainer: 2 runs; delete one results.json; only it reruns."""
    calls: list[str] = []

    def counting_fit(cfg: RunConfig, **kw: Any) -> TrainResult:
        calls.append(cfg.name or "")
        return fit(cfg, **kw)

    monkeypatch.setattr(sweep_mod, "fit", counting_fit)
    study = write_study(tmp_path)
    dirs = run_sweep(study, quiet=True)
    assert len(dirs) == 2 and all((d / "best" / "model.safetensors").is_file() for d in dirs)
    kept = dirs[0] / "results.json"
    os.utime(kept, (1_000_000, 1_000_000))  # mark: an untouched file keeps this mtime
    (dirs[1] / "results.json").unlink()
    run_sweep(study, quiet=True)
    assert calls == [dirs[0].name, dirs[1].name, dirs[1].name]
    assert kept.stat().st_mtime == 1_000_000
    assert is_finished(dirs[1])
