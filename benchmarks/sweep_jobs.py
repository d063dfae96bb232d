"""How a study's wall time depends on how the cores are shared: `seqrec sweep --jobs`.

The quickstart study (benchmarks/studies/quickstart.toml: 8 small SASRec runs on ML-100K and
the synthetic set) is swept three ways, each `seqrec sweep` in a fresh process into a fresh
folder, timed from launch to exit:

* ``jobs1-threads1``: one run at a time on one thread (the study as written);
* ``jobs1-threadsall``: one run at a time on every core (``train.threads`` left unset);
* ``jobsN-threads1``: ``--jobs N`` (N = cores), N runs at a time on one thread each.

The variants are interleaved round by round, so slow drift of the machine hits them alike;
ratios are taken within a round. To explain the result, the script also measures how the cores
scale: the matmul throughput of one one-thread process alone, and of N such processes at once
(on virtual machines, "cores" are often hyperthreads that share one physical core). Each variant must reproduce the same test metrics as the
others with the same thread count (checked, not assumed). Writes
benchmarks/results/sweep_jobs.{json,md}.

    python benchmarks/sweep_jobs.py --data-dir ../shared/data --rounds 1

Run it on an otherwise idle machine: it is a timing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

from _common import machine, write_result

STUDY = Path(__file__).resolve().parent / "studies" / "quickstart.toml"


def variant_study(tmp: Path, threads_line: str | None) -> Path:
    """The quickstart study with its ``threads = 1`` replaced (or removed when None)."""
    text = STUDY.read_text(encoding="utf-8")
    old = ", threads = 1 }"
    if old not in text:
        raise SystemExit(f"{STUDY}: expected '{old}' in its [base] train table")
    new = " }" if threads_line is None else f", threads = {threads_line} }}"
    path = tmp / f"quickstart-threads-{threads_line or 'all'}.toml"
    path.write_text(text.replace(old, new), encoding="utf-8")
    return path


def sweep(study: Path, out: Path, jobs: int, data_dir: str) -> float:
    """Wall seconds of one `seqrec sweep` in a fresh process (must succeed)."""
    command = [sys.executable, "-m", "seqrec.cli", "sweep", str(study), "--quiet"]
    command += ["--jobs", str(jobs), "--out-dir", str(out), "--data-dir", data_dir]
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{proc.stderr[-2000:]}")
    return seconds


MATMUL_LOOP = """
import sys, time, torch
torch.set_num_threads(1)
a, b = torch.randn(512, 512), torch.randn(512, 512)
n, t0 = 0, time.perf_counter()
while time.perf_counter() - t0 < float(sys.argv[1]):
    a @ b
    n += 1
print(n / (time.perf_counter() - t0))
"""


def core_scaling(processes: int, seconds: float = 8.0) -> float:
    """Total 512x512 float32 matmuls per second of ``processes`` one-thread processes run at
    once."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", MATMUL_LOOP, str(seconds)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(processes)
    ]
    return sum(float(p.communicate()[0]) for p in procs)


def test_ndcg(out: Path) -> dict[str, float]:
    return {
        d.name: json.loads((d / "results.json").read_text())["test"]["ndcg@10"]
        for d in sorted(out.iterdir())
        if (d / "results.json").is_file()
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data-dir", default=os.environ.get("SEQREC_DATA_DIR", "../shared/data"))
    ap.add_argument("--rounds", type=int, default=1, help="Times each variant is swept.")
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    facts = machine()
    runs_per_study = len(tomllib.loads(STUDY.read_text())["seeds"]) * 4
    alone = core_scaling(1)
    together = core_scaling(cores)
    print(f"matmul/s: one process {alone:.0f}, {cores} at once {together:.0f}", flush=True)
    rounds = []
    with tempfile.TemporaryDirectory(prefix="seqrec-sweep-jobs-") as tmp_name:
        tmp = Path(tmp_name)
        one = variant_study(tmp, "1")
        every = variant_study(tmp, None)
        variants = {
            "jobs1-threads1": (one, 1),
            "jobs1-threadsall": (every, 1),
            f"jobs{cores}-threads1": (one, cores),
        }
        for r in range(args.rounds):
            seconds, ndcg = {}, {}
            for name, (study, jobs) in variants.items():
                out = tmp / f"round{r}-{name}"
                seconds[name] = sweep(study, out, jobs, args.data_dir)
                ndcg[name] = test_ndcg(out)
                print(f"round {r + 1}: {name} {seconds[name]:.1f} s", flush=True)
            if ndcg["jobs1-threads1"] != ndcg[f"jobs{cores}-threads1"]:
                raise SystemExit("--jobs changed the one-thread runs' test metrics")
            if len(ndcg["jobs1-threads1"]) != runs_per_study:
                raise SystemExit(f"expected {runs_per_study} finished runs")
            rounds.append({"seconds": seconds, "test_ndcg@10": ndcg})
    names = list(rounds[0]["seconds"])
    base = "jobs1-threadsall"
    ratio = {
        n: statistics.median(r["seconds"][base] / r["seconds"][n] for r in rounds) for n in names
    }
    payload = {
        **facts,
        "study": str(STUDY.relative_to(STUDY.parents[2])),
        "runs_per_sweep": runs_per_study,
        "rounds": rounds,
        "speedup_vs_one_run_on_all_cores": ratio,
        "matmul_per_s_one_process": alone,
        f"matmul_per_s_{cores}_processes": together,
    }
    lines = [
        "# Sweep wall time: how the cores are shared (`seqrec sweep --jobs`)",
        "",
        f"`{facts['command']}` at {facts['git_commit']}, {facts['date']}; {facts['cpu']}, "
        f"{cores} cores; torch {facts['torch']}. The quickstart study ({runs_per_study} small "
        "SASRec runs on ML-100K and the synthetic set), each sweep a fresh process into a fresh "
        f"folder; {len(rounds)} round(s), variants interleaved.",
        "",
        "| variant | wall s (per round) | speed-up vs one run on all cores (median) |",
        "|---|---|---|",
    ]
    for n in names:
        secs = ", ".join(f"{r['seconds'][n]:.1f}" for r in rounds)
        lines.append(f"| `{n}` | {secs} | {ratio[n]:.2f}× |")
    lines += [
        "",
        "The one-thread runs gave the same test NDCG@10, run for run, with and without "
        "`--jobs` (checked by the script).",
        "",
        f"How the cores scale: one one-thread process does {alone:.0f} 512×512 matmuls/s; "
        f"{cores} at once do {together:.0f}/s together, {together / alone:.2f}× one "
        f"(ideal {cores}×), measured once before the sweeps. A shared host's speed drifts "
        "from minute to minute, so compare the variants within a round.",
        "",
    ]
    js, md = write_result("sweep_jobs", payload, "\n".join(lines))
    print(f"wrote {js} and {md}")


if __name__ == "__main__":
    main()
