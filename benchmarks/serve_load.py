"""Load test of the HTTP service (issue 6): requests/s and latency of single-history requests.

Starts ``seqrec.serve.serve`` for a run folder in a subprocess (uvicorn on 127.0.0.1, a free
port), waits for ``GET /health``, then drives ``POST /recommend`` with N concurrent clients for a
bounded time and a bounded number of requests (``--seconds``, ``--max-requests``). Only localhost
traffic: the server listens on 127.0.0.1 and the clients talk to 127.0.0.1. Each request carries
one real history (raw ids of a user of the run's dataset, the last ``--max-history`` items;
random catalogue ids if the dataset cannot be loaded). The first ``--warmup`` seconds are not
counted. Writes ``--out-dir``/serve_load[-NAME].{json,md} (default benchmarks/results) with
requests/s, p50/p90/p99/max latency, the error count and the CPU used by the server, by the
load generator and by everything else on the machine during the measured window.

The load generator must be cheap, as it shares the cores with the server: it runs in this
process (the server is another process tree), one asyncio event loop (uvloop when installed)
drives ``--clients`` persistent HTTP/1.1 keep-alive connections, each a closed loop (send one
request, wait for the answer, send the next), with every request pre-encoded as bytes. Each
answer is checked: status 200 and a JSON body holding exactly one result; anything else (or a
broken connection, or no answer within 30 s) counts as an error. It costs about 0.13 ms of CPU
per request; the general-purpose async client used before (httpx) cost about 7 ms, more than the
server itself.

To reproduce the committed figures (a Beauty SASRec run, 2 cores, nothing else running)::

    seqrec train --dataset beauty --data-dir ../shared/data --config benchmarks/configs/beauty-sasrec-ce.toml
    python benchmarks/serve_load.py runs/beauty-sasrec-ce-all-... --data-dir ../shared/data

The defaults are the recommended setup for 2 cores: 2 worker processes x 1 torch thread,
micro-batching on (the server's defaults: up to 64 histories per model call, at most 1 ms of
waiting), 16 concurrent clients for 20 s after 2 s of warm-up. Other setups: ``--workers 1
--name w1`` (results go to serve_load-w1.*), ``--max-batch 1 --name nobatch`` (no
micro-batching). A quick check that the script works, on any small run: ``--seconds 5 --warmup 1
--max-requests 500 --out-dir /tmp``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
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

REQUEST_TIMEOUT = 30.0  # seconds without an answer: the request counts as an error
CLK_TCK = os.sysconf("SC_CLK_TCK")


def versions() -> dict[str, str]:
    """Versions of the serving stack (the machine facts carry python, torch, numpy)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("seqrec", "fastapi", "uvicorn", "starlette", "pydantic", "httptools", "uvloop",
                "orjson"):  # fmt: skip
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
    run_dir: Path,
    port: int,
    workers: int,
    threads: int,
    data_dir: str | None,
    batch_wait_ms: float,
    max_batch: int,
) -> subprocess.Popen:
    code = (
        "from seqrec.serve import serve; "
        f"serve({str(run_dir)!r}, '127.0.0.1', {port}, workers={workers}, threads={threads}, "
        f"data_dir={data_dir!r}, log_level='warning', batch_wait_ms={batch_wait_ms!r}, "
        f"max_batch={max_batch!r})"
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


# ----------------------------------------------------------------------------- CPU accounting


def _proc_times() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, user + system CPU seconds) of every process (Linux /proc)."""
    out = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()  # after "pid (comm) "
        out[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / CLK_TCK)
    return out


def tree_cpu(root: int) -> float:
    """CPU seconds used so far by ``root`` and all its live descendants (0.0 off Linux)."""
    if not os.path.isdir("/proc"):
        return 0.0
    procs = _proc_times()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        if pid in procs:
            total += procs[pid][1]
        todo.extend(children.get(pid, ()))
    return total


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat (0s off Linux)."""
    try:
        with open("/proc/stat") as f:
            cpu = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return 0.0, 0.0
    idle = cpu[3] + (cpu[4] if len(cpu) > 4 else 0)  # idle + iowait
    return (sum(cpu) - idle) / CLK_TCK, sum(cpu) / CLK_TCK


# ----------------------------------------------------------------------------- the client


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: one request in flight at a time; parses the status
    line and Content-Length of the answer, nothing more."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.head_end = -1
        self.end = -1
        self.status = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def request(self, data: bytes) -> asyncio.Future[tuple[int, bytes]]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self.waiter

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.end < 0:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            lines = bytes(self.buffer[:head_end]).split(b"\r\n")
            length = None
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if length is None:
                self._fail(ConnectionError("an answer without Content-Length"))
                return
            self.status = int(lines[0].split(b" ", 2)[1])
            self.head_end, self.end = head_end + 4, head_end + 4 + length
        if len(self.buffer) >= self.end:
            body = bytes(self.buffer[self.head_end : self.end])
            del self.buffer[: self.end]
            self.end = -1
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_result((self.status, body))

    def _fail(self, exc: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc or ConnectionError("the server closed the connection"))


