"""Run a study's grid sequentially, resumably, with a live summary of progress and ETA.

Resumability rules (a run folder is ``out_dir/<run name>``, names are deterministic):

* a run is *finished* only if its folder has ``results.json`` (written last, atomically, by
  :func:`seqrec.train.fit`); finished runs are never repeated;
* a folder without ``results.json`` is what a killed sweep leaves behind. If its
  ``config.toml`` is the config the study asks for, the run **resumes from its last completed
  epoch** (:func:`seqrec.train.fit` with ``resume_dir``; the final metrics equal an
  uninterrupted run's). A folder that cannot be resumed (killed before its config was written,
  or made with another config) is moved aside to ``out_dir/.incomplete/<name>-<time>`` and the
  run is redone from scratch, so a run folder never mixes epochs of two configs;
* a run whose saved config differs from the study's only in a larger ``train.epochs`` or
  ``train.patience`` is *trained further* from its saved state, finished or not
  (:func:`seqrec.runs.extension_problem`: the result equals a run started with the new settings;
  the old config and results are kept in ``extensions/``);
* any other finished run whose saved config differs from what the study now asks for stops the
  sweep before anything runs (change ``out_dir`` or remove the folder): stale numbers are never
  reported as if they came from the current study;
* with ``per_position > 0`` (the default) every finished run also gets ``positions.json``
  (:mod:`seqrec.experiments.positions`); a run finished without it (killed during that step) gets
  it on the next sweep, without retraining.

``out_dir/sweep.json`` records the study and the labels of every run (dataset, method, seed)
for :mod:`seqrec.experiments.report`.

Several sweeps may share one ``out_dir`` (``--jobs N`` starts N of them, or run one per
terminal): a run is trained only by the sweep holding its lock (:func:`seqrec.runs.claim`:
``out_dir/.locks/<name>.lock``, an exclusive ``flock``, which the kernel releases when its
process dies, so a killed sweep never leaves a run locked). The others skip it and take the
next run.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import queue
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from seqrec import runs
from seqrec.config import RunConfig
from seqrec.errors import SeqrecError
from seqrec.experiments.study import PlannedRun, Study, load_study
from seqrec.runs import FREE_SETTINGS, claim, config_diff  # noqa: F401 (re-exported)
from seqrec.text import counted
from seqrec.train import fit

INCOMPLETE = ".incomplete"


def is_finished(run_dir: Path) -> bool:
    """A run counts as finished only if ``results.json`` exists in its folder."""
    return (Path(run_dir) / runs.RESULTS).is_file()


def is_done(run: PlannedRun, run_dir: Path) -> bool:
    """Finished with the config the study asks for (nothing left to do for it)."""
    if not is_finished(run_dir):
        return False
    try:
        return not config_diff(runs.load_run_config(run_dir), run.config)
    except SeqrecError:
        return False


class DoneCache:
    """:func:`is_done` remembered per run until its results.json changes: the sweep's progress
    count asks every second while workers train, and reading and validating every finished
    run's config each time costs about 2 ms a run."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self._seen: dict[str, tuple[int, bool]] = {}  # run name -> (results mtime_ns, done)

    def __call__(self, run: PlannedRun) -> bool:
        run_dir = self.out_dir / run.name
        try:
            stamp = (run_dir / runs.RESULTS).stat().st_mtime_ns
        except OSError:  # not finished (or being trained further: its results moved away)
            return False
        hit = self._seen.get(run.name)
        if hit is None or hit[0] != stamp:
            hit = (stamp, is_done(run, run_dir))
            self._seen[run.name] = hit
        return hit[1]


def _extendable(saved: RunConfig, wanted: RunConfig) -> bool:
    return runs.extension_problem(saved, wanted) is None


def run_state(run: PlannedRun, run_dir: Path) -> tuple[str, str]:
    """(state, why) of what a sweep will do with ``run``'s folder, for ``--dry-run``: "done"
    (finished with this config), "extend" (finished with a smaller ``train.epochs`` or
    ``train.patience``: trained further), "stale" (finished with another config: the sweep
    stops on it), "resume" (started with this config, or one it extends), "redo" (started
    with another or no readable config: moved aside and run afresh) or "todo" (no folder);
    ``why`` names the differing settings ("" when none)."""
    if not run_dir.exists():
        return "todo", ""
    try:
        saved = runs.load_run_config(run_dir)
        diff = config_diff(saved, run.config)
        longer = bool(diff) and _extendable(saved, run.config)
    except SeqrecError:
        diff, longer = ["config unreadable or missing"], False
    why = "; ".join(diff[:2])
    if is_finished(run_dir):
        return ("done", "") if not diff else ("extend", why) if longer else ("stale", why)
    return ("resume", why) if not diff or longer else ("redo", why)


