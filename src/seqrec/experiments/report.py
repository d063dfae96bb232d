"""Collect run folders into tables and write a significance-tested report with plots.

Every folder under ``RUNS_DIR`` (at any depth, hidden folders skipped) that holds
``results.json`` is one run. Its labels come from the ``sweep.json`` next to it (written by
:func:`seqrec.experiments.sweep.run_sweep`); runs made by hand with ``seqrec train`` get labels
from their ``config.toml``: dataset = the dataset's name, method = ``model-loss-positions`` plus
every setting that differs between runs (``lr0.003``) and that the run's loss reads (``nce_c``
names NCE runs, never CE ones: ``SequenceLoss.config_settings``), seed = ``train.seed``.

Statistics, per dataset and method, over seeds (test metrics at the best validation epoch):

* mean and sample standard deviation ``s = sqrt(sum (x_i - mean)^2 / (n - 1))`` (n = seeds);
* relative change against the baseline method: ``100 * (mean - mean_base) / mean_base`` %;
* a two-sided paired t-test over the seeds both methods have (``scipy.stats.ttest_rel``):
  ``t = mean(d) / (sd(d) / sqrt(n))`` with ``d_i = x_i - base_i``, ``n - 1`` degrees of freedom.
  With fewer than 2 common seeds, or identical differences (sd(d) = 0), no test is possible and
  the report says why instead of printing a number.

The baseline is a loss name or a method label (``--baseline``, else the study's). When several
methods of a dataset match (say SASRec-bce and GRU4Rec-bce), each method is compared with the
matching one whose config agrees with it on the most settings (the same model, first of all);
the table names which one it was.

With a paper reference (``--reference``, else the study's ``reference``), every (dataset,
method) whose ``data.dataset``, ``model.name``, ``loss.name`` and ``loss.positions`` match a
published row (:mod:`seqrec.experiments.papers`) is shown beside it with the gap
``100 * (ours - paper) / paper`` %, flagged when larger than 5% either way.

Several ``RUNS_DIR`` can be given: their runs are pooled, and where two hold the same
(dataset, method, seed) the first given wins (the report notes the one skipped).

Outputs (in ``out_dir``, default ``RUNS_DIR/report``): ``runs.csv`` and ``runs.parquet`` (one
row per run), ``summary.csv`` (one row per dataset and method), ``report.md``, ``report.tex``,
``plots/*.png|svg`` (see :mod:`seqrec.experiments.plots`), and ``runs/``: the record of every
run in the report (its config, per-epoch log, results, environment and per-position metrics;
no weights, a few kB each) with the sweep's manifest, so that the report can be redrawn, and
pooled with later runs, from the report folder alone: ``seqrec report OUT/runs NEW_RUNS
--out-dir OUT``. Run records inside a report folder are not read as runs when a folder above
it is given as ``RUNS_DIR``.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import time
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from seqrec import runs
from seqrec.config import RunConfig
from seqrec.errors import SeqrecError
from seqrec.experiments.papers import (
    GAP_FLAG_PCT,
    SOURCES,
    PaperRow,
    gap_pct,
    paper_rows,
    settings_diff,
)
from seqrec.experiments.positions import PositionMetrics, load_positions
from seqrec.experiments.study import clean_label
from seqrec.io import atomic_write, atomic_write_text
from seqrec.losses import loss_settings
from seqrec.text import counted

REPORT_METRICS = ("hr@5", "hr@10", "hr@20", "ndcg@5", "ndcg@10", "ndcg@20", "mrr")
ALPHA = 0.05  # significance level marked with a dagger
RECORDS = "runs"  # in a report folder: the records of the runs it was made from
RECORD_FILES = (runs.CONFIG, runs.RESULTS, runs.METRICS, runs.ENVIRONMENT, runs.POSITIONS)
REPORT_MD = "report.md"
# settings that never define a method (they do not change what is computed)
IGNORED_SETTINGS = {"train.seed", "train.threads", "eval.batch_size", "data.data_dir"}


@dataclass(frozen=True)
class RunRecord:
    """One finished run: labels, resolved config, results.json and per-epoch log."""

    run_dir: Path
    name: str
    dataset: str
    method: str
    model: str
    loss: str
    positions: str
    seed: int
    config: RunConfig
    results: Mapping[str, Any]
    epochs: Sequence[Mapping[str, Any]]
    position_metrics: PositionMetrics | None = None  # positions.json (.positions), if any

    @property
    def paper_key(self) -> tuple[str, str, str, str]:
        """(dataset, model, loss, positions) as :mod:`seqrec.experiments.papers` keys them."""
        return paper_key(self.config)


@dataclass(frozen=True)
class TTest:
    """A paired t-test over seeds: n pairs, statistic and p-value, or the reason there is none."""

    n: int
    statistic: float | None = None
    pvalue: float | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Summary:
    """One (dataset, method): metrics over seeds and the comparison with the baseline."""

    dataset: str
    method: str
    model: str
    loss: str
    positions: str
    seeds: tuple[int, ...]
    mean: Mapping[str, float]
    std: Mapping[str, float]  # nan with one seed
    best_epoch: float
    train_seconds: float
    baseline: str | None = None  # method compared with; None for the baseline itself / none
    is_baseline: bool = False
    rel: Mapping[str, float] = field(default_factory=dict)  # % change of the mean
    tests: Mapping[str, TTest] = field(default_factory=dict)
    paper_key: tuple[str, str, str, str] | None = None  # (dataset, model, loss, positions)


# ------------------------------------------------------------------------------------ collect


def _flat(cfg: RunConfig) -> dict[str, Any]:
    raw = cfg.to_dict()
    out = {}
    for section, values in raw.items():
        if isinstance(values, dict):
            out.update({f"{section}.{k}": v for k, v in values.items()})
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list | tuple):
        return "+".join(_fmt(x) for x in v)
    return str(v)


def paper_key(cfg: RunConfig) -> tuple[str, str, str, str]:
    """(dataset, model, loss, positions) of a run config: the dataset is ``data.dataset`` (a
    file path's stem, lower-cased), the rest the model name, loss name and loss positions."""
    ds = cfg.data.dataset
    if "/" in ds or os.sep in ds:
        ds = Path(ds).stem.lower()
    return (ds, cfg.model.name, cfg.loss.name, cfg.loss.positions)


def _derived_labels(configs: Sequence[RunConfig]) -> list[tuple[str, str]]:
    """(dataset, method) labels for runs without a sweep manifest (see the module docstring)."""
    flats = [_flat(c) for c in configs]
    keys = sorted({k for f in flats for k in f} - IGNORED_SETTINGS)
    varying = [k for k in keys if len({repr(f.get(k)) for f in flats}) > 1]
    named = {"data.dataset", "model.name", "loss.name", "loss.positions"}
    out = []
    for cfg, f in zip(configs, flats, strict=True):
        ds = cfg.data.dataset
        ds = Path(ds).stem if ("/" in ds or os.sep in ds) else ds
        data_extra = [
            f"{k.split('.', 1)[1]}{_fmt(f[k])}"
            for k in varying
            if k.startswith("data.") and k not in named
        ]
        reads = loss_settings(cfg.loss.name)
        other = [
            f"{k.split('.', 1)[1]}{_fmt(f[k])}"
            for k in varying
            if not k.startswith("data.")
            and k not in named
            and (not k.startswith("loss.") or k.split(".", 1)[1] in reads)
        ]
        dataset = clean_label("-".join([ds, *data_extra]))
        method = clean_label("-".join([cfg.model.name, cfg.loss.name, cfg.loss.positions, *other]))
        out.append((dataset, method))
    return out


def _manifest_entries(folder: Path, cache: dict[Path, dict[str, Any]]) -> dict[str, Any]:
    if folder not in cache:
        path = folder / runs.MANIFEST
        entries: dict[str, Any] = {}
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                entries = {r["name"]: r for r in data.get("runs", [])}
                entries["__baseline__"] = data.get("baseline")
                entries["__study__"] = data.get("study")
                entries["__reference__"] = data.get("reference")
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
                entries = {}
        cache[folder] = entries
    return cache[folder]


def _folders_holding(root: Path, filename: str) -> list[Path]:
    """Folders under ``root`` (any depth) that hold ``filename``, sorted. Skipped: hidden ones
    (a sweep's .incomplete), a run's ``extensions/`` (what it had before it was trained
    further) and the run records of a report folder below ``root`` (copies of runs)."""

    def kept_by_a_run(parts: tuple[str, ...]) -> bool:
        return any(
            part == runs.EXTENSIONS and (root.joinpath(*parts[:i]) / runs.CONFIG).is_file()
            for i, part in enumerate(parts)
        )

    def kept_by_a_report(parts: tuple[str, ...]) -> bool:
        return any(
            part == RECORDS and (root.joinpath(*parts[:i]) / REPORT_MD).is_file()
            for i, part in enumerate(parts)
            if i > 0  # root itself may be a report folder: then its records are the runs
        )

    out = []
    for path in sorted(root.rglob(filename)):
        parts = path.parent.relative_to(root).parts
        if (
            not any(p.startswith(".") for p in parts)
            and not kept_by_a_run(parts)
            and not kept_by_a_report(parts)
        ):
            out.append(path.parent)
    return out


def _as_dirs(runs_dirs: str | Path | Sequence[str | Path]) -> list[Path]:
    """One folder or several, as a list of paths."""
    if isinstance(runs_dirs, str | Path):
        return [Path(runs_dirs)]
    return [Path(d) for d in runs_dirs]


def find_run_dirs(runs_dir: str | Path) -> list[Path]:
    """Folders under ``runs_dir`` (any depth, hidden ones skipped) that hold results.json."""
    root = Path(runs_dir)
    if not root.is_dir():
        raise SeqrecError(f"runs folder {root} does not exist; give the out_dir of a sweep")
    return _folders_holding(root, runs.RESULTS)


def coverage_notes(
    runs_dir: str | Path | Sequence[str | Path], records: Sequence[RunRecord]
) -> list[str]:
    """What the sweeps under ``runs_dir`` (one folder or several) planned (their
    ``sweep.json``) and the report lacks: one note naming the cells (dataset, method) with fewer
    finished seeds than planned, and one per dataset listing the cells with none. Empty
    without a manifest or when all is there."""
    finished = {r.run_dir for r in records}
    planned: dict[tuple[str, str], set[int]] = {}
    done: dict[tuple[str, str], set[int]] = {}
    for root in _as_dirs(runs_dir):
        for folder in _folders_holding(root, runs.MANIFEST):
            entries = _manifest_entries(folder, {})
            for name, e in entries.items():
                if name.startswith("__"):
                    continue
                try:
                    key, seed = (str(e["dataset"]), str(e["method"])), int(e["seed"])
                except (KeyError, TypeError, ValueError):
                    continue
                planned.setdefault(key, set()).add(seed)
                if folder / name in finished:
                    done.setdefault(key, set()).add(seed)
    fewer = [
        f"{ds} {method}: {len(done[(ds, method)])} of {len(seeds)} "
        f"(seed {', '.join(map(str, sorted(done[(ds, method)])))})"
        for (ds, method), seeds in planned.items()
        if 0 < len(done.get((ds, method), [])) < len(seeds)
    ]
    notes = []
    if fewer:
        notes.append(
            f"{len(fewer)} cell(s) have fewer seeds than the study plans: " + "; ".join(fewer)
        )
    missing: dict[str, list[str]] = {}
    for ds, method in planned:
        if not done.get((ds, method)):
            missing.setdefault(ds, []).append(method)
    for ds, methods in missing.items():
        notes.append(f"not run yet on {ds}: {', '.join(methods)}")
    return notes


def unfinished_run_dirs(runs_dir: str | Path) -> list[tuple[Path, int]]:
    """(folder, last epoch logged) of every run under ``runs_dir`` that has started (it has a
    metrics.jsonl) but not finished (no results.json): running, killed or waiting to resume."""
    return [
        (folder, runs.last_epoch(folder))
        for folder in _folders_holding(Path(runs_dir), runs.METRICS)
        if not (folder / runs.RESULTS).exists()
    ]


def collect_runs(
    runs_dir: str | Path | Sequence[str | Path],
) -> tuple[list[RunRecord], list[str], dict[str, Any]]:
    """All finished runs under ``runs_dir`` (one folder or several; where two runs have the
    same dataset, method and seed, the one in the folder given first is kept).

    Returns (records, notes, study info): notes say which folders were skipped and why, and
    which runs have not finished (left out); study info holds the study name, baseline and
    paper reference from a ``sweep.json`` if there is one.
    """
    notes: list[str] = []
    cache: dict[Path, dict[str, Any]] = {}
    loaded: list[tuple[Path, RunConfig, dict[str, Any], dict[str, Any] | None]] = []
    info: dict[str, Any] = {}
    roots = _as_dirs(runs_dir)
    for run_dir, epochs in (u for root in roots for u in unfinished_run_dirs(root)):
        notes.append(
            f"not finished, left out: {run_dir.name} (epoch {epochs} logged, no results.json "
            "yet); rerun the sweep to finish it"
        )
    for run_dir in (d for root in roots for d in find_run_dirs(root)):
        try:
            cfg = runs.load_run_config(run_dir)
            results = json.loads((run_dir / runs.RESULTS).read_text(encoding="utf-8"))
            if not isinstance(results.get("test"), dict):
                raise SeqrecError("results.json has no 'test' metrics")
        except (SeqrecError, json.JSONDecodeError, OSError) as exc:
            notes.append(f"skipped {run_dir}: {exc}")
            continue
        entries = _manifest_entries(run_dir.parent, cache)
        if entries.get("__study__") and not info:
            info = {
                "study": entries["__study__"],
                "baseline": entries.get("__baseline__"),
                "reference": entries.get("__reference__"),
            }
        loaded.append((run_dir, cfg, results, entries.get(run_dir.name)))
    # a sweep's runs in its planned order (datasets and methods appear as the study lists them)
    order = {
        (folder, name): i
        for folder, entries in cache.items()
        for i, name in enumerate(n for n in entries if not n.startswith("__"))
    }
    loaded.sort(key=lambda item: order.get((item[0].parent, item[0].name), len(order)))
    derived_idx = [i for i, item in enumerate(loaded) if item[3] is None]
    derived = dict(
        zip(derived_idx, _derived_labels([loaded[i][1] for i in derived_idx]), strict=True)
    )
    records = []
    for i, (run_dir, cfg, results, entry) in enumerate(loaded):
        if entry is not None:
            dataset, method = entry["dataset"], entry["method"]
            model, loss, positions, seed = (
                entry["model"],
                entry["loss"],
                entry["positions"],
                int(entry["seed"]),
            )
        else:
            dataset, method = derived[i]
            model, loss, positions = cfg.model.name, cfg.loss.name, cfg.loss.positions
            seed = cfg.train.seed
        records.append(
            RunRecord(
                run_dir=run_dir,
                name=run_dir.name,
                dataset=dataset,
                method=method,
                model=model,
                loss=loss,
                positions=positions,
                seed=seed,
                config=cfg,
                results=results,
                epochs=runs.read_metrics(run_dir),
                position_metrics=load_positions(run_dir),
            )
        )
    seen: dict[tuple[str, str, int], RunRecord] = {}
    unique = []
    for r in records:
        key = (r.dataset, r.method, r.seed)
        if key in seen:
            kept = seen[key]
            if (kept.name, kept.results) != (r.name, r.results):  # not a copy of the same run
                notes.append(
                    f"skipped {r.run_dir}: same dataset, method and seed as {kept.run_dir} "
                    f"({r.dataset}, {r.method}, seed {r.seed})"
                )
            continue
        seen[key] = r
        unique.append(r)
    return unique, notes, info


def _manifest_of(records: Sequence[RunRecord]) -> dict[str, Any] | None:
    """The sweep manifests next to ``records``, pooled: the first one's study, baseline and
    reference, and every planned run of all of them (by name, first wins). None without one."""
    merged: dict[str, Any] | None = None
    planned: dict[str, Any] = {}
    for folder in dict.fromkeys(r.run_dir.parent for r in records):
        path = folder / runs.MANIFEST
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            entries = list(data.get("runs", []))
        except (json.JSONDecodeError, OSError, AttributeError, TypeError):
            continue
        if merged is None:
            merged = {k: v for k, v in data.items() if k != "runs"}
        for e in entries:
            if isinstance(e, dict) and "name" in e:
                planned.setdefault(str(e["name"]), e)
    if merged is not None:
        merged["runs"] = list(planned.values())
    return merged


def keep_records(records: Sequence[RunRecord], dest: str | Path) -> Path:
    """Copy the record of every run in ``records`` (:data:`RECORD_FILES`: config, per-epoch
    log, results, environment, per-position metrics; never weights) into ``dest/<run name>/``,
    with the pooled sweep manifest, so the report can be redrawn from ``dest`` alone.

    ``dest`` is replaced as a whole, and only once the new copy is complete; records may be
    read from ``dest`` itself (a report redrawn from its own records plus new runs).
    """
    dest = Path(dest)
    fresh = dest.parent / f".{dest.name}.new"
    old = dest.parent / f".{dest.name}.old"
    for leftover in (fresh, old):
        if leftover.exists():
            shutil.rmtree(leftover)
    fresh.mkdir(parents=True)
    used: set[str] = set()
    renamed: dict[str, str] = {}
    for r in records:
        name, k = r.name, 2
        while name in used:  # same folder name from two places: keep both
            name, k = f"{r.name}-{k}", k + 1
        used.add(name)
        renamed[r.name] = name
        (fresh / name).mkdir()
        for filename in RECORD_FILES:
            if (r.run_dir / filename).is_file():
                shutil.copy2(r.run_dir / filename, fresh / name / filename)
    manifest = _manifest_of(records)
    if manifest is not None:
        atomic_write_text(fresh / runs.MANIFEST, json.dumps(manifest, indent=1) + "\n")
    if dest.exists():
        dest.rename(old)
    fresh.rename(dest)
    if old.exists():
        shutil.rmtree(old)
    return dest


def git_ignore_rule(path: str | Path) -> str | None:
    """The rule ("FILE:LINE:PATTERN") by which git ignores ``path`` (a file, or a folder of run
    records, probed by one run's results file), or None: not ignored, already tracked, not in a
    git work tree, or no git. A report's records are for committing next to it; a repository
    that ignores every ``runs/`` folder (a common pattern for training output) would silently
    leave them out, and the report could not be redrawn anywhere else."""
    path = Path(path)
    if path.is_dir():
        folder, probe = path, next(path.glob(f"*/{runs.RESULTS}"), path)
    else:
        folder, probe = path.parent, path
    found = runs.git(folder, "check-ignore", "-v", str(probe.resolve()))
    if found is None or found.returncode != 0:  # 1: not ignored (or tracked); 128: no work tree
        return None
    return found.stdout.split("\t")[0].strip() or "a .gitignore rule"


# ------------------------------------------------------------------------------------ statistics


def paired_ttest(x: Sequence[float], base: Sequence[float]) -> TTest:
    """Two-sided paired t-test of ``x`` against ``base`` (same order = same seed).

    No test (``pvalue`` None, ``reason`` set) with fewer than 2 pairs or when every difference
    is the same (zero variance: the statistic is undefined or infinite).
    """
    from scipy import stats

    a, b = np.asarray(x, dtype=float), np.asarray(base, dtype=float)
    n = len(a)
    if n != len(b):
        raise SeqrecError(f"paired t-test needs equal lengths, got {n} and {len(b)}")
    if n < 2:
        return TTest(n=n, reason=f"n={n}: a paired test needs at least 2 common seeds")
    d = a - b
    if np.allclose(d, d[0], rtol=0.0, atol=1e-15):
        return TTest(n=n, reason=f"n={n}: identical differences over seeds, no variance")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.ttest_rel(a, b)
    return TTest(n=n, statistic=float(res.statistic), pvalue=float(res.pvalue))


def _metrics_of(records: Sequence[RunRecord]) -> list[str]:
    have = set.intersection(*(set(r.results["test"]) for r in records)) if records else set()
    return [m for m in REPORT_METRICS if m in have]


def _similarity(a: RunConfig, b: RunConfig) -> int:
    fa, fb = _flat(a), _flat(b)
    skip = IGNORED_SETTINGS | {k for k in fa if k.startswith(("loss.", "data."))}
    score = sum(1 for k in fa if k not in skip and fa[k] == fb.get(k))
    return score + 1000 * (a.model.name == b.model.name)


def summarize(
    records: Sequence[RunRecord], baseline: str | None = None
) -> tuple[list[Summary], list[str], list[str]]:
    """Aggregate over seeds and compare with the baseline.

    Returns (summaries in dataset order then baseline first, metrics used, notes).
    """
    metrics = _metrics_of(records)
    notes: list[str] = []
    groups: dict[tuple[str, str], list[RunRecord]] = {}
    for r in records:
        groups.setdefault((r.dataset, r.method), []).append(r)
    out: list[Summary] = []
    datasets = list(dict.fromkeys(r.dataset for r in records))
    for ds in datasets:
        methods = [m for (d, m) in groups if d == ds]
        matches = [
            m for m in methods if baseline is not None and baseline in (m, groups[(ds, m)][0].loss)
        ]
        if baseline is not None and not matches:
            notes.append(f"dataset {ds}: no method matches the baseline '{baseline}'")
        for m in sorted(methods, key=lambda m: (m not in matches, methods.index(m))):
            runs_ = sorted(groups[(ds, m)], key=lambda r: r.seed)
            first = runs_[0]
            vals = {k: np.array([r.results["test"][k] for r in runs_], float) for k in metrics}
            mean = {k: float(v.mean()) for k, v in vals.items()}
            std = {k: float(v.std(ddof=1)) if len(v) > 1 else math.nan for k, v in vals.items()}
            summary = Summary(
                dataset=ds,
                method=m,
                model=first.model,
                loss=first.loss,
                positions=first.positions,
                seeds=tuple(r.seed for r in runs_),
                mean=mean,
                std=std,
                best_epoch=float(np.mean([r.results.get("best_epoch", math.nan) for r in runs_])),
                paper_key=first.paper_key,
                train_seconds=float(
                    np.mean([r.results.get("train_seconds", math.nan) for r in runs_])
                ),
                is_baseline=m in matches,
            )
            if matches and m not in matches:
                base_m = max(
                    matches, key=lambda b: _similarity(first.config, groups[(ds, b)][0].config)
                )
                summary = _compare(summary, runs_, groups[(ds, base_m)], base_m, metrics)
            out.append(summary)
    return out, metrics, notes


def _compare(
    summary: Summary,
    runs_: Sequence[RunRecord],
    base_runs: Sequence[RunRecord],
    base_method: str,
    metrics: Sequence[str],
) -> Summary:
    by_seed = {r.seed: r for r in base_runs}
    common = [r for r in runs_ if r.seed in by_seed]
    base_mean = {k: float(np.mean([r.results["test"][k] for r in base_runs])) for k in metrics}
    rel = {
        k: (100.0 * (summary.mean[k] - base_mean[k]) / base_mean[k]) if base_mean[k] else math.nan
        for k in metrics
    }
    tests = {
        k: paired_ttest(
            [r.results["test"][k] for r in common],
            [by_seed[r.seed].results["test"][k] for r in common],
        )
        for k in metrics
    }
    return Summary(
        **{**asdict_shallow(summary), "baseline": base_method, "rel": rel, "tests": tests}
    )


def asdict_shallow(obj: Any) -> dict[str, Any]:
    """A dataclass's fields as a dict without recursing (keeps nested dataclasses as they are)."""
    return {f: getattr(obj, f) for f in obj.__dataclass_fields__}


def best_methods(summaries: Sequence[Summary], metric: str) -> set[str]:
    """Methods of one dataset with the highest mean of ``metric`` (all, if tied)."""
    vals = [s.mean[metric] for s in summaries if math.isfinite(s.mean.get(metric, math.nan))]
    if not vals:
        return set()
    top = max(vals)
    return {
        s.method for s in summaries if math.isclose(s.mean[metric], top, rel_tol=0, abs_tol=1e-12)
    }


# ------------------------------------------------------------------------------------ papers


@dataclass(frozen=True)
class PaperComparison:
    """One (dataset, method) of the study beside the published row with the same dataset,
    model, loss and positions: our mean over seeds, the paper's value, the relative gap
    ``100 * (ours - paper) / paper`` % per metric both have."""

    dataset: str
    method: str
    row: PaperRow
    ours: Mapping[str, float]
    paper: Mapping[str, float]
    gap: Mapping[str, float]

    def flagged(self, metric: str) -> bool:
        """True if the gap on ``metric`` exceeds :data:`GAP_FLAG_PCT` percent either way."""
        g = self.gap.get(metric, math.nan)
        return math.isfinite(g) and abs(g) > GAP_FLAG_PCT


def compare_with_paper(
    summaries: Sequence[Summary], reference: str
) -> tuple[list[PaperComparison], list[str]]:
    """Match every summary with the paper row of the same (dataset, model, loss, positions).

    Returns (comparisons in summary order, notes naming the methods the paper has no number for).
    """
    rows = paper_rows(reference)
    out: list[PaperComparison] = []
    missing: list[str] = []
    for s in summaries:
        row = rows.get(s.paper_key) if s.paper_key is not None else None
        if row is None:
            missing.append(f"{s.dataset}/{s.method}")
            continue
        metrics = [k for k in REPORT_METRICS if k in row.metrics and k in s.mean]
        out.append(
            PaperComparison(
                dataset=s.dataset,
                method=s.method,
                row=row,
                ours={k: s.mean[k] for k in metrics},
                paper={k: row.metrics[k] for k in metrics},
                gap={k: gap_pct(s.mean[k], row.metrics[k]) for k in metrics},
            )
        )
    notes = []
    if missing:
        notes.append(
            f"{SOURCES.get(reference, reference)} has no number for: {', '.join(missing)} "
            "(matched on data.dataset, model.name, loss.name, loss.positions)"
        )
    return out, notes


def settings_notes(records: Sequence[RunRecord], reference: str) -> list[str]:
    """A note per (dataset, method) whose runs train otherwise than the authors' logged runs
    of the same cell (:func:`seqrec.experiments.papers.settings_diff`): a gap to the paper then
    may be the settings, not the method."""
    rows = paper_rows(reference)
    notes: dict[tuple[str, str], str] = {}
    for r in records:
        row = rows.get(r.paper_key)
        if row is None or (r.dataset, r.method) in notes:
            continue
        diff = settings_diff(row, r.config)
        if diff:
            notes[(r.dataset, r.method)] = (
                f"{r.dataset}/{r.method} trains otherwise than the authors' logged runs: "
                + "; ".join(diff)
            )
    return list(notes.values())


# ------------------------------------------------------------------------------------ tables


def runs_rows(records: Sequence[RunRecord]) -> list[dict[str, Any]]:
    """One flat row per run: labels, timings, test_* and valid_* metrics, run folder."""
    metric_keys: list[str] = []
    for r in records:
        metric_keys += [k for k in r.results["test"] if k not in metric_keys]
    rows = []
    for r in records:
        row: dict[str, Any] = {
            "dataset": r.dataset,
            "method": r.method,
            "model": r.model,
            "loss": r.loss,
            "positions": r.positions,
            "seed": r.seed,
            "best_epoch": r.results.get("best_epoch"),
            "epochs_run": r.results.get("epochs_run"),
            "train_seconds": r.results.get("train_seconds"),
            "wall_seconds": r.results.get("wall_seconds"),
        }
        for split in ("test", "valid"):
            got = r.results.get(split, {})
            for k in metric_keys:
                v = got.get(k)
                row[f"{split}_{k}"] = None if v is None else float(v)
        se = r.results.get("test_se", {})  # runs trained before it was recorded have none
        for k in metric_keys:
            v = se.get(k)
            row[f"test_se_{k}"] = None if v is None else float(v)
        row["name"] = r.name
        row["run_dir"] = str(r.run_dir)
        rows.append(row)
    return rows


def summary_rows(
    summaries: Sequence[Summary],
    metrics: Sequence[str],
    comparisons: Sequence[PaperComparison] = (),
) -> list[dict[str, Any]]:
    """One row per (dataset, method): mean, std, relative change, p-value and pairs per metric;
    with ``comparisons``, also the paper's value and the gap to it (empty where it has none)."""
    by_key = {(c.dataset, c.method): c for c in comparisons}
    rows = []
    for s in summaries:
        row: dict[str, Any] = {
            "dataset": s.dataset,
            "method": s.method,
            "model": s.model,
            "loss": s.loss,
            "positions": s.positions,
            "n_seeds": len(s.seeds),
            "seeds": " ".join(map(str, s.seeds)),
            "baseline": s.method if s.is_baseline else s.baseline,
            "best_epoch_mean": s.best_epoch,
            "train_seconds_mean": s.train_seconds,
        }
        for k in metrics:
            row[f"{k}_mean"] = s.mean[k]
            row[f"{k}_std"] = s.std[k]
            row[f"{k}_rel_pct"] = s.rel.get(k)
            t = s.tests.get(k)
            row[f"{k}_p"] = None if t is None else t.pvalue
            row[f"{k}_n_pairs"] = None if t is None else t.n
        if comparisons:
            c = by_key.get((s.dataset, s.method))
            row["paper"] = None if c is None else c.row.source
            for k in metrics:
                row[f"{k}_paper"] = None if c is None else c.paper.get(k)
                row[f"{k}_paper_gap_pct"] = None if c is None else c.gap.get(k)
        rows.append(row)
    return rows


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    def _write(tmp: str) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            if not rows:
                return
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            for row in rows:
                writer.writerow(
                    {
                        k: "" if (v is None or (isinstance(v, float) and math.isnan(v))) else v
                        for k, v in row.items()
                    }
                )

    atomic_write(path, _write)


def write_parquet(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist([dict(r) for r in rows])
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))


