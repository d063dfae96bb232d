"""Time to quality: train SASRec-ce to early stopping and record the wall time (issue 3).

Each run is one `seqrec train -c CONFIG` in a fresh process, timed from launch to exit (data
loading, every epoch, every validation pass, checkpoints and the final test all count). The
script records wall time, epochs, the best epoch and test NDCG@10 / HR@10 against the issue's
targets, and writes benchmarks/results/time_to_quality.{json,md}. Results are merged, so runs
can be done one at a time:

    python benchmarks/time_to_quality.py --data-dir ../shared/data --only beauty-fast
    python benchmarks/time_to_quality.py --data-dir ../shared/data            # all runs

Run it on an otherwise idle machine: it is a timing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from _common import RESULTS, machine, write_result

CONFIGS = Path(__file__).resolve().parent / "configs"

#: name -> (config file, target minutes, target test NDCG@10, what differs from the reference)
RUNS = {
    "beauty-reference": (
        "beauty-sasrec-ce.toml",
        15,
        0.057,
        "Xu et al.'s settings (lr 5e-4, validation every 5 epochs, patience 4)",
    ),
    "beauty-fast": (
        "beauty-sasrec-ce-fast.toml",
        15,
        0.057,
        "Xu et al.'s model and batch; lr 2e-3, validation every 2 epochs, patience 5",
    ),
    "ml-1m-fast": (
        "ml-1m-sasrec-ce-fast.toml",
        45,
        0.175,
        "Xu et al.'s model and batch; lr 2e-3, validation every 2 epochs, patience 5",
    ),
    "ml-1m-reference": (
        "ml-1m-sasrec-ce.toml",
        45,
        0.175,
        "Xu et al.'s settings (lr 1e-3, validation every 5 epochs, patience 4)",
    ),
}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--data-dir", default=None, help="folder of named datasets (default $SEQREC_DATA_DIR)"
    )
    ap.add_argument("--only", nargs="*", default=None, choices=sorted(RUNS))
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    ap.add_argument("--out-dir", default="runs/time_to_quality", help="where run folders go")
    ap.add_argument(
        "--epochs", type=int, default=None, help="override max epochs (smoke tests only)"
    )
    args = ap.parse_args()
    data_dir = args.data_dir or os.environ.get("SEQREC_DATA_DIR")
    payload = _load()
    for name in args.only or list(RUNS):
        payload["runs"][name] = run_one(name, args, data_dir)
        js, md = write_result("time_to_quality", payload, render(payload))
        print(f"wrote {js} and {md}", file=sys.stderr)


def run_one(name: str, args: argparse.Namespace, data_dir: str | None) -> dict:
    config, minutes, target, deviation = RUNS[name]
    run_name = f"{name}-seed{args.seed}"
    seqrec = str(Path(sys.executable).with_name("seqrec"))  # the venv's console script
    cmd = [seqrec, "train", "-c", str(CONFIGS / config), "--quiet"]
    cmd += ["--seed", str(args.seed), "--out-dir", args.out_dir, "--name", run_name]
    if data_dir:
        cmd += ["--data-dir", data_dir]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if args.epochs:
        cmd += ["--epochs", str(args.epochs)]
    run_dir = Path(args.out_dir) / run_name
    if run_dir.exists():
        sys.exit(f"{run_dir} exists: a timing needs a fresh run; remove it or pick --out-dir")
    print(f"{name}: {' '.join(cmd)}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - start
    results = json.loads((run_dir / "results.json").read_text())
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    test = results["test"]
    return {
        "config": config,
        "deviation_from_reference": deviation,
        "command": " ".join(cmd),
        "seed": args.seed,
        "wall_seconds": wall,
        "target_minutes": minutes,
        "target_test_ndcg@10": target,
        "test": test,
        "best_epoch": results.get("best_epoch"),
        "epochs_run": max(m["epoch"] for m in metrics),
        "seconds_per_epoch": [m["epoch_seconds"] for m in metrics],
        "valid_ndcg@10": [[m["epoch"], m["valid"]["ndcg@10"]] for m in metrics if "valid" in m],
        "met": wall <= 60 * minutes and test["ndcg@10"] >= target,
        "machine": machine(),
    }


def _load() -> dict:
    path = RESULTS / "time_to_quality.json"
    return json.loads(path.read_text()) if path.exists() else {"runs": {}}


def render(payload: dict) -> str:
    lines = [
        "# Time to quality: SASRec-ce trained to early stopping",
        "",
        "Each run is one `seqrec train` process on an otherwise idle machine, timed from launch "
        "to exit (data loading, all epochs, validation passes, checkpoints, final test).",
        "",
        "| run | settings | wall min | target min | test NDCG@10 | target | HR@10 | best / "
        "epochs | s / epoch (median) | met | commit |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in payload["runs"].items():
        per = sorted(r["seconds_per_epoch"])
        lines.append(
            f"| {name} | {r['deviation_from_reference']} | {r['wall_seconds'] / 60:.1f} | "
            f"{r['target_minutes']} | {r['test']['ndcg@10']:.4f} | {r['target_test_ndcg@10']} | "
            f"{r['test']['hr@10']:.4f} | {r['best_epoch']} / {r['epochs_run']} | "
            f"{per[len(per) // 2]:.1f} | {'yes' if r['met'] else 'no'} | "
            f"{r['machine']['git_commit']} |"
        )
    any_run = next(iter(payload["runs"].values()), None)
    if any_run:
        m = any_run["machine"]
        lines += [
            "",
            f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, torch "
            f"{m['torch']}, {m['torch_threads']} threads. Seed and command of each run in the "
            "JSON, with its per-epoch seconds and validation curve.",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