def eta_seconds(
    durations: list[float], remaining: int, current_elapsed: float = 0.0
) -> float | None:
    """Expected seconds left: mean duration of finished runs x runs left (the one running now
    counted as its mean minus what it has already taken, never below zero). None if unknown."""
    if remaining <= 0:
        return 0.0
    if not durations:
        return None
    mean = sum(durations) / len(durations)
    return max(mean - current_elapsed, 0.0) + mean * (remaining - 1)


def fmt_seconds(seconds: float | None) -> str:
    """'1h02m', '3m05s', '12s' or '?'."""
    if seconds is None:
        return "?"
    s = round(seconds)
    if s >= 3600:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


#: the labels of a planned run that ``--only`` can select on (grid axis paths work too)
SELECT_KEYS = ("dataset", "method", "model", "loss", "positions", "seed", "name")


def select_runs(planned: list[PlannedRun], only: list[str] | tuple[str, ...]) -> list[PlannedRun]:
    """The planned runs that match every ``KEY=VALUE[,VALUE...]`` filter (values of one key are
    alternatives). Keys are :data:`SELECT_KEYS` or a grid axis path such as ``loss.name``,
    matched against the run's label for that axis. Raises SeqrecError for a malformed filter, an
    unknown key, or a value no run has (naming what exists), so a typo never selects nothing."""
    chosen = list(planned)
    axes = sorted({a for r in planned for a in r.factors})
    for spec in only:
        key, sep, values = spec.partition("=")
        key = key.strip()
        wanted = {v.strip() for v in values.split(",") if v.strip()}
        if not sep or not key or not wanted:
            raise SeqrecError(
                f"--only {spec!r}: write KEY=VALUE or KEY=VALUE1,VALUE2 "
                "(e.g. --only dataset=beauty --only loss=ce,bce --only seed=1)"
            )
        if key not in SELECT_KEYS and key not in axes:
            raise SeqrecError(
                f"--only {spec!r}: unknown key {key!r}; use one of "
                f"{', '.join(SELECT_KEYS + tuple(axes))}"
            )

        def label(run: PlannedRun, key: str = key) -> str:
            return str(run.factors[key]) if key in run.factors else str(getattr(run, key, ""))

        known = {label(r) for r in planned}
        missing = sorted(wanted - known)
        if missing:
            raise SeqrecError(
                f"--only {spec!r}: no run has {key} = {', '.join(missing)}; the study has "
                f"{', '.join(sorted(known))}"
            )
        chosen = [r for r in chosen if label(r) in wanted]
    return chosen


def write_manifest(study: Study, planned: list[PlannedRun]) -> Path:
    """Write ``out_dir/sweep.json`` atomically; entries of runs no longer planned are kept."""
    path = study.out_dir / runs.MANIFEST
    old: dict[str, Any] = {}
    if path.is_file():
        try:
            old = {r["name"]: r for r in json.loads(path.read_text(encoding="utf-8"))["runs"]}
        except (json.JSONDecodeError, KeyError, TypeError):
            old = {}
    entries = {r.name: r.manifest() for r in planned}
    kept = [r for n, r in old.items() if n not in entries]
    runs.write_json(
        path,
        {
            "study": study.name,
            "study_file": str(study.path) if study.path is not None else None,
            "baseline": study.baseline,
            "reference": study.reference,
            "per_position": study.per_position,
            "seeds": list(study.seeds),
            "runs": list(entries.values()) + kept,
        },
    )
    return path


def _move_aside(run_dir: Path, out_dir: Path) -> Path:
    dest_root = out_dir / INCOMPLETE
    dest_root.mkdir(parents=True, exist_ok=True)
    dest = dest_root / f"{run_dir.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    i = 1
    while dest.exists():
        dest = dest_root / f"{run_dir.name}-{time.strftime('%Y%m%d-%H%M%S')}-{i}"
        i += 1
    shutil.move(str(run_dir), str(dest))
    return dest


