"""Sweeps: resumable (finished runs never repeat, killed ones are redone cleanly), ETA, failures."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from cli_runner import run_cli
from seqrec import runs
from seqrec.config import RunConfig, to_toml
from seqrec.errors import SeqrecError, TrainingError
from seqrec.experiments import sweep as sweep_mod
from seqrec.experiments.report import collect_runs, runs_rows
from seqrec.experiments.study import load_study
from seqrec.experiments.sweep import eta_seconds, fmt_seconds, is_finished, run_sweep
from seqrec.runs import read_metrics
from seqrec.train import TrainResult, fit

from .fakes import fake_run, metrics

STUDY = """
name = "tiny"
out_dir = "OUT"
baseline = "bce"
seeds = [1]
per_position = {per_position}
[base]
model = {{ name = "sasrec", dim = 8, layers = 1, maxlen = 10 }}
data = {{ dataset = "synthetic", synthetic_users = 200, synthetic_items = 50 }}
train = {{ epochs = {epochs}, batch_size = 64 }}
[grid]
"loss.name" = ["ce", "bce"]
"""


def write_study(tmp_path: Path, epochs: int = 1, per_position: int = 0) -> Path:
    path = tmp_path / "tiny.toml"
    text = STUDY.format(epochs=epochs, per_position=per_position)
    path.write_text(text.replace("OUT", str(tmp_path / "runs")), encoding="utf-8")
    return path


class FakeFit:
    """Stands in for seqrec.train.fit: writes a finished run folder and counts calls."""

    def __init__(self, fail: set[str] | None = None) -> None:
        self.calls: list[str] = []
        self.resumed: list[str] = []
        self.fail = fail or set()

    def __call__(
        self,
        cfg: RunConfig,
        *,
        quiet: bool = False,
        on_epoch: Any = None,
        resume_dir: Path | None = None,
    ) -> TrainResult:
        self.calls.append(cfg.name or "")
        run_dir = Path(cfg.out_dir) / (cfg.name or "")
        if resume_dir is not None:
            assert resume_dir == run_dir and (run_dir / "config.toml").is_file()
            self.resumed.append(cfg.name or "")
        else:
            assert not run_dir.exists(), "a run that is not resumed starts in a fresh folder"
        if cfg.name in self.fail:
            run_dir.mkdir(parents=True, exist_ok=True)
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


NAMES = ["synthetic-sasrec-ce-all-seed1", "synthetic-sasrec-bce-all-seed1"]


def test_unfinished_runs_resume_unless_their_folder_cannot_be(tmp_path, monkeypatch):
    fake = FakeFit()
    monkeypatch.setattr(sweep_mod, "fit", fake)
    study = write_study(tmp_path)
    dirs = run_sweep(study, quiet=True)
    assert [d.name for d in dirs] == NAMES and fake.calls == NAMES and not fake.resumed
    manifest = json.loads((tmp_path / "runs" / "sweep.json").read_text())
    assert [r["name"] for r in manifest["runs"]] == NAMES and manifest["baseline"] == "bce"

    # everything finished: a rerun does nothing
    assert [d.name for d in run_sweep(study, quiet=True)] == NAMES
    assert len(fake.calls) == 2

    # killed mid-way (config written, no results.json): resumed in its own folder
    killed = tmp_path / "runs" / NAMES[1]
    (killed / "results.json").unlink()
    (killed / ".results.json.x1.tmp").write_text("torn")  # a temp file the kill left behind
    assert not is_finished(killed)
    run_sweep(study, quiet=True)
    assert fake.calls == [*NAMES, NAMES[1]] and fake.resumed == [NAMES[1]]
    assert is_finished(killed) and not (killed / ".results.json.x1.tmp").exists()
    assert not (tmp_path / "runs" / ".incomplete").exists()

    # killed before its config was written: moved aside and redone from scratch
    (killed / "results.json").unlink()
    (killed / "config.toml").unlink()
    run_sweep(study, quiet=True)
    assert fake.calls[-1] == NAMES[1] and fake.resumed == [NAMES[1]]
    aside = list((tmp_path / "runs" / ".incomplete").iterdir())
    assert len(aside) == 1 and (aside[0] / "metrics.jsonl").is_file()

    # an unfinished folder of another config is never continued
    (killed / "results.json").unlink()
    text = (killed / "config.toml").read_text().replace("epochs = 1", "epochs = 7")
    (killed / "config.toml").write_text(text)
    run_sweep(study, quiet=True)
    assert (
        fake.resumed == [NAMES[1]] and len(list((tmp_path / "runs" / ".incomplete").iterdir())) == 2
    )


def test_per_position_metrics_are_added_to_finished_runs_that_lack_them(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep_mod, "fit", FakeFit())
    done: list[tuple[str, int]] = []

    def fake_positions(run_dir: Path, *, window: int) -> None:
        done.append((run_dir.name, window))
        (run_dir / "positions.json").write_text("{}")

    study = write_study(tmp_path, per_position=7)
    run_sweep(study, quiet=True, positions_fn=fake_positions)
    assert done == [(n, 7) for n in NAMES]
    (tmp_path / "runs" / NAMES[0] / "positions.json").unlink()  # killed during that step
    run_sweep(study, quiet=True, positions_fn=fake_positions)
    assert done[-1] == (NAMES[0], 7) and len(done) == 3  # no retraining, just the metrics


def test_dry_run_lists_what_is_done_and_runs_nothing(tmp_path, monkeypatch, capsys):
    fake = FakeFit()
    monkeypatch.setattr(sweep_mod, "fit", fake)
    study = write_study(tmp_path)
    code, out, _ = run_cli(monkeypatch, capsys, "sweep", str(study), "--dry-run")
    assert code == 0 and f"todo   {NAMES[0]}" in out and "0 done, 2 to run" in out
    run_sweep(study, quiet=True)
    code, out, _ = run_cli(monkeypatch, capsys, "sweep", str(study), "--dry-run")
    assert f"done   {NAMES[1]}" in out and "2 done, 0 to run" in out and len(fake.calls) == 2


def test_dry_run_says_which_runs_are_stale_or_resumed(tmp_path, monkeypatch, capsys):
    fake = FakeFit()
    monkeypatch.setattr(sweep_mod, "fit", fake)
    study = write_study(tmp_path)
    run_sweep(study, quiet=True, only=["loss=ce"])
    started = tmp_path / "runs" / NAMES[1]  # the bce run: config written, no results
    plan = {r.name: r for r in load_study(study).runs()}
    started.mkdir()  # as a killed sweep leaves it: the planned config written, no results
    (started / "config.toml").write_text(to_toml(plan[NAMES[1]].config), encoding="utf-8")
    code, out, _ = run_cli(monkeypatch, capsys, "sweep", str(study), "--dry-run")
    assert code == 0 and f"done   {NAMES[0]}" in out and f"resume {NAMES[1]}" in out
    study.write_text(study.read_text().replace("batch_size = 64", "batch_size = 32"))
    code, out, _ = run_cli(monkeypatch, capsys, "sweep", str(study), "--dry-run")
    assert f"stale  {NAMES[0]}: train.batch_size: 64 != 32" in out
    assert f"redo   {NAMES[1]}: train.batch_size: 64 != 32" in out
    assert "0 done, 2 to run" in out and "1 finished run(s) were made with another config" in out
    with pytest.raises(SeqrecError, match="different config"):  # what the real sweep does
        run_sweep(study, quiet=True)


def test_only_runs_the_selected_part_and_keeps_the_whole_study_in_the_manifest(
    tmp_path, monkeypatch, capsys
):
    fake = FakeFit()
    monkeypatch.setattr(sweep_mod, "fit", fake)
    study = write_study(tmp_path)
    code, out, _ = run_cli(
        monkeypatch, capsys, "sweep", str(study), "--dry-run", "--only", "loss=bce"
    )
    assert code == 0 and "1 run in" in out and "bce" in out and "-ce-" not in out
    done = run_sweep(study, quiet=True, only=["loss.name=bce", "seed=1"])
    assert fake.calls == ["synthetic-sasrec-bce-all-seed1"] and len(done) == 1
    manifest = json.loads((tmp_path / "runs" / "sweep.json").read_text())
    assert sorted(r["loss"] for r in manifest["runs"]) == ["bce", "ce"]
    # the other part, as a second sweep sharing the folder would run it
    run_sweep(study, quiet=True, only=["loss=ce,bce"])
    assert fake.calls == ["synthetic-sasrec-bce-all-seed1", "synthetic-sasrec-ce-all-seed1"]


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("loss", "write KEY=VALUE"),
        ("loss=", "write KEY=VALUE"),
        ("=ce", "write KEY=VALUE"),
        ("optimizer=adam", "unknown key 'optimizer'; use one of dataset, method"),
        ("loss=sce", "no run has loss = sce; the study has bce, ce"),
        ("seed=2", "no run has seed = 2; the study has 1"),
    ],
)
def test_only_refuses_filters_that_cannot_select(tmp_path, spec, match):
    planned = load_study(write_study(tmp_path)).runs()
    with pytest.raises(SeqrecError, match=match):
        sweep_mod.select_runs(planned, [spec])


def test_a_changed_study_does_not_reuse_stale_finished_runs(tmp_path, monkeypatch):
    fake = FakeFit()
    monkeypatch.setattr(sweep_mod, "fit", fake)
    run_sweep(write_study(tmp_path, epochs=2), quiet=True)
    with pytest.raises(SeqrecError, match=r"train\.epochs: 2 != 1"):  # fewer: not an extension
        run_sweep(write_study(tmp_path, epochs=1), quiet=True)
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


KILL_STUDY = """
name = "killtest"
out_dir = "OUT"
baseline = "bce"
seeds = [1, 2]
per_position = 4
[base]
model = { name = "sasrec", dim = 8, layers = 1, maxlen = 10 }
data = { dataset = "synthetic", synthetic_users = 200, synthetic_items = 50 }
train = { epochs = 3, batch_size = 32, threads = 1 }
[grid]
"loss.name" = ["ce", "bce"]
"""
TIMING_COLUMNS = {"train_seconds", "wall_seconds", "run_dir"}  # differ between any two runs


def _table(runs_dir: Path) -> list[dict[str, Any]]:
    """The report's runs table (runs.csv rows) without the timing columns."""
    records, notes, _ = collect_runs(runs_dir)
    assert not notes
    return [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in runs_rows(records)]


