"""Never lose work: a run killed with SIGKILL at a random moment (twice: once while training,
once while resuming) continues with the real `seqrec train --resume` and ends with exactly the
metrics of an uninterrupted run; checkpoints that a kill could tear are refused; a NaN/inf loss
stops the CLI with a one-line diagnosis and keeps the last good checkpoint loadable."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from cli_runner import run_cli as run_cli_in_process
from seqrec import runs
from seqrec.config import RunConfig, merge, to_toml, validate
from seqrec.errors import SeqrecError, TrainingError
from seqrec.train import fit, resume

EPOCHS = 10


def config(tmp_path: Path, name: str, **train: object) -> RunConfig:
    """A small synthetic SASRec + BCE run (~0.3 s per epoch on one thread)."""
    return validate(
        merge(
            RunConfig(),
            {
                "data": {"synthetic_users": 400, "synthetic_items": 100, "synthetic_seed": 5},
                "model": {"dim": 16, "layers": 1, "maxlen": 15, "dropout": 0.3},
                "loss": {"name": "bce", "negatives": 2, "pool": "not-target"},
                "train": {
                    "epochs": EPOCHS, "batch_size": 32, "patience": 100, "threads": 1, "seed": 3,
                    **train,
                },
                "out_dir": str(tmp_path),
                "name": name,
            },
        )
    )  # fmt: skip


def cli(*args: str) -> subprocess.Popen[bytes]:
    """The real command line in its own process (as a user or a scheduler starts it)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "seqrec.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def kill_at_random(proc: subprocess.Popen[bytes], run_dir: Path, budget: float) -> str:
    """SIGKILL ``proc`` at a uniformly random moment in the ``budget`` seconds after its run
    folder has a config.toml (before that it has written nothing). Returns what happened."""
    deadline = time.monotonic() + 120
    while not (run_dir / runs.CONFIG).exists():
        assert proc.poll() is None, proc.communicate()[1].decode()
        assert time.monotonic() < deadline, "the run never started"
        time.sleep(0.005)
    delay = random.uniform(0.0, budget)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    state = "killed" if proc.returncode == -signal.SIGKILL else f"exit {proc.returncode}"
    return f"{state} {delay:.2f}s in, after {len(runs.read_metrics(run_dir))} logged epochs"


def test_kill_at_random_points_then_resume_matches_uninterrupted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ref_file = tmp_path / "reference.toml"
    ref_file.write_text(to_toml(config(tmp_path, "reference")))
    code, out, err = run_cli_in_process(
        monkeypatch, capsys, "train", "--config", str(ref_file), "--json"
    )
    assert code == 0, err
    reference = json.loads(out)
    budget = reference["wall_seconds"] * 1.2  # the whole run, final evaluation included

    cfg_file = tmp_path / "killed.toml"
    cfg_file.write_text(to_toml(config(tmp_path, "killed")))
    run_dir = tmp_path / "killed"
    history = [kill_at_random(cli("train", "--config", str(cfg_file), "-q"), run_dir, budget)]
    # a kill may also land after results.json was written (atomically) but before the process
    # exited: then the run is complete, and the comparison below still checks it
    if (run_dir / runs.CONFIG).exists() and not (run_dir / runs.RESULTS).exists():
        # a second kill, this time while it resumes
        history.append(
            kill_at_random(cli("train", "--resume", str(run_dir), "-q"), run_dir, budget)
        )
    if not (run_dir / runs.RESULTS).exists():
        final = cli("train", "--resume", str(run_dir), "--json")
        out_b, err_b = final.communicate(timeout=300)
        assert final.returncode == 0, f"{history}: {err_b.decode()}"
        resumed = json.loads(out_b)
    else:  # both kills came after the end: still a determinism check
        resumed = json.loads((run_dir / runs.RESULTS).read_text())
    assert any(h.startswith("killed") for h in history), f"no kill landed: {history}"

    for key in ("test", "valid", "best_epoch", "epochs_run", "baselines"):
        assert resumed[key] == reference[key], f"{key} differs after {history}"
    new_log, ref_log = runs.read_metrics(run_dir), runs.read_metrics(tmp_path / "reference")
    assert [r["epoch"] for r in new_log] == list(range(1, EPOCHS + 1)), history
    assert [(r["loss"], r["valid"]) for r in new_log] == [(r["loss"], r["valid"]) for r in ref_log]
    assert not list(run_dir.rglob("*.tmp")), "a temp file of an interrupted write is left"


def test_resume_of_a_finished_or_missing_run_is_refused(tmp_path: Path) -> None:
    done = fit(config(tmp_path, "done", epochs=1), quiet=True)
    with pytest.raises(TrainingError, match="already finished"):
        resume(done.run_dir, quiet=True)
    with pytest.raises(SeqrecError, match="not a run folder"):
        resume(tmp_path / "nowhere", quiet=True)


