"""Read the training logs Xu et al. 2024 published with their code into one reference file.

Xu et al.'s repository (github.com/MTandHJ/CE-SCE-LLMRec, commit 9ebc8e7) holds the FreeRec log of
every SASRec run behind their table: 5 seeds for each of Beauty, ML-1M and Yelp × BCE, BPR, CE,
NCE and SCE, under ``SASRec/benchmarks/<dataset>-<loss>-5/<Dataset>_550_Chron/<id>/log.txt``. A
log holds the run's settings, its validation metrics every 5 epochs and, after ``Load best model
@Epoch N``, the test metrics at the best validation epoch: the numbers their paper averages.

This script parses such logs and writes

* ``src/seqrec/experiments/data/xu2024_authors.json``: per cell, every seed's test metrics at its
  best epoch, the best epoch, the settings, and the validation curve of the runs that have one;
  ``seqrec report`` puts the authors' mean ± std beside ours and ``plots`` draws their curve;
* ``benchmarks/results/xu2024_authors_logs.md``: a table of the cells.

Input: a folder holding the logs, either a clone's ``SASRec/benchmarks`` (``log.txt`` files) or
the excerpts kept in ``benchmarks/reference/xu2024-authors-logs/<cell>/<id>.txt`` (the lines this
script reads, copied from the logs: the settings, the summary at the end and, for seed 0, the
curve). Consistency checks fail loudly: the best validation NDCG@10 must be the curve's maximum,
settings must agree across a cell's seeds, each cell must have 5 seeds.

    python benchmarks/xu2024_authors_logs.py                                   # the excerpts
    python benchmarks/xu2024_authors_logs.py --logs CE-SCE-LLMRec/SASRec/benchmarks
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path
from typing import Any

from _common import RESULTS

ROOT = Path(__file__).resolve().parent.parent
EXCERPTS = Path(__file__).resolve().parent / "reference" / "xu2024-authors-logs"
OUT_JSON = ROOT / "src" / "seqrec" / "experiments" / "data" / "xu2024_authors.json"
SOURCE = {
    "repository": "https://github.com/MTandHJ/CE-SCE-LLMRec",
    "commit": "9ebc8e75116490241c7f658cf2a5a279b6a44996",
    "logs": "SASRec/benchmarks/<dataset>-<loss>-5/<Dataset>_550_Chron/<id>/log.txt",
}
DATASETS = {"beauty": "beauty", "ml": "ml-1m", "yelp": "yelp"}  # their cell prefix -> ours
LOSSES = ("bce", "bpr", "ce", "nce", "sce")
CELL = re.compile(r"^(beauty|ml|yelp)-(bce|bpr|ce|nce|sce)-5$")
SETTINGS = (
    "seed",
    "epochs",
    "loss",
    "c",
    "alpha",
    "num_negs",
    "neg_pool",
    "dropout_rate",
    "lr",
    "batch_size",
    "maxlen",
    "weight_decay",
    "retain_seen",
    "ranking",
)
_ANSI = re.compile(r"\x1b\[[0-9;]*m|\[[0-9;]*m(?=\[)")
_PARAM = re.compile(r"^\[(\w+): (.*?)\]\s*$")
_METRICS = re.compile(r"\|\| (.*)$")
_EPOCH_LINE = re.compile(r"\[Coach\] >>> (TRAIN|VALID|TEST)\s+@Epoch: (\d+)\s+>>>\s*(.*)$")
_LOAD_BEST = re.compile(r"Load best model @Epoch (\d+)")
_NAMES = {"HITRATE": "hr", "NDCG": "ndcg", "MRR": "mrr"}  # their MRR@k is truncated at k


class LogError(ValueError):
    """A log that does not say what this script needs, or says it inconsistently."""


def _metrics(text: str) -> dict[str, float]:
    """``|| HITRATE@1 Avg: 0.0003 || NDCG@10 Avg: 0.0015`` -> ``{"hr@1": 0.0003, ...}``."""
    out: dict[str, float] = {}
    for part in text.split("||"):
        part = part.strip()
        if not part:
            continue
        name, _, value = part.partition(" Avg: ")
        if name == "LOSS":
            out["loss"] = float(value)
            continue
        family, _, k = name.partition("@")
        out[f"{_NAMES[family]}@{k}"] = float(value)
    return out


def _strip(line: str) -> str:
    """Drop the timestamp prefix (up to the first tab) and terminal colour codes."""
    line = _ANSI.sub("", line.rstrip("\n"))
    return line.split("\t", 1)[1] if "\t" in line else line


def parse_log(text: str, where: str) -> dict[str, Any]:
    """One run: settings, best epoch, test and valid metrics there, and its validation curve."""
    settings: dict[str, str] = {}
    curve: dict[int, dict[str, float]] = {}
    best_epoch: int | None = None
    after_best: dict[str, dict[str, float]] = {}
    for raw in text.splitlines():
        line = _strip(raw)
        if (m := _PARAM.match(line)) and m[1] in SETTINGS and m[1] not in settings:
            settings[m[1]] = m[2].strip()
            continue
        if m := _LOAD_BEST.search(line):
            best_epoch = int(m[1])
            continue
        m = _EPOCH_LINE.search(line)
        if not m or not (mm := _METRICS.search(m[3])):
            continue
        kind, epoch, values = m[1], int(m[2]), _metrics(mm[1])
        if best_epoch is not None and kind.lower() not in after_best and kind != "TRAIN":
            after_best[kind.lower()] = values  # the reloaded best model's valid and test lines
        elif kind == "VALID":
            curve.setdefault(epoch, {}).update(values)
        elif kind == "TRAIN" and epoch % 5 == 0:
            curve.setdefault(epoch, {})["train_loss"] = values["loss"]
    missing = [k for k in SETTINGS if k not in settings]
    if missing:
        raise LogError(f"{where}: settings missing from the log: {', '.join(missing)}")
    if best_epoch is None or "test" not in after_best or "valid" not in after_best:
        raise LogError(
            f"{where}: no 'Load best model @Epoch N' with its VALID and TEST lines; "
            "is the log complete?"
        )
    valid_curve = {e: v for e, v in curve.items() if "ndcg@10" in v}
    if valid_curve:
        top = max(v["ndcg@10"] for v in valid_curve.values())
        at_best = valid_curve.get(best_epoch, {}).get("ndcg@10")
        if at_best is None or abs(at_best - top) > 1e-12:
            raise LogError(
                f"{where}: the best epoch {best_epoch} is not the curve's maximum of validation "
                f"NDCG@10 ({top}; at {best_epoch}: {at_best}): a curve line is wrong or missing"
            )
        if abs(after_best["valid"]["ndcg@10"] - top) > 1e-12:
            raise LogError(
                f"{where}: the reloaded model's validation NDCG@10 differs from the curve's"
            )
    return {
        "seed": int(settings["seed"]),
        "settings": {k: settings[k] for k in SETTINGS if k != "seed"},
        "best_epoch": best_epoch,
        "test": after_best["test"],
        "valid": after_best["valid"],
        "curve": [
            {"epoch": e, **curve[e]} for e in sorted(curve) if e > 0 or "ndcg@10" in curve[e]
        ],
    }


def _cell_files(folder: Path) -> dict[str, list[Path]]:
    """``<cell>`` -> its log files, for a clone's layout or the excerpts'."""
    cells: dict[str, list[Path]] = {}
    for d in sorted(p for p in folder.iterdir() if p.is_dir() and CELL.match(p.name)):
        files = sorted(d.rglob("log.txt")) or sorted(d.glob("*.txt"))
        cells[d.name] = files
    if not cells:
        raise LogError(
            f"{folder}: no folders named like 'ml-nce-5' (<dataset>-<loss>-5); give the "
            "SASRec/benchmarks folder of a clone of MTandHJ/CE-SCE-LLMRec or the excerpts folder"
        )
    return cells


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean, sample std, min and max over seeds of every test metric the runs share."""
    keys = sorted(set.intersection(*(set(r["test"]) for r in runs)))
    out: dict[str, dict[str, float]] = {}
    for k in keys:
        xs = [r["test"][k] for r in runs]
        out[k] = {
            "mean": statistics.fmean(xs),
            "std": statistics.stdev(xs) if len(xs) > 1 else 0.0,
            "min": min(xs),
            "max": max(xs),
        }
    return out