# ------------------------------------------------------------------------------------ rendering


def _name(metric: str) -> str:
    return metric.replace("hr", "HR").replace("ndcg", "NDCG").replace("mrr", "MRR")


def _p_text(t: TTest | None) -> str:
    if t is None:
        return ""
    if t.pvalue is None:
        return "p n/a"
    return f"p={t.pvalue:.3f}" if t.pvalue >= 0.001 else f"p={t.pvalue:.1e}"


def _significant(s: Summary, metric: str) -> bool:
    t = s.tests.get(metric)
    return t is not None and t.pvalue is not None and t.pvalue < ALPHA


def _cell(s: Summary, metric: str) -> str:
    m, sd = s.mean[metric], s.std[metric]
    return f"{m:.4f}" if math.isnan(sd) else f"{m:.4f} ± {sd:.4f}"


HISTORY_TEXT = {
    "mask": "masked (`mask`: removed, never the target)",
    "keep": "kept (`keep`)",
    "zero": "scored 0, a repeat target included (`zero`, S3-Rec's code)",
}


HISTORY_LATEX = {
    "mask": "user's history masked",
    "keep": "user's history kept",
    "zero": "user's history scored 0 (S3-Rec's code)",
}


def history_protocols(
    records: Sequence[RunRecord], texts: Mapping[str, str] = HISTORY_TEXT, mixed: str = "**mixed**"
) -> dict[str, str]:
    """Per dataset, how its runs ranked the user's own history (``eval.history``), as
    ``texts`` words it; a dataset whose runs differ says ``mixed`` and lists each protocol with
    its runs' count."""
    by_dataset: dict[str, Counter[str]] = {}
    for r in records:
        by_dataset.setdefault(r.dataset, Counter())[r.config.eval.history] += 1
    out = {}
    for ds, counts in by_dataset.items():
        if len(counts) == 1:
            out[ds] = texts[next(iter(counts))]
        else:
            out[ds] = f"{mixed}: " + ", ".join(
                f"{texts[k]} in {n} runs" for k, n in sorted(counts.items())
            )
    return out