def _fingerprint(path: Path) -> tuple[int, int, bytes]:
    st = path.stat()
    return st.st_ino, st.st_mtime_ns, path.read_bytes()


def test_kill_9_at_a_random_point_and_rerun_finishes_only_the_rest(tmp_path, monkeypatch, capsys):
    """`seqrec sweep` in a subprocess, kill -9 inside a random run after a random epoch (or
    wherever the sweep is when the poll notices), rerun the same command: finished runs are not
    touched, an unfinished run resumes from its last epoch, and the final table equals an
    uninterrupted sweep's (timings aside)."""
    seed = random.randrange(10**6)
    rng = random.Random(seed)
    study = tmp_path / "kill.toml"
    study.write_text(KILL_STUDY.replace("OUT", str(tmp_path / "runs")), encoding="utf-8")
    planned = load_study(study).runs()
    root = tmp_path / "runs"
    target = root / planned[rng.randrange(len(planned) - 1)].name  # a later run is still to come
    after_epoch = rng.randrange(1, 3)  # of 3: before the run's end
    why = f"random seed {seed}: kill in {target.name} after epoch {after_epoch}"

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with (tmp_path / "first.log").open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "seqrec.cli", "sweep", str(study)],
            env=env,
            stderr=log,
            stdout=log,
        )
        deadline = time.monotonic() + 120
        try:
            while proc.poll() is None and time.monotonic() < deadline:
                logged = len(read_metrics(target)) if target.is_dir() else 0
                if logged >= after_epoch or is_finished(target):
                    break
                time.sleep(0.005)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"{why}: the sweep ended before the kill"

    # what the kill left: finished runs, at most one unfinished folder (resumable if it has
    # its config), the runs not started yet
    finished = {
        r.name: _fingerprint(root / r.name / "results.json")
        for r in planned
        if is_finished(root / r.name)
    }
    assert len(finished) < len(planned), why
    started = [r.name for r in planned if (root / r.name).is_dir() and r.name not in finished]
    assert len(started) <= 1, why
    resumable = [n for n in started if (root / n / "config.toml").is_file()]

    calls: list[tuple[str, bool]] = []

    def counting_fit(cfg: RunConfig, **kw: Any) -> TrainResult:
        calls.append((cfg.name or "", kw.get("resume_dir") is not None))
        return fit(cfg, **kw)

    monkeypatch.setattr(sweep_mod, "fit", counting_fit)
    code, _out, err = run_cli(monkeypatch, capsys, "sweep", str(study))
    assert code == 0, f"{why}: {err}"
    expected = [(r.name, r.name in resumable) for r in planned if r.name not in finished]
    assert calls == expected, why  # finished runs are never trained again
    for name, before in finished.items():  # ... nor rewritten
        assert _fingerprint(root / name / "results.json") == before, why
    assert ("resuming the unfinished run" in err) == bool(resumable), why
    assert (root / ".incomplete").exists() == (len(started) > len(resumable)), why
    assert all(is_finished(root / r.name) for r in planned)

    monkeypatch.setattr(sweep_mod, "fit", fit)
    run_sweep(study, quiet=True, out_dir=tmp_path / "uninterrupted")
    assert _table(root) == _table(tmp_path / "uninterrupted"), why
    for r in planned:
        ours = json.loads((root / r.name / "positions.json").read_text())
        ref = json.loads((tmp_path / "uninterrupted" / r.name / "positions.json").read_text())
        assert ours == ref, why


