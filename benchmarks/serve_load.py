"""Load test of the HTTP service (issue 6): requests/s and latency of single-history requests.

Starts ``seqrec.serve.serve`` for a run folder in a subprocess (uvicorn on 127.0.0.1, a free
port), waits for ``GET /health``, then drives ``POST /recommend`` with N concurrent clients
(httpx, async) for a bounded time and a bounded number of requests (``--seconds``,
``--max-requests``). Only localhost traffic: the server listens on 127.0.0.1 and the clients
talk to 127.0.0.1. Each request carries one real history (raw ids of a user of
the run's dataset, the last ``--max-history`` items; random catalogue ids if the dataset cannot
be loaded). The first ``--warmup`` seconds are not counted. Writes
benchmarks/results/serve_load[-NAME].{json,md} with requests/s, p50/p90/p99/max latency and the
error count.

The client runs on the same machine and competes with the server for the cores: the numbers
are a lower bound of what the service does with the machine to itself.

To reproduce the committed figures (a Beauty SASRec run, 2 cores, nothing else running)::

    seqrec train --dataset beauty --data-dir ../shared/data --config benchmarks/configs/beauty-sasrec-ce.toml
    python benchmarks/serve_load.py runs/beauty-sasrec-ce-all-... --seconds 20 --clients 16

Other setups: ``--workers 2 --threads 1 --name w2t1`` (results go to serve_load-w2t1.*). A quick
check that the script works, on any small run: ``--seconds 5 --warmup 1 --max-requests 500``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from _common import machine, write_result


def versions() -> dict[str, str]:
    """Versions of the serving stack (the machine facts carry python, torch, numpy)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("seqrec", "fastapi", "uvicorn", "starlette", "pydantic", "httpx"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def rerun_command() -> str:
    """The command line that reproduces this measurement (from the repository root)."""
    return " ".join(["python", "benchmarks/serve_load.py", *map(shlex.quote, sys.argv[1:])])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def real_histories(
    run_dir: Path, data_dir: str | None, n: int, max_len: int
) -> tuple[list[list[str]], str]:
    """Up to n histories of raw ids from the run's dataset, else random ones from its vocab."""
    from dataclasses import replace

    from seqrec import runs
    from seqrec.data.sequences import Vocabulary
    from seqrec.errors import SeqrecError

    cfg = runs.load_run_config(run_dir)
    rng = np.random.default_rng(0)
    try:
        from seqrec.data.datasets import load_dataset

        data_cfg = cfg.data if data_dir is None else replace(cfg.data, data_dir=data_dir)
        prepared = load_dataset(data_cfg)
        seqs, raw = prepared.sequences, np.array(prepared.vocab.items, dtype=object)
        users = rng.choice(seqs.n_users, size=min(n, seqs.n_users), replace=False)
        out = [raw[seqs[u][-max_len:] - 1].tolist() for u in users]
        return (
            out,
            f"{prepared.name}: {len(out)} user histories from the dataset (last {max_len} items)",
        )
    except (SeqrecError, OSError) as exc:
        vocab = Vocabulary.load(run_dir / runs.BEST / "vocab.json")
        items = np.array(vocab.items, dtype=object)
        out = [rng.choice(items, size=int(rng.integers(1, max_len + 1))).tolist() for _ in range(n)]
        return out, f"random histories from the vocabulary (dataset not loaded: {exc})"


def start_server(
    run_dir: Path, port: int, workers: int, threads: int, data_dir: str | None
) -> subprocess.Popen:
    code = (
        "from seqrec.serve import serve; "
        f"serve({str(run_dir)!r}, '127.0.0.1', {port}, workers={workers}, threads={threads}, "
        f"data_dir={data_dir!r}, log_level='warning')"
    )
    return subprocess.Popen([sys.executable, "-c", code], env=os.environ.copy())


def wait_healthy(port: int, proc: subprocess.Popen, timeout: float = 300.0) -> float:
    import httpx

    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with code {proc.returncode} before it was ready")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1.0).status_code == 200:
                return time.perf_counter() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the server was not healthy after {timeout:.0f} s")


async def drive(
    port: int,
    histories: list[list[str]],
    *,
    clients: int,
    seconds: float,
    warmup: float,
    k: int,
    max_requests: int,
) -> dict[str, Any]:
    """Drive POST /recommend with ``clients`` concurrent clients; stop after ``warmup +
    seconds`` or once ``max_requests`` requests (warm-up included) were sent."""
    import httpx

    url = f"http://127.0.0.1:{port}/recommend"
    bodies = [json.dumps({"history": h, "k": k}).encode() for h in histories]
    headers = {"content-type": "application/json"}
    start = time.perf_counter()
    count_from, stop = start + warmup, start + warmup + seconds
    latencies: list[float] = []
    errors: dict[str, int] = {}
    sent = 0

    async def client(c: int, http: httpx.AsyncClient) -> None:
        nonlocal sent
        i = c
        while True:
            t0 = time.perf_counter()
            if t0 >= stop or sent >= max_requests:
                return
            sent += 1
            try:
                resp = await http.post(url, content=bodies[i % len(bodies)], headers=headers)
                ok = resp.status_code == 200
                kind = None if ok else f"http {resp.status_code}"
            except httpx.HTTPError as exc:
                kind = type(exc).__name__
            t1 = time.perf_counter()
            if t0 >= count_from:
                if kind is None:
                    latencies.append(t1 - t0)
                else:
                    errors[kind] = errors.get(kind, 0) + 1
            i += clients

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=30.0) as http:
        await asyncio.gather(*(client(c, http) for c in range(clients)))
    elapsed = min(time.perf_counter(), stop) - count_from  # measured window actually used
    lat = np.array(latencies) * 1000.0
    done = len(latencies)
    pct = (lambda q: float(np.percentile(lat, q))) if done else (lambda q: float("nan"))
    return {
        "requests": done,
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "sent_including_warmup": sent,
        "seconds": elapsed,
        "requests_per_s": done / elapsed if elapsed > 0 else float("nan"),
        "latency_ms": {"p50": pct(50), "p90": pct(90), "p99": pct(99), "max": pct(100),
                       "mean": float(lat.mean()) if done else float("nan")},
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("run_dir", type=Path, help="a finished run folder")
    ap.add_argument("--seconds", type=float, default=20.0, help="measured duration")
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds not counted at the start")
    ap.add_argument("--clients", type=int, default=16, help="concurrent clients")
    ap.add_argument("--workers", type=int, default=1, help="server worker processes")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    ap.add_argument(
        "--max-requests", type=int, default=200_000, help="stop after this many requests"
    )
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--max-history", type=int, default=50, help="items per request history")
    ap.add_argument("--histories", type=int, default=2000, help="distinct histories to cycle")
    ap.add_argument("--data-dir", default=None, help="datasets folder (default: the run's)")
    ap.add_argument("--name", default="", help="suffix of the result files")
    args = ap.parse_args()
    if not 0 < args.seconds <= 600 or not 1 <= args.clients <= 256 or args.max_requests < 1:
        raise SystemExit("--seconds must be in (0, 600], --clients in 1..256, --max-requests >= 1")

    histories, source = real_histories(
        args.run_dir, args.data_dir, args.histories, args.max_history
    )
    port = free_port()
    proc = start_server(args.run_dir, port, args.workers, args.threads, args.data_dir)
    try:
        startup = wait_healthy(port, proc)
        result = asyncio.run(
            drive(port, histories, clients=args.clients, seconds=args.seconds,
                  warmup=args.warmup, k=args.k, max_requests=args.max_requests)
        )  # fmt: skip
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()

    setup = {
        "run_dir": str(args.run_dir), "clients": args.clients, "workers": args.workers,
        "threads": args.threads, "k": args.k, "histories": source,
        "mean_history_len": float(np.mean([len(h) for h in histories])),
        "startup_seconds": startup,
    }  # fmt: skip
    payload = {
        "machine": machine(),
        "versions": versions(),
        "setup": setup,
        "result": result,
        "rerun": rerun_command(),
    }
    lat = result["latency_ms"]
    md = (
        "# Service load test (single-history POST /recommend)\n\n"
        f"Run `{args.run_dir}`; {source}; mean history length {setup['mean_history_len']:.1f}; "
        f"k = {args.k}.\n"
        f"Server: {args.workers} worker(s) x {args.threads} torch thread(s); {args.clients} "
        f"concurrent async clients on the same machine for {args.seconds:.0f} s "
        f"(after {args.warmup:.0f} s warm-up). Startup (load + health) {startup:.1f} s.\n\n"
        "| requests/s | p50 ms | p90 ms | p99 ms | max ms | requests | errors |\n"
        "|---|---|---|---|---|---|---|\n"
        f"| {result['requests_per_s']:.0f} | {lat['p50']:.1f} | {lat['p90']:.1f} | "
        f"{lat['p99']:.1f} | {lat['max']:.1f} | {result['requests']} | {result['errors']} |\n\n"
        f"Machine: {payload['machine']['cpu']}, {payload['machine']['cores']} cores. "
        "The load generator shares the cores with the server.\n\n"
        f"Versions: {', '.join(f'{k} {v}' for k, v in payload['versions'].items())}.\n\n"
        f"Rerun: `{payload['rerun']}`\n"
    )
    name = "serve_load" + (f"-{args.name}" if args.name else "")
    js, mdp = write_result(name, payload, md)
    print(md)
    print(f"wrote {js} and {mdp}")


if __name__ == "__main__":
    main()