def prepare_unfinished(run: PlannedRun, run_dir: Path, out_dir: Path) -> tuple[bool, str]:
    """Decide what to do with the folder of an unfinished run.

    Returns ``(resume, message)``: ``resume`` is True when the folder holds this run's config
    and can be continued with :func:`seqrec.train.fit` (``resume_dir``); otherwise the folder
    (if any) has been moved aside and the run starts afresh. ``message`` says what happened
    ("" if there was no folder).
    """
    if not run_dir.exists():
        return False, ""
    reason = ""
    if not (run_dir / runs.CONFIG).is_file():
        reason = "it was stopped before its config was written"
    else:
        try:
            saved = runs.load_run_config(run_dir)
            diff = config_diff(saved, run.config)
        except SeqrecError as exc:
            saved, diff, reason = None, [], f"its config cannot be read ({exc})"
        if diff and saved is not None and _extendable(saved, run.config):
            runs.remove_stale_temps(run_dir)
            done = runs.last_epoch(run_dir)
            return True, (
                f"{run.name}: training the {'finished' if is_finished(run_dir) else 'unfinished'}"
                f" run further from epoch {done} ({'; '.join(diff)})"
            )
        if diff:
            reason = f"it was made with another config ({'; '.join(diff[:2])})"
    if reason:
        moved = _move_aside(run_dir, out_dir)
        return False, f"{run.name}: unfinished folder moved to {moved} ({reason}); redoing it"
    runs.remove_stale_temps(run_dir)  # temp files of writes the kill interrupted; never read
    done = runs.last_epoch(run_dir)
    return True, f"{run.name}: resuming the unfinished run ({done} epochs logged)"


def _check_finished_configs(planned: list[PlannedRun], out_dir: Path) -> list[float]:
    """Refuse stale finished runs; return the wall seconds of the finished ones (for the ETA)."""
    durations = []
    for run in planned:
        run_dir = out_dir / run.name
        if not is_finished(run_dir):
            continue
        saved = runs.load_run_config(run_dir)
        diff = config_diff(saved, run.config)
        if diff and not _extendable(saved, run.config):
            raise SeqrecError(
                f"{run_dir} is a finished run made with a different config ({'; '.join(diff[:3])}"
                f"{'; ...' if len(diff) > 3 else ''}); the study changed since it ran. "
                "Use a new out_dir for the changed study, or remove that folder to redo it"
            )
        try:
            res = json.loads((run_dir / runs.RESULTS).read_text(encoding="utf-8"))
            durations.append(float(res["wall_seconds"]))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            pass
    return durations


class _Display:
    """Live summary on a terminal (rich): a bar of runs done/total with elapsed time and ETA,
    and under it the current run and epoch. Elsewhere one plain line per run on stderr;
    nothing when quiet."""

    def __init__(self, total: int, done: int, quiet: bool, live: bool = True) -> None:
        self.quiet = quiet
        self.extra: Callable[[], str] | None = None  # more status lines (the other jobs)
        self.forward: Callable[[str], None] | None = None  # say() sends here instead (workers)
        self.live: Any = None
        if not quiet and live and sys.stderr.isatty():
            from rich.console import Console, Group
            from rich.live import Live
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )
            from rich.text import Text

            self._group, self._text = Group, Text
            self.progress = Progress(
                TextColumn("[bold]sweep[/]"),
                BarColumn(bar_width=30),
                MofNCompleteColumn(),
                TextColumn("runs"),
                TimeElapsedColumn(),
                TextColumn("ETA {task.fields[eta]}"),
            )
            self.task = self.progress.add_task("sweep", total=total, completed=done, eta="?")
            self.status = Text("")
            self.live = Live(
                Group(self.progress, self.status),
                console=Console(stderr=True),
                refresh_per_second=4,
            )
            self.live.start()

    def say(self, msg: str) -> None:
        if self.forward is not None:
            self.forward(msg)
            return
        if self.quiet:
            return
        if self.live is not None:
            self.live.console.print(msg, markup=False, highlight=False)
        else:
            print(msg, file=sys.stderr, flush=True)

    def update(
        self, status: str, eta: float | str | None = "keep", completed: int | None = None
    ) -> None:
        """Show ``status`` under the bar; ``eta`` in seconds, None (unknown) or "keep";
        ``completed``: runs finished so far (None: unchanged)."""
        if self.live is None:
            return
        if isinstance(eta, str):  # "keep": leave the ETA shown
            self.progress.update(self.task, completed=completed)
        else:
            self.progress.update(self.task, eta=fmt_seconds(eta), completed=completed)
        text = f"  {status}"
        more = self.extra() if self.extra is not None else ""
        if more:
            text += "\n" + more
        self.status = self._text(text, overflow="ellipsis", no_wrap=True)
        self.live.update(self._group(self.progress, self.status))

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()