def test_claim_is_exclusive_and_released_when_its_holder_dies(tmp_path):
    with (
        runs.claim(tmp_path, "run-a") as first,
        runs.claim(tmp_path, "run-a") as second,
        runs.claim(tmp_path, "b") as other,
    ):
        assert first and not second and other
    with runs.claim(tmp_path, "run-a") as again:
        assert again
    # a process holding the lock is killed: the kernel releases it
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from pathlib import Path\n"
            "from seqrec.runs import claim\n"
            "with claim(Path(sys.argv[1]), 'run-a') as mine:\n"
            "    print(mine, flush=True)\n"
            "    time.sleep(60)\n",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "True"
        with runs.claim(tmp_path, "run-a") as mine:
            assert not mine
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with runs.claim(tmp_path, "run-a") as mine:
        assert mine


def test_a_run_another_sweep_is_training_is_skipped_and_left_to_it(tmp_path, monkeypatch, capsys):
    fake = FakeFit()
    monkeypatch.setattr(sweep_mod, "fit", fake)
    study = write_study(tmp_path)
    root = tmp_path / "runs"
    with runs.claim(root, NAMES[0]) as mine:  # as another sweep training the CE run
        assert mine
        done = run_sweep(study, quiet=False)
    assert fake.calls == [NAMES[1]] and done == [root / NAMES[1]]
    err = capsys.readouterr().err
    assert f"{NAMES[0]}: another sweep is training it; skipped" in err
    assert f"1 run(s) left to the other sweep(s) working in {root}: {NAMES[0]}" in err
    run_sweep(study, quiet=True)  # that sweep died without finishing it: the next one does
    assert fake.calls == [NAMES[1], NAMES[0]]