def render_markdown(
    summaries: Sequence[Summary],
    metrics: Sequence[str],
    *,
    title: str,
    baseline: str | None,
    n_runs: int,
    runs_dir: str,
    plots: Mapping[str, Path],
    out_dir: Path,
    notes: Sequence[str],
    comparisons: Sequence[PaperComparison] = (),
    reference: str | None = None,
    explanation: str | None = None,
    protocols: Mapping[str, str] | None = None,
    records_dir: str | None = None,
) -> str:
    """The Markdown report: per dataset the evaluation protocol (``protocols``, from
    :func:`history_protocols`), the results table, the comparison with the baseline, and (with
    ``comparisons``) our numbers beside the paper's; then the authors' explanation of the gaps
    and findings (``explanation``, Markdown, as given), the plots and notes."""
    lines = [
        f"# {title}",
        "",
        f"{counted(n_runs, 'run')} from {runs_dir}, "
        f"generated {time.strftime('%Y-%m-%d %H:%M')}. "
        "Test metrics (full ranking over the whole catalogue) at the epoch with the best "
        "validation NDCG@10; **mean ± sample std over seeds**; **bold** = best mean in the "
        "column for that dataset"
        + (
            f"; † = p < {ALPHA} in a two-sided paired t-test over seeds against the baseline "
            f"`{baseline}` (scipy.stats.ttest_rel, pairs matched by seed)."
            if baseline
            else ". No baseline chosen (pass --baseline LOSS) so no significance tests."
        ),
        "",
    ]
    if records_dir:
        lines += [
            f"Each run's record (config, per-epoch log, results, environment; no weights) is "
            f"in `{records_dir}/`: `seqrec report {records_dir} [NEW_RUNS_DIR ...] --out-dir .` "
            "redraws this report from it, pooled with newer runs.",
            "",
        ]
    for ds in dict.fromkeys(s.dataset for s in summaries):
        rows = [s for s in summaries if s.dataset == ds]
        best = {k: best_methods(rows, k) for k in metrics}
        lines += [f"## {ds}", ""]
        if protocols and ds in protocols:
            lines += [f"User's history in the ranking: {protocols[ds]}.", ""]
        head = ["method", "seeds", *(_name(k) for k in metrics), "best epoch", "train s"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for s in rows:
            cells = [f"`{s.method}`" + (" (baseline)" if s.is_baseline else ""), str(len(s.seeds))]
            for k in metrics:
                c = _cell(s, k)
                c = f"**{c}**" if s.method in best[k] else c
                cells.append(c + (" †" if _significant(s, k) else ""))
            cells += [f"{s.best_epoch:g}", f"{s.train_seconds:.0f}"]  # 285, or 147.5 over two seeds
            lines.append("| " + " | ".join(cells) + " |")
        compared = [s for s in rows if s.baseline is not None]
        if compared:
            lines += [
                "",
                "Against the baseline: relative change of the mean and the paired t-test "
                "p-value over the n seeds both methods have.",
                "",
            ]
            head = ["method", "vs", "n", *(_name(k) for k in metrics)]
            lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            for s in compared:
                n = min((t.n for t in s.tests.values()), default=0)
                cells = [f"`{s.method}`", f"`{s.baseline}`", str(n)]
                for k in metrics:
                    rel = s.rel.get(k, math.nan)
                    rel_txt = "n/a" if math.isnan(rel) else f"{rel:+.1f}%"
                    cells.append(f"{rel_txt} ({_p_text(s.tests.get(k))})")
                lines.append("| " + " | ".join(cells) + " |")
            reasons = sorted(
                {t.reason for s in compared for t in s.tests.values() if t.reason is not None}
            )
            if reasons:
                lines += ["", "No test possible where 'p n/a': " + "; ".join(reasons) + "."]
        lines += _paper_markdown([c for c in comparisons if c.dataset == ds], reference)
        lines.append("")
    if explanation:
        lines += ["## Gaps and findings", "", explanation.strip(), ""]
    if plots:
        lines += ["## Plots", ""]
        for name, path in plots.items():
            if name.endswith(".png"):
                rel = os.path.relpath(path, out_dir)
                lines += [f"![{Path(name).stem}]({rel})", ""]
    if notes:
        lines += ["## Notes", "", *(f"- {n}" for n in notes), ""]
    return "\n".join(lines)


def _paper_markdown(comparisons: Sequence[PaperComparison], reference: str | None) -> list[str]:
    if not comparisons:
        return []
    metrics = [k for k in REPORT_METRICS if any(k in c.paper for c in comparisons)]
    source = SOURCES.get(reference or "", reference or comparisons[0].row.source)
    lines = [
        "",
        f"Beside the published numbers ({source}): ours (mean over seeds) / paper (gap); "
        f"⚠ = gap larger than {GAP_FLAG_PCT:g}%.",
        "",
    ]
    head = ["method", "paper row", *(_name(k) for k in metrics)]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in comparisons:
        cells = [f"`{c.method}`", f"{c.row.model} {c.row.loss} ({c.row.positions})"]
        for k in metrics:
            if k not in c.paper:
                cells.append("")
                continue
            flag = " ⚠" if c.flagged(k) else ""
            cells.append(f"{c.ours[k]:.4f} / {c.paper[k]:.4f} ({c.gap[k]:+.1f}%){flag}")
        lines.append("| " + " | ".join(cells) + " |")
    flagged = sum(c.flagged(k) for c in comparisons for k in c.gap)
    total = sum(len(c.gap) for c in comparisons)
    lines += [
        "",
        f"{flagged} of {total} numbers differ from the paper by more than {GAP_FLAG_PCT:g}%.",
    ]
    return lines + _authors_runs_markdown(comparisons)


def seed_spread(ours: float, theirs: Sequence[float]) -> str:
    """Where ``ours`` lies among the authors' per-seed values: "in their range" or how many of
    their seed standard deviations it is above or below their mean.

    >>> seed_spread(0.5, [0.4, 0.6])
    'in their range'
    >>> seed_spread(0.3, [0.4, 0.5, 0.6])
    '0.5 below their range; -2.0 sd'
    """
    lo, hi = min(theirs), max(theirs)
    if lo <= ours <= hi:
        return "in their range"
    sd = float(np.std(theirs, ddof=1)) if len(theirs) > 1 else 0.0
    side, edge = ("below", lo) if ours < lo else ("above", hi)
    dist = abs(ours - edge) / (hi - lo) if hi > lo else math.inf
    z = f"{(ours - float(np.mean(theirs))) / sd:+.1f} sd" if sd > 0 else "sd 0"
    return f"{dist:.1f} {side} their range; {z}"


def _authors_runs_markdown(comparisons: Sequence[PaperComparison]) -> list[str]:
    """Ours beside the authors' own seeds (their published logs), where the row has them."""
    with_runs = [c for c in comparisons if c.row.runs]
    metrics = [k for k in ("ndcg@10", "hr@10") if any(k in c.row.runs for c in with_runs)]
    if not with_runs or not metrics:
        return []
    n = max(len(v) for c in with_runs for v in c.row.runs.values())
    lines = [
        "",
        f"Beside the authors' own {n} runs per cell (read from the logs published with their "
        "code): ours (mean over seeds), their mean ± sd over seeds [min–max], and where ours "
        "lies (distance outside their range in units of that range; sd from their mean).",
        "",
        "| method | " + " | ".join(_name(k) for k in metrics) + " |",
        "|---|" + "---|" * len(metrics),
    ]
    for c in with_runs:
        cells = [f"`{c.method}`"]
        for k in metrics:
            theirs = c.row.runs.get(k)
            if not theirs or k not in c.ours:
                cells.append("")
                continue
            mean, sd = float(np.mean(theirs)), float(np.std(theirs, ddof=1))
            cells.append(
                f"{c.ours[k]:.4f} vs {mean:.4f} ± {sd:.4f} [{min(theirs):.4f}–{max(theirs):.4f}]"
                f": {seed_spread(c.ours[k], theirs)}"
            )
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def latex_escape(text: str) -> str:
    """Escape LaTeX special characters in a label."""
    repl = {
        "\\": r"\textbackslash{}",
        "&": r"\&",
        "%": r"\%",
        "$": r"\$",
        "#": r"\#",
        "_": r"\_",
        "{": r"\{",
        "}": r"\}",
        "~": r"\textasciitilde{}",
        "^": r"\textasciicircum{}",
    }
    return "".join(repl.get(c, c) for c in text)


def _latex_table_head(
    caption: str, label_spec: str, labels: list[str], metrics: Sequence[str]
) -> list[str]:
    """Opening lines of a booktabs table: caption, label columns, one centred column per metric."""
    return [
        "\\begin{table}[t]",
        "\\centering",
        f"\\caption{{{caption}}}",
        "\\begin{tabular}{" + label_spec + "c" * len(metrics) + "}",
        "\\toprule",
        " & ".join([*labels, *(_name(k) for k in metrics)]) + " \\\\",
        "\\midrule",
    ]


def render_latex(
    summaries: Sequence[Summary],
    metrics: Sequence[str],
    *,
    baseline: str | None,
    comparisons: Sequence[PaperComparison] = (),
    protocols: Mapping[str, str] | None = None,
) -> str:
    """One booktabs table per dataset: mean $\\pm$ std, best in bold, dagger for p < ALPHA, the
    history protocol (``protocols``) in the caption;
    with ``comparisons`` one more table of ours against the paper (double dagger: gap above
    GAP_FLAG_PCT percent)."""
    out = [
        "% generated by seqrec report; needs \\usepackage{booktabs}",
    ]
    for ds in dict.fromkeys(s.dataset for s in summaries):
        rows = [s for s in summaries if s.dataset == ds]
        best = {k: best_methods(rows, k) for k in metrics}
        caption = (
            f"{latex_escape(ds)}: test metrics at the best validation epoch, mean $\\pm$ std over "
            "seeds; best in bold"
        )
        if protocols and ds in protocols:
            caption += f"; {latex_escape(protocols[ds])}"
        if baseline:
            caption += (
                f"; $^\\dagger$ $p<{ALPHA}$ in a paired t-test over seeds against "
                f"{latex_escape(baseline)}"
            )
        out += _latex_table_head(f"{caption}.", "lr", ["Method", "Seeds"], metrics)
        for s in rows:
            cells = [latex_escape(s.method), str(len(s.seeds))]
            for k in metrics:
                m, sd = s.mean[k], s.std[k]
                c = f"{m:.4f}" if math.isnan(sd) else f"{m:.4f} $\\pm$ {sd:.4f}"
                if s.method in best[k]:
                    c = f"\\textbf{{{c}}}"
                if _significant(s, k):
                    c += "$^\\dagger$"
                cells.append(c)
            out.append(" & ".join(cells) + " \\\\")
        out += ["\\bottomrule", "\\end{tabular}", "\\end{table}", ""]
    if comparisons:
        cmp_metrics = [k for k in REPORT_METRICS if any(k in c.paper for c in comparisons)]
        source = latex_escape(SOURCES.get(comparisons[0].row.source, comparisons[0].row.source))
        caption = (
            f"Ours (mean over seeds) against {source}: ours / paper; "
            f"$^\\ddagger$ gap above {GAP_FLAG_PCT:g}\\%."
        )
        out += _latex_table_head(caption, "ll", ["Dataset", "Method"], cmp_metrics)
        for c in comparisons:
            cells = [latex_escape(c.dataset), latex_escape(c.method)]
            for k in cmp_metrics:
                if k not in c.paper:
                    cells.append("--")
                    continue
                cell = f"{c.ours[k]:.4f} / {c.paper[k]:.4f}"
                cells.append(cell + ("$^\\ddagger$" if c.flagged(k) else ""))
            out.append(" & ".join(cells) + " \\\\")
        out += ["\\bottomrule", "\\end{tabular}", "\\end{table}", ""]
    return "\n".join(out)


# ------------------------------------------------------------------------------------ entry point


def write_report(
    runs_dir: str | Path | Sequence[str | Path],
    *,
    out_dir: str | Path | None = None,
    baseline: str | None = None,
    reference: str | None = None,
    plots: bool = True,
    explain: str | Path | None = None,
    records: bool = True,
) -> dict[str, Path]:
    """Collect every run under ``runs_dir`` and write tables, report and plots.

    Args:
        runs_dir: a sweep's out_dir (or any folder of run folders), or several: their runs are
            pooled (the first folder wins where two hold the same dataset, method and seed).
        out_dir: where to write (default: the first ``runs_dir``'s ``report/``).
        baseline: loss name or method label to compare against (default: the study's).
        reference: published numbers to put beside ours (``li2023``, ``xu2024``; default: the
            study's ``reference``; ``"none"`` for none).
        plots: also draw the figures.
        explain: a Markdown file, written by whoever ran the study, that explains the gaps to
            the paper and states the findings; put into the report as "Gaps and findings".
            Without it, a report with gaps above the flag threshold says how many are
            unexplained.
        records: also keep each run's record (no weights) in ``out_dir/runs/``
            (:func:`keep_records`), from which the report can be redrawn.

    Returns ``{file name: path}`` of everything written (``report.md``, ``report.tex``,
    ``runs.csv``, ``runs.parquet``, ``summary.csv``, ``valid_ndcg_vs_time.png``, ...).
    """
    roots = _as_dirs(runs_dir)
    if not roots:
        raise SeqrecError("no runs folder given; give the out_dir of a sweep")
    where = ", ".join(f"`{root}`" for root in roots)
    explanation = None
    if explain is not None:
        try:
            explanation = Path(explain).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SeqrecError(
                f"cannot read the explanation file {explain}: {exc}; give a Markdown file"
            ) from None
    if reference is not None and reference != "none":
        paper_rows(reference)  # an unknown name fails before anything is read or written
    found, notes, info = collect_runs(roots)
    if not found:
        raise SeqrecError(
            f"no finished runs under {', '.join(map(str, roots))} (a finished run folder has "
            "results.json); "
            "run `seqrec sweep STUDY.toml` first"
        )
    baseline = baseline if baseline is not None else info.get("baseline")
    reference = reference if reference is not None else info.get("reference")
    if reference == "none":
        reference = None
    summaries, metrics, more_notes = summarize(found, baseline)
    notes = [*coverage_notes(roots, found), *notes, *more_notes]
    comparisons: list[PaperComparison] = []
    if reference:
        comparisons, paper_notes = compare_with_paper(summaries, reference)
        notes += paper_notes + settings_notes(found, reference)
        flagged = sum(c.flagged(k) for c in comparisons for k in c.gap)
        if flagged and explanation is None:
            notes.append(
                f"{flagged} numbers differ from the paper by more than {GAP_FLAG_PCT:g}% and "
                "none is explained here: write the reasons in a Markdown file and pass it with "
                "--explain FILE"
            )
    out = Path(out_dir) if out_dir is not None else roots[0] / "report"
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}

    rows = runs_rows(found)
    write_csv(out / "runs.csv", rows)
    write_parquet(out / "runs.parquet", rows)
    write_csv(out / "summary.csv", summary_rows(summaries, metrics, comparisons))
    for name in ("runs.csv", "runs.parquet", "summary.csv"):
        written[name] = out / name

    plot_paths: dict[str, Path] = {}
    if plots:
        from seqrec.experiments.plots import plot_study

        curves: dict[str, dict[str, list[Sequence[Mapping[str, Any]]]]] = {}
        positions: dict[str, dict[str, list[PositionMetrics]]] = {}
        for s in summaries:  # summary order: baseline first, same colours everywhere
            curves.setdefault(s.dataset, {})[s.method] = []
            positions.setdefault(s.dataset, {})[s.method] = []
        for r in sorted(found, key=lambda r: r.seed):
            curves[r.dataset][r.method].append(r.epochs)
            if r.position_metrics is not None:
                positions[r.dataset][r.method].append(r.position_metrics)
        missing = [r.name for r in found if r.position_metrics is None]
        if missing and len(missing) < len(found):
            notes.append(
                f"{len(missing)} runs have no positions.json, so they are not in the "
                f"per-position plot (the sweep computes it; per_position = 0 turns it off): "
                + ", ".join(missing[:5])
                + (" ..." if len(missing) > 5 else "")
            )
        references = {  # the authors' own validation curve beside ours, where published
            c.dataset: {} for c in comparisons if c.row.curve
        }
        for c in comparisons:
            if c.row.curve:  # shaped like our records: {"epoch": e, "valid": {metric: v}}
                references[c.dataset][c.method] = [
                    {"epoch": p["epoch"], "valid": {k: v for k, v in p.items() if "@" in k}}
                    for p in c.row.curve
                ]
        plot_paths = plot_study(
            curves, out / "plots", positions=positions, references=references or None
        )
        written.update(plot_paths)

    title = f"Study {info['study']}" if info.get("study") else f"Runs in {where}"
    md = render_markdown(
        summaries,
        metrics,
        title=title,
        baseline=baseline,
        n_runs=len(found),
        runs_dir=where,
        records_dir=RECORDS if records else None,
        plots=plot_paths,
        out_dir=out,
        notes=notes,
        comparisons=comparisons,
        reference=reference,
        explanation=explanation,
        protocols=history_protocols(found),
    )
    atomic_write_text(out / "report.md", md)
    atomic_write_text(
        out / "report.tex",
        render_latex(
            summaries,
            metrics,
            baseline=baseline,
            comparisons=comparisons,
            protocols=history_protocols(found, HISTORY_LATEX, mixed="mixed"),
        ),
    )
    if records:
        written[RECORDS] = keep_records(found, out / RECORDS)
    written["report.md"] = out / "report.md"
    written["report.tex"] = out / "report.tex"
    return written


__all__ = [
    "PaperComparison",
    "RunRecord",
    "Summary",
    "TTest",
    "collect_runs",
    "compare_with_paper",
    "keep_records",
    "paired_ttest",
    "summarize",
    "write_report",
]