def test_resume_of_a_run_a_sweep_is_training_is_refused(tmp_path: Path) -> None:
    run_dir = fit(config(tmp_path, "busy", epochs=2), quiet=True).run_dir
    results = json.loads((run_dir / runs.RESULTS).read_text())
    (run_dir / runs.RESULTS).unlink()  # as if killed after its last epoch
    with runs.claim(tmp_path, "busy") as mine:  # a sweep holds the run's lock
        assert mine
        with pytest.raises(TrainingError, match=r"being trained by a sweep .*busy\.lock"):
            resume(run_dir, quiet=True)
    again = resume(run_dir, quiet=True)  # the lock is free again
    assert again.results["test"] == results["test"]


def test_torn_checkpoint_is_refused_not_mistaken_for_a_good_one(tmp_path: Path) -> None:
    """A kill between writing the weights and model.json leaves weights of one epoch next to
    the description of another: loading refuses it (the weights' hash is in model.json)."""
    run = fit(config(tmp_path, "torn", epochs=1), quiet=True).run_dir
    best = run / runs.BEST
    _, meta = runs.load_checkpoint(best)
    assert meta[runs.WEIGHTS_HASH]
    other = fit(config(tmp_path, "other", epochs=1, seed=9), quiet=True).run_dir
    (other / runs.BEST / "model.safetensors").replace(best / "model.safetensors")
    with pytest.raises(SeqrecError, match=r"does not match .*model\.json.*--resume"):
        runs.load_checkpoint(best)
    (best / "model.safetensors").write_bytes(b"\x00" * 10)
    (best / "model.json").write_text(json.dumps({**meta, runs.WEIGHTS_HASH: None}))
    with pytest.raises(SeqrecError, match="cannot load the weights"):
        runs.load_checkpoint(best)
    (best / "model.json").write_text('{"model": ')
    with pytest.raises(SeqrecError, match="not a seqrec checkpoint description"):
        runs.load_checkpoint(best)


def test_huge_learning_rate_stops_the_cli_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg_file = tmp_path / "c.toml"
    cfg_file.write_text(to_toml(config(tmp_path, "huge", lr=1e30, epochs=2)))
    code, out, err = run_cli_in_process(monkeypatch, capsys, "train", "--config", str(cfg_file))
    assert code == 2 and "Traceback" not in out + err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert "loss became nan at epoch 1" in line and "smaller learning rate (now 1e+30)" in line
    assert "has no checkpoint" in line  # failed before the first evaluation: says so
    assert not (tmp_path / "huge" / runs.RESULTS).exists()


def test_nan_loss_stops_with_diagnosis_and_keeps_the_best_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """One weight becomes NaN at the start of epoch 3 (as after a diverging update); the loss
    check must stop the real CLI entry point and the earlier best checkpoint must survive."""
    import seqrec.train as train_module

    original = train_module.train_one_epoch

    def poisoned(model, *args, **kwargs):  # type: ignore[no-untyped-def]
        if args[-2] == 3:  # the epoch argument
            with torch.no_grad():  # the final LayerNorm's bias: every position uses it
                list(model.parameters())[-1].view(-1)[0] = float("nan")
        return original(model, *args, **kwargs)

    monkeypatch.setattr(train_module, "train_one_epoch", poisoned)
    cfg_file = tmp_path / "c.toml"
    cfg_file.write_text(to_toml(config(tmp_path, "nan", epochs=5)))
    code, out, err = run_cli_in_process(
        monkeypatch, capsys, "train", "--config", str(cfg_file), "-q"
    )
    assert code == 2 and "Traceback" not in out + err
    (line,) = err.strip().splitlines()  # -q: the error is the only output
    assert line.startswith("error: the bce loss became nan at epoch 3"), line
    run_dir = tmp_path / "nan"
    log = runs.read_metrics(run_dir)
    assert [r["epoch"] for r in log] == [1, 2]
    best = max(log, key=lambda r: r["valid"]["ndcg@10"])["epoch"]
    assert "Non-finite weights" in line and f"(epoch {best}, valid ndcg@10" in line, line
    assert not (run_dir / runs.RESULTS).exists()
    model, meta = runs.load_checkpoint(run_dir / runs.BEST)  # hash checked
    assert meta["epoch"] == best
    assert all(torch.isfinite(p).all() for p in model.parameters())


# ---- training a run further (a larger --epochs / --patience) ----


def _same_run(a: Path, b: Path) -> None:
    """Two run folders hold the same training: every logged epoch and the final results."""
    ra, rb = (json.loads((d / runs.RESULTS).read_text()) for d in (a, b))
    for key in ("test", "valid", "best_epoch", "epochs_run", "baselines"):
        assert ra[key] == rb[key], key
    la, lb = runs.read_metrics(a), runs.read_metrics(b)
    assert [(r["epoch"], r["loss"], r.get("valid")) for r in la] == [
        (r["epoch"], r["loss"], r.get("valid")) for r in lb
    ]
    assert runs.load_run_config(a) == replace(runs.load_run_config(b), name=a.name)