def _check(status: int, body: bytes) -> str | None:
    """None for a good answer, else the kind of error."""
    if status != 200:
        return f"http {status}"
    try:
        results = json.loads(body)["results"]
    except (ValueError, KeyError, TypeError):
        return "bad body"
    return None if isinstance(results, list) and len(results) == 1 else "bad body"


async def drive(
    port: int,
    histories: list[list[str]],
    *,
    clients: int,
    seconds: float,
    warmup: float,
    k: int,
    max_requests: int,
    server_pid: int,
) -> dict[str, Any]:
    """Drive POST /recommend with ``clients`` concurrent keep-alive connections; stop after
    ``warmup + seconds`` or once ``max_requests`` requests (warm-up included) were sent."""
    loop = asyncio.get_running_loop()
    head = f"POST /recommend HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-type: application/json"
    requests = []
    for h in histories:
        body = json.dumps({"history": h, "k": k}).encode()
        requests.append(f"{head}\r\ncontent-length: {len(body)}\r\n\r\n".encode() + body)
    start = time.perf_counter()
    count_from, stop = start + warmup, start + warmup + seconds
    latencies: list[float] = []
    errors: dict[str, int] = {}
    sent = 0
    marks: dict[str, tuple[float, ...]] = {}

    def mark(name: str) -> None:  # CPU counters at the start and the end of the measured window
        marks[name] = (time.perf_counter(), time.process_time(), tree_cpu(server_pid),
                       *machine_busy())  # fmt: skip

    async def client(c: int) -> None:
        nonlocal sent
        i = c
        conn: _Connection | None = None
        while True:
            t0 = time.perf_counter()
            if t0 >= stop or sent >= max_requests:
                break
            if "start" not in marks and t0 >= count_from:
                mark("start")
            sent += 1
            kind: str | None
            try:
                if conn is None or conn.transport is None or conn.transport.is_closing():
                    _, conn = await loop.create_connection(_Connection, "127.0.0.1", port)
                status, body = await asyncio.wait_for(
                    conn.request(requests[i % len(requests)]), REQUEST_TIMEOUT
                )
                kind = _check(status, body)
            except (OSError, TimeoutError, ValueError) as exc:
                kind, conn = type(exc).__name__, None
            t1 = time.perf_counter()
            if t0 >= count_from:
                if kind is None:
                    latencies.append(t1 - t0)
                else:
                    errors[kind] = errors.get(kind, 0) + 1
            i += clients
        if conn is not None and conn.transport is not None:
            conn.transport.close()

    await asyncio.gather(*(client(c) for c in range(clients)))
    mark("end")
    elapsed = min(time.perf_counter(), stop) - count_from  # measured window actually used
    lat = np.array(latencies) * 1000.0
    done = len(latencies)
    pct = (lambda q: float(np.percentile(lat, q))) if done else (lambda q: float("nan"))
    cpu: dict[str, float] = {}
    if "start" in marks:
        (w0, c0, s0, b0, t0), (w1, c1, s1, b1, t1) = marks["start"], marks["end"]
        wall, n = w1 - w0, max(done, 1)
        cores = (t1 - t0) / wall if wall > 0 else float("nan")  # ~ the number of cores
        cpu = {
            "client_cores": (c1 - c0) / wall,
            "server_cores": (s1 - s0) / wall,
            "machine_busy_cores": (b1 - b0) / wall,
            "machine_cores": cores,
            "other_cores": max(0.0, (b1 - b0 - (c1 - c0) - (s1 - s0)) / wall),
            "client_ms_per_request": 1000 * (c1 - c0) / n,
            "server_ms_per_request": 1000 * (s1 - s0) / n,
        }
    return {
        "requests": done,
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "sent_including_warmup": sent,
        "seconds": elapsed,
        "requests_per_s": done / elapsed if elapsed > 0 else float("nan"),
        "latency_ms": {"p50": pct(50), "p90": pct(90), "p99": pct(99), "max": pct(100),
                       "mean": float(lat.mean()) if done else float("nan")},
        "cpu": cpu,
    }  # fmt: skip