def run_sweep(
    study_path: str | Path,
    *,
    quiet: bool = False,
    out_dir: str | Path | None = None,
    data_dir: str | Path | None = None,
    fit_fn: Callable[..., Any] | None = None,
    positions_fn: Callable[..., Any] | None = None,
    only: list[str] | tuple[str, ...] = (),
    jobs: int = 1,
    _worker: WorkerRole | None = None,
) -> list[Path]:
    """Run every unfinished run of the study in order; return the folders of all finished runs.

    Args:
        study_path: the study TOML file (see :mod:`seqrec.experiments.study`).
        quiet: no progress output.
        out_dir: put the runs here instead of the study's ``out_dir``.
        data_dir: folder of named datasets for every run (default: the study's
            ``data.data_dir``, else ``$SEQREC_DATA_DIR``).
        fit_fn: the training function (default :func:`seqrec.train.fit`; tests substitute it).
        positions_fn: the per-position evaluation (default
            :func:`seqrec.experiments.positions.run_positions`; tests substitute it).
        only: ``KEY=VALUE[,VALUE...]`` filters (:func:`select_runs`): run only the matching
            runs. The manifest still lists the whole study.
        jobs: runs trained at once, each in its own process (this one and ``jobs - 1`` started
            for the sweep) with ``cores // jobs`` torch threads unless the study sets
            ``train.threads``. The processes share the runs through their locks
            (:func:`claim`); the default ``fit_fn``/``positions_fn`` only.
        _worker: set in the processes ``jobs`` starts (:class:`WorkerRole`).

    A run killed mid-way resumes from its last completed epoch (see the module docstring).
    A run that fails (e.g. a NaN loss) is reported and the sweep goes on; afterwards a
    :class:`SeqrecError` lists the failures (their folders are kept and retried on the next
    sweep). Interrupting (Ctrl-C) leaves the current runs unfinished; rerun to continue. A run
    another sweep is training (its lock is held) is skipped and left to that sweep.
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise SeqrecError(f"--jobs must be a positive integer, got {jobs!r}")
    if jobs > 1 and (fit_fn is not None or positions_fn is not None):
        raise SeqrecError("run_sweep: jobs > 1 trains in other processes with seqrec's own fit")
    if jobs > 1 and not runs.CAN_LOCK:
        raise SeqrecError("--jobs > 1 needs file locks (fcntl), which this system lacks")
    study = load_study(study_path)
    if out_dir is not None:
        study = replace(study, out_dir=Path(out_dir))
    train = fit_fn or fit
    if positions_fn is None:
        from seqrec.experiments.positions import run_positions as positions_fn
    planned = study.runs()
    if out_dir is not None:  # the run configs carry the out_dir they were planned with
        planned = [
            replace(r, config=replace(r.config, out_dir=str(study.out_dir))) for r in planned
        ]
    if data_dir is not None:
        planned = [
            replace(
                r, config=replace(r.config, data=replace(r.config.data, data_dir=str(data_dir)))
            )
            for r in planned
        ]
    parallel = _worker.shared_by if _worker else jobs
    if parallel > 1:  # share the cores: each run gets its part unless the study says otherwise
        per_run = max(1, (os.cpu_count() or 1) // parallel)
        planned = [
            r
            if r.config.train.threads is not None
            else replace(
                r, config=replace(r.config, train=replace(r.config.train, threads=per_run))
            )
            for r in planned
        ]
    selected = select_runs(planned, only)
    study.out_dir.mkdir(parents=True, exist_ok=True)
    durations = _check_finished_configs(selected, study.out_dir)
    write_manifest(study, planned)
    planned = selected

    run_done = DoneCache(study.out_dir)

    def finished_count() -> int:
        return sum(map(run_done, planned))

    todo = [r for r in planned if not run_done(r)]
    total = len(planned)
    display = _Display(total, total - len(todo), quiet, live=_worker is None)
    if not _worker:
        display.say(
            f"study {study.name}: {counted(total, 'run')} in {study.out_dir} "
            f"({total - len(todo)} already finished, {len(todo)} to run"
            + (f", {jobs} at a time" if jobs > 1 else "")
            + ")"
        )
    workers, statuses = (
        _start_workers(study_path, study.out_dir, data_dir, only, jobs) if jobs > 1 else ([], None)
    )
    others: dict[str, str] = {}  # job name -> its current status

    def drain() -> None:
        """Take the other jobs' messages: print their lines, keep their latest status."""
        while statuses is not None:
            try:
                name, kind, text = statuses.get_nowait()
            except (queue.Empty, OSError, ValueError):
                break
            if kind == "say":
                display.say(f"[{name}] {text}")
            else:
                others[name] = text

    def others_text() -> str:
        drain()
        return "\n".join(f"  {name}: {text}" for name, text in sorted(others.items()))

    display.extra = others_text if workers else None

    def tell(text: str, kind: str = "status") -> None:
        """A worker's status or output line, for the first process (never blocks or fails)."""
        if _worker is not None:
            with contextlib.suppress(queue.Full, OSError, ValueError):
                _worker.statuses.put_nowait((_worker.name, kind, text))

    if _worker is not None:  # a worker prints through the first process's display
        display.forward = lambda msg: tell(msg, "say")

    failures: list[str] = []
    skipped: list[str] = []  # runs another sweep held when this one came to them

    def add_positions(run: PlannedRun) -> None:
        """positions.json for a finished run that lacks it (a failure is reported, not fatal)."""
        run_dir = study.out_dir / run.name
        if study.per_position <= 0 or (run_dir / runs.POSITIONS).is_file():
            return
        display.update(f"{run.name}: per-position metrics")
        try:
            positions_fn(run_dir, window=study.per_position)
        except SeqrecError as exc:
            failures.append(f"{run.name} (per-position metrics): {exc}")
            display.say(f"FAILED per-position metrics of {run.name}: {exc}")

    session: list[float] = []  # durations measured in this process (preferred for the ETA)

    def eta(remaining: int, elapsed: float = 0.0) -> float | None:
        left = eta_seconds(session or durations, remaining, elapsed)
        return None if left is None else left / parallel

    parent = os.getppid()
    try:
        for run in planned:  # finished earlier, killed before their per-position metrics
            if run_done(run):
                with claim(study.out_dir, run.name) as mine:
                    if mine:
                        add_positions(run)
        for i, run in enumerate(todo):
            if _worker and os.getppid() != parent:
                _worker.statuses.cancel_join_thread()  # nobody reads it now: exit unflushed
                break  # the sweep that started this worker is gone: take no new run
            run_dir = study.out_dir / run.name
            remaining = len(todo) - i
            with claim(study.out_dir, run.name) as mine:
                if not mine:
                    skipped.append(run.name)
                    if not workers and not _worker:
                        display.say(f"{run.name}: another sweep is training it; skipped")
                    continue
                if run_done(run):  # another sweep finished it after this one started
                    add_positions(run)
                    continue
                resume, message = prepare_unfinished(run, run_dir, study.out_dir)
                if message:
                    display.say(message)
                start = time.perf_counter()

                def on_epoch(
                    record: dict[str, Any],
                    name: str = run.name,
                    t0: float = start,
                    epochs: int = run.config.train.epochs,
                    remaining: int = remaining,
                ) -> None:
                    valid = record.get("valid", {}).get("ndcg@10")
                    txt = f"{name} epoch {record['epoch']}/{epochs}"
                    if valid is not None:
                        txt += f" ndcg@10 {valid:.4f}"
                    tell(txt)
                    drain()
                    display.update(txt, eta(remaining, time.perf_counter() - t0))

                tell(f"{run.name} starting")
                display.update(f"{run.name} starting", eta(remaining))
                try:
                    result = train(
                        run.config,
                        quiet=True,
                        on_epoch=on_epoch,
                        resume_dir=run_dir if resume else None,
                    )
                except SeqrecError as exc:
                    failures.append(f"{run.name}: {exc}")
                    display.say(f"FAILED {run.name}: {exc}")
                    display.update(run.name + " failed", None, completed=finished_count())
                    continue
                add_positions(run)
            seconds = time.perf_counter() - start
            if not resume:  # a resumed run's time is only its remainder: not a fair estimate
                session.append(seconds)
            test = result.results.get("test", {})
            done = finished_count()
            left = eta(total - done)
            display.say(
                f"[{done}/{total}] {run.name}: test ndcg@10 {test.get('ndcg@10', float('nan')):.4f} "
                f"in {fmt_seconds(seconds)}{' (resumed)' if resume else ''}; "
                f"ETA {fmt_seconds(left)}"
            )
            drain()
            display.update("", left, completed=done)
        tell("done")
        if workers:
            display.update(f"waiting for {len(workers)} other job(s) to finish their runs")
            failures += _join_workers(workers, display, finished_count, drain)
            drain()  # the last lines the workers sent before they ended
    finally:
        for proc in workers:  # interrupted or failed: stop the other jobs (their runs resume)
            if proc.is_alive():
                proc.terminate()
                proc.join(30)
        display.close()
    if failures:
        raise SeqrecError(
            f"{len(failures)} of {counted(total, 'run')} failed (rerun the sweep to retry them): "
            + " | ".join(failures)
        )
    by_name = {r.name: r for r in planned}
    left_to_others = [n for n in skipped if not run_done(by_name[n])]
    if _worker:
        return [study.out_dir / r.name for r in planned if run_done(r)]
    if left_to_others:
        display.say(
            f"study {study.name}: {len(left_to_others)} run(s) left to the other sweep(s) "
            f"working in {study.out_dir}: {', '.join(left_to_others)}"
        )
    else:
        finished = "its run" if total == 1 else f"all {total} runs"
        display.say(f"study {study.name}: {finished} finished in {study.out_dir}")
    return [study.out_dir / r.name for r in planned if run_done(r)]