def test_more_patience_continues_a_stopped_run_into_the_run_it_would_have_been(
    tmp_path: Path,
) -> None:
    """lr 0.03 with patience 1 stops early (after epoch 6); trained further with patience 100
    it must end exactly as a run started with patience 100."""
    short = fit(config(tmp_path, "short", lr=0.03, patience=1), quiet=True)
    before = short.results
    assert before["epochs_run"] < EPOCHS  # it did stop early, so the test means something
    fit(config(tmp_path, "long", lr=0.03, patience=100), quiet=True)

    resume(short.run_dir, patience=100, quiet=True)
    _same_run(short.run_dir, tmp_path / "long")
    kept = short.run_dir / runs.EXTENSIONS / f"from-epoch-{before['epochs_run']}"
    assert json.loads((kept / runs.RESULTS).read_text()) == before  # nothing is lost
    assert runs.load_run_config(kept).train.patience == 1
    _, meta = runs.load_checkpoint(short.run_dir / runs.BEST)
    assert meta["epoch"] == json.loads((short.run_dir / runs.RESULTS).read_text())["best_epoch"]


def test_more_epochs_continues_a_finished_run_through_the_real_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = fit(config(tmp_path, "four", epochs=4), quiet=True).run_dir
    fit(config(tmp_path, "ten"), quiet=True)
    code, _, err = run_cli_in_process(
        monkeypatch, capsys, "train", "--resume", str(run_dir), "--epochs", str(EPOCHS)
    )
    assert code == 0, err
    assert "trained further after epoch 4 (train.epochs: 4 != 10)" in err
    _same_run(run_dir, tmp_path / "ten")
    env = json.loads((run_dir / runs.ENVIRONMENT).read_text())
    assert env["torch"] == torch.__version__ and "resumed" not in env["resumed"][0]
    assert [r["after_epoch"] for r in env["resumed"]] == [4]  # and the extension is recorded
    assert env["resumed"][0]["argv"][-2:] == ["--epochs", str(EPOCHS)]


def test_a_killed_extension_finishes_on_the_next_try(tmp_path: Path) -> None:
    """Killed after the old results were moved aside but before the new config was written:
    the folder is an unfinished run with the old config, and trying again finishes it."""
    short = fit(config(tmp_path, "short", lr=0.03, patience=1), quiet=True)
    fit(config(tmp_path, "long", lr=0.03, patience=100), quiet=True)
    kept = short.run_dir / runs.EXTENSIONS / f"from-epoch-{short.results['epochs_run']}"
    kept.mkdir(parents=True)
    (short.run_dir / runs.RESULTS).replace(kept / runs.RESULTS)  # the kill lands here
    resume(short.run_dir, patience=100, quiet=True)
    _same_run(short.run_dir, tmp_path / "long")
    assert json.loads((kept / runs.RESULTS).read_text()) == short.results


@pytest.mark.parametrize(
    ("start", "further", "match"),
    [
        ({"patience": 3}, {"patience": 2}, r"train\.patience 2 is smaller than the run's 3"),
        ({"epochs": 4}, {"epochs": 3}, r"train\.epochs 3 is smaller than the run's 4"),
        (
            {"epochs": 4, "eval_every": 3},
            {"epochs": 9},
            r"its last epoch 4 was evaluated out of turn \(eval_every 3\)",
        ),
        ({"epochs": 2}, {}, r"already finished .*give a larger --epochs \(now 2\) or --patience"),
    ],
)
def test_training_further_is_refused_when_it_would_not_be_exact(
    tmp_path: Path, start: dict[str, int], further: dict[str, int], match: str
) -> None:
    run_dir = fit(config(tmp_path, "run", **{"epochs": 2, **start}), quiet=True).run_dir
    before = sorted(p.relative_to(run_dir) for p in run_dir.rglob("*"))
    with pytest.raises(TrainingError, match=match):
        resume(run_dir, quiet=True, **further)
    assert sorted(p.relative_to(run_dir) for p in run_dir.rglob("*")) == before  # untouched


def test_resume_takes_no_option_but_epochs_and_patience(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = fit(config(tmp_path, "run", epochs=1), quiet=True).run_dir
    code, _, err = run_cli_in_process(
        monkeypatch, capsys, "train", "--resume", str(run_dir), "--lr", "0.1"
    )
    assert code == 2 and "the only options it takes are a larger --epochs and --patience" in err


def test_a_finished_run_without_saved_state_is_not_trained_further(tmp_path: Path) -> None:
    run_dir = fit(config(tmp_path, "run", epochs=2), quiet=True).run_dir
    (run_dir / runs.LAST_STATE).unlink()  # e.g. deleted to save space
    with pytest.raises(TrainingError, match=r"no saved training state \(last_state\.pt\)"):
        resume(run_dir, epochs=4, quiet=True)
    assert (run_dir / runs.RESULTS).exists()