def test_jobs_must_be_positive_and_use_seqrecs_own_fit(tmp_path):
    study = write_study(tmp_path)
    with pytest.raises(SeqrecError, match="--jobs must be a positive integer"):
        run_sweep(study, quiet=True, jobs=0)
    with pytest.raises(SeqrecError, match="own fit"):
        run_sweep(study, quiet=True, jobs=2, fit_fn=FakeFit())


def test_jobs_2_trains_every_run_once_and_equals_a_sequential_sweep(tmp_path):
    """`seqrec sweep --jobs 2`: two processes share the four runs through their locks; every
    run is trained exactly once (one metrics line per epoch) and the table equals a
    one-process sweep's, timings aside."""
    study = tmp_path / "jobs.toml"
    study.write_text(KILL_STUDY.replace("OUT", str(tmp_path / "runs")), encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    logs = {}
    for out, jobs in (("runs", "2"), ("sequential", "1")):
        command = [sys.executable, "-m", "seqrec.cli", "sweep", str(study), "--jobs", jobs]
        proc = subprocess.run(
            [*command, "--out-dir", str(tmp_path / out)],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr
        logs[out] = proc.stderr
    assert "4 to run, 2 at a time" in logs["runs"] and "all 4 runs finished" in logs["runs"]
    root = tmp_path / "runs"
    planned = load_study(study).runs()
    for r in planned:
        assert is_finished(root / r.name)
        assert [m["epoch"] for m in read_metrics(root / r.name)] == [1, 2, 3], r.name
        assert (root / r.name / "positions.json").is_file()
    assert _table(root) == _table(tmp_path / "sequential")


def test_a_jobs_worker_tells_the_first_process_what_it_trains(tmp_path, monkeypatch, capsys):
    """A --jobs worker prints nothing itself: its status and its lines go on the queue, for the
    first process to show (status under the bar, lines above it as "[job 2] ...")."""
    import queue

    monkeypatch.setattr(sweep_mod, "fit", FakeFit())
    statuses: queue.Queue = queue.Queue()
    run_sweep(write_study(tmp_path), _worker=sweep_mod.WorkerRole("job 2", 2, statuses))
    said = []
    while not statuses.empty():
        said.append(statuses.get_nowait())
    status = [text for _, kind, text in said if kind == "status"]
    lines = [text for _, kind, text in said if kind == "say"]
    assert {name for name, _, _ in said} == {"job 2"}
    assert status == [
        f"{NAMES[0]} starting",
        f"{NAMES[0]} epoch 1/1 ndcg@10 0.2000",
        f"{NAMES[1]} starting",
        f"{NAMES[1]} epoch 1/1 ndcg@10 0.2000",
        "done",
    ]
    assert lines[0].startswith(f"[1/2] {NAMES[0]}: test ndcg@10 0.3000")
    assert lines[1].startswith(f"[2/2] {NAMES[1]}")
    assert capsys.readouterr().err == ""


LONGER_STUDY = """
name = "longer"
out_dir = "OUT"
seeds = [1]
per_position = 5
[base]
model = {{ name = "sasrec", dim = 8, layers = 1, maxlen = 10 }}
data = {{ dataset = "synthetic", synthetic_users = 200, synthetic_items = 50 }}
train = {{ epochs = 8, batch_size = 32, lr = 0.03, patience = {patience}, threads = 1 }}
[grid]
"loss.name" = ["bce"]
"""


def test_a_study_with_more_patience_trains_its_finished_runs_further(tmp_path, monkeypatch, capsys):
    """Raising train.patience in a study is not a stale study: the finished run is trained on
    from its saved state (dry-run says "extend") and ends as a fresh sweep of the new study."""
    study = tmp_path / "longer.toml"

    def write(patience: int) -> None:
        text = LONGER_STUDY.format(patience=patience).replace("OUT", str(tmp_path / "runs"))
        study.write_text(text, encoding="utf-8")

    write(1)
    (run_dir,) = run_sweep(study, quiet=True)
    stopped = json.loads((run_dir / runs.RESULTS).read_text())["epochs_run"]
    assert stopped < 8  # patience 1 stopped it early: the extension has work to do
    write(100)
    code, out, _ = run_cli(monkeypatch, capsys, "sweep", str(study), "--dry-run")
    assert f"extend {run_dir.name}: train.patience: 1 != 100" in out
    assert "0 done, 1 to run (1 of them finished runs to train further)" in out

    assert run_sweep(study, quiet=True) == [run_dir]
    assert run_sweep(study, out_dir=tmp_path / "fresh", quiet=True)  # the new study from scratch
    assert _table(tmp_path / "runs") == _table(tmp_path / "fresh")
    assert [m["epoch"] for m in read_metrics(run_dir)] == list(range(1, 9))
    fresh_positions = (tmp_path / "fresh" / run_dir.name / "positions.json").read_bytes()
    assert (run_dir / "positions.json").read_bytes() == fresh_positions  # recomputed, not kept
    assert (run_dir / runs.EXTENSIONS / f"from-epoch-{stopped}" / "positions.json").is_file()
    code, out, _ = run_cli(monkeypatch, capsys, "sweep", str(study), "--dry-run")
    assert code == 0 and f"done   {run_dir.name}" in out


def test_done_cache_rereads_a_run_only_when_its_results_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The progress count asks every second; each finished run's config is read once per
    results.json, and a run whose results moved away (trained further) counts as not done."""
    from types import SimpleNamespace

    asked: list[str] = []

    def is_done(run: Any, run_dir: Path) -> bool:
        asked.append(run.name)
        return run.name != "stale"

    monkeypatch.setattr(sweep_mod, "is_done", is_done)
    planned = [SimpleNamespace(name=n) for n in ("a", "stale", "todo")]
    for name in ("a", "stale"):
        (tmp_path / name).mkdir()
        (tmp_path / name / runs.RESULTS).write_text("{}")
    done = sweep_mod.DoneCache(tmp_path)
    for _ in range(3):
        assert [done(r) for r in planned] == [True, False, False]
    assert sorted(asked) == ["a", "stale"]  # once each, and never for the unfinished one
    results = tmp_path / "a" / runs.RESULTS
    os.utime(results, ns=(1, results.stat().st_mtime_ns + 1000))  # rewritten
    assert done(planned[0]) and asked.count("a") == 2
    results.unlink()  # moved to extensions/ while it is trained further
    assert not done(planned[0])