@dataclass(frozen=True)
class WorkerRole:
    """What a process started by ``--jobs`` is: its name (``"job 2"``), how many processes share
    the cores, and the queue on which it sends ``(name, "status" | "say", text)`` to the first
    process, which shows the status under its bar and prints the lines above it."""

    name: str
    shared_by: int
    statuses: Any  # a multiprocessing Queue (anything with put_nowait in tests)


def _worker_main(
    study_path: str,
    out_dir: str,
    data_dir: str | None,
    only: list[str],
    name: str,
    jobs: int,
    statuses: Any,
) -> None:
    """Body of one --jobs worker process: a sweep of the same runs, taking whichever is free."""
    try:
        run_sweep(
            study_path,
            out_dir=out_dir,
            data_dir=data_dir,
            only=only,
            _worker=WorkerRole(name, jobs, statuses),
        )
    except SeqrecError as exc:
        with contextlib.suppress(queue.Full, OSError, ValueError):
            statuses.put_nowait((name, "say", str(exc)))
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


def _start_workers(
    study_path: str | Path,
    out_dir: Path,
    data_dir: str | Path | None,
    only: list[str] | tuple[str, ...],
    jobs: int,
) -> tuple[list[Any], Any]:
    """Start ``jobs - 1`` worker processes (spawned: a clean interpreter each, no forked torch
    thread pools). Each walks the same runs and trains those whose lock it gets, and puts
    ``(its name, what it is doing)`` on the returned queue."""
    ctx = multiprocessing.get_context("spawn")
    statuses = ctx.Queue()
    procs = []
    for k in range(1, jobs):
        proc = ctx.Process(
            target=_worker_main,
            args=(
                str(study_path),
                str(out_dir),
                None if data_dir is None else str(data_dir),
                list(only),
                f"job {k + 1}",
                jobs,
                statuses,
            ),
            name=f"seqrec-sweep-job-{k + 1}",
        )
        proc.start()
        procs.append(proc)
    return procs, statuses


def _join_workers(
    procs: list[Any],
    display: _Display,
    finished_count: Callable[[], int],
    drain: Callable[[], None],
) -> list[str]:
    """Wait for the workers, printing what they send and keeping the bar's count current;
    their failures as messages."""
    failures = []
    while any(p.is_alive() for p in procs):
        drain()  # read before joining: a worker ends only once its messages are taken
        for p in procs:
            p.join(1.0)
        display.update(
            f"waiting for {sum(p.is_alive() for p in procs)} other job(s)",
            completed=finished_count(),
        )
    for p in procs:
        if p.exitcode:
            failures.append(f"{p.name} exited with code {p.exitcode} (its errors are above)")
    return failures