def read_cells(folder: Path, seeds: int = 5) -> dict[str, dict[str, Any]]:
    """Every cell of ``folder`` parsed and checked, keyed ``"<dataset>/<loss>"`` (our names)."""
    out: dict[str, dict[str, Any]] = {}
    for cell, files in _cell_files(folder).items():
        prefix, loss = CELL.match(cell).groups()  # type: ignore[union-attr]
        runs = [parse_log(f.read_text(errors="replace"), str(f)) for f in files]
        if len(runs) != seeds:
            raise LogError(f"{folder / cell}: {len(runs)} runs, expected {seeds} seeds")
        settings = {json.dumps(r["settings"], sort_keys=True) for r in runs}
        if len(settings) != 1:
            raise LogError(f"{folder / cell}: the seeds' settings differ: {sorted(settings)}")
        runs.sort(key=lambda r: r["seed"])
        out[f"{DATASETS[prefix]}/{loss}"] = {
            "dataset": DATASETS[prefix],
            "loss": loss,
            "settings": runs[0]["settings"],
            "test": summarise(runs),
            "runs": [{k: v for k, v in r.items() if k != "settings"} for r in runs],
        }
    return out


def markdown(cells: dict[str, dict[str, Any]]) -> str:
    lines = [
        "# Xu et al. 2024: the authors' own SASRec runs, read from their published logs",
        "",
        f"Source: {SOURCE['repository']} at {SOURCE['commit'][:7]}, `{SOURCE['logs']}`. "
        "Test metrics at each run's best validation NDCG@10 (the `Load best model` lines), "
        "mean ± sample std over the 5 seeds (min–max), and the best epochs. Every run trained "
        "for the full `epochs`, without early stopping.",
        "",
        "| dataset | loss | NDCG@10 | HR@10 | best epochs | epochs | K | pool |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key in sorted(cells):
        c = cells[key]
        n, h = c["test"]["ndcg@10"], c["test"]["hr@10"]
        s = c["settings"]
        lines.append(
            f"| {c['dataset']} | {c['loss']} "
            f"| {n['mean']:.4f} ± {n['std']:.4f} ({n['min']:.4f}–{n['max']:.4f}) "
            f"| {h['mean']:.4f} ± {h['std']:.4f} ({h['min']:.4f}–{h['max']:.4f}) "
            f"| {', '.join(str(r['best_epoch']) for r in c['runs'])} | {s['epochs']} "
            f"| {s['num_negs']} | {s['neg_pool']} |"
        )
    lines += [
        "",
        "Regenerate: `python benchmarks/xu2024_authors_logs.py` (reads the excerpts in "
        "`benchmarks/reference/xu2024-authors-logs/`; `--logs` reads a clone's logs instead).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--logs", type=Path, default=EXCERPTS, help="folder of <dataset>-<loss>-5 cells"
    )
    ap.add_argument("--out", type=Path, default=OUT_JSON, help="the JSON to write")
    ap.add_argument("--markdown", type=Path, default=RESULTS / "xu2024_authors_logs.md")
    args = ap.parse_args(argv)
    from seqrec.io import atomic_write_text

    try:
        cells = read_cells(args.logs)
    except (LogError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    payload = {"source": SOURCE, "cells": cells}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(payload, indent=1) + "\n")
    atomic_write_text(args.markdown, markdown(cells))
    print(f"{len(cells)} cells -> {args.out} and {args.markdown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