def _event_loop_runner() -> Any:
    """asyncio.run, on uvloop when it is installed (a cheaper client)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run
    return uvloop.run


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("run_dir", type=Path, help="a finished run folder")
    ap.add_argument("--seconds", type=float, default=20.0, help="measured duration")
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds not counted at the start")
    ap.add_argument("--clients", type=int, default=16, help="concurrent clients (connections)")
    ap.add_argument("--workers", type=int, default=2, help="server worker processes")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    ap.add_argument(
        "--batch-wait-ms",
        type=float,
        default=None,
        help="server micro-batching: longest wait for companions (default: the server's)",
    )
    ap.add_argument(
        "--max-batch",
        type=int,
        default=None,
        help="server micro-batching: most histories per forward (default: the server's; 1 = off)",
    )
    ap.add_argument(
        "--max-requests", type=int, default=200_000, help="stop after this many requests"
    )
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--max-history", type=int, default=50, help="items per request history")
    ap.add_argument("--histories", type=int, default=2000, help="distinct histories to cycle")
    ap.add_argument("--data-dir", default=None, help="datasets folder (default: the run's)")
    ap.add_argument("--name", default="", help="suffix of the result files")
    ap.add_argument(
        "--out-dir", type=Path, default=None, help="where to write (default: benchmarks/results)"
    )
    args = ap.parse_args()
    if not 0 < args.seconds <= 600 or not 1 <= args.clients <= 256 or args.max_requests < 1:
        raise SystemExit("--seconds must be in (0, 600], --clients in 1..256, --max-requests >= 1")

    from seqrec.serve import BATCH_WAIT_MS, MAX_MICRO_BATCH

    batch_wait_ms = BATCH_WAIT_MS if args.batch_wait_ms is None else args.batch_wait_ms
    max_batch = MAX_MICRO_BATCH if args.max_batch is None else args.max_batch
    histories, source = real_histories(
        args.run_dir, args.data_dir, args.histories, args.max_history
    )
    port = free_port()
    proc = start_server(
        args.run_dir, port, args.workers, args.threads, args.data_dir, batch_wait_ms, max_batch
    )
    try:
        startup = wait_healthy(port, proc)
        gc.collect()  # no full collection of the loaded dataset in the middle of the run
        gc.freeze()
        result = _event_loop_runner()(
            drive(port, histories, clients=args.clients, seconds=args.seconds,
                  warmup=args.warmup, k=args.k, max_requests=args.max_requests,
                  server_pid=proc.pid)
        )  # fmt: skip
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()

    setup = {
        "run_dir": str(args.run_dir), "clients": args.clients, "workers": args.workers,
        "threads": args.threads, "batch_wait_ms": batch_wait_ms, "max_batch": max_batch,
        "k": args.k, "histories": source,
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
    lat, cpu = result["latency_ms"], result["cpu"]
    cpu_line = (
        f"CPU during the measured window (in cores, of {payload['machine']['cores']}): server "
        f"{cpu['server_cores']:.2f} ({cpu['server_ms_per_request']:.2f} ms per request), load "
        f"generator {cpu['client_cores']:.2f} ({cpu['client_ms_per_request']:.2f} ms per "
        f"request), everything else on the machine {cpu['other_cores']:.2f}.\n\n"
        if cpu
        else ""
    )
    batching = (
        f"micro-batching up to {max_batch} histories, waiting at most {batch_wait_ms:g} ms"
        if max_batch > 1
        else "no micro-batching"
    )
    md = (
        "# Service load test (single-history POST /recommend)\n\n"
        f"Run `{args.run_dir}`; {source}; mean history length {setup['mean_history_len']:.1f}; "
        f"k = {args.k}.\n"
        f"Server: {args.workers} worker(s) x {args.threads} torch thread(s), {batching}; "
        f"{args.clients} concurrent keep-alive clients on the same machine for "
        f"{args.seconds:.0f} s (after {args.warmup:.0f} s warm-up). Startup (load + health) "
        f"{startup:.1f} s.\n\n"
        "| requests/s | p50 ms | p90 ms | p99 ms | max ms | requests | errors |\n"
        "|---|---|---|---|---|---|---|\n"
        f"| {result['requests_per_s']:.0f} | {lat['p50']:.1f} | {lat['p90']:.1f} | "
        f"{lat['p99']:.1f} | {lat['max']:.1f} | {result['requests']} | {result['errors']} |\n\n"
        f"{cpu_line}"
        f"Machine: {payload['machine']['cpu']}, {payload['machine']['cores']} cores. "
        "The load generator shares the cores with the server.\n\n"
        f"Versions: {', '.join(f'{k} {v}' for k, v in payload['versions'].items())}.\n\n"
        f"Rerun: `{payload['rerun']}`\n"
    )
    name = "serve_load" + (f"-{args.name}" if args.name else "")
    if args.out_dir is None:
        js, mdp = write_result(name, payload, md)
    else:
        args.out_dir.mkdir(parents=True, exist_ok=True)
        js, mdp = args.out_dir / f"{name}.json", args.out_dir / f"{name}.md"
        js.write_text(json.dumps(payload, indent=2) + "\n")
        mdp.write_text(md)
    print(md)
    print(f"wrote {js} and {mdp}")


if __name__ == "__main__":
    main()
