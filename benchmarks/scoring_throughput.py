"""Throughput of the scoring layer against this machine's matmul peak, measured in one run (issue 3).

The scoring layer is where a full-ranking recommender spends its FLOPs: hidden states (N, d)
against the item table (C, d). Measured here, interleaved in one process so the ratios hold
whatever else the machine is doing:

    peak fp32     a large square float32 matmul (2048 x 2048 x 2048): the machine's reachable peak
    peak bf16     the same in bfloat16 (CPUs without bf16 units emulate it: it is then slower)
    eval scoring  the evaluator's score block, (rows x d) @ (d x C) in float32 (seqrec.evaluate)
    ce step       one exact full-softmax CE training step, forward + backward w.r.t. hidden
                  states and item table, as the trainer runs it (seqrec's ``ce`` loss);
                  counted as 3 matmuls = 6·N·C·d FLOPs (logits, dL/dh, dL/dW), though it also
                  spends time on exp over N·C logits
    ce step bf16  the same under torch.autocast(bfloat16), to measure whether bf16 pays here

GFLOP/s = counted FLOPs / median seconds over --repeats (after a warm-up). The shapes default to
Beauty's: C = 12,101 items, d = 64, N = 3,584 positions (a typical Beauty batch of 512 users) and
512 evaluation rows per score block. Random inputs (the FLOPs do not depend on the values).

    python benchmarks/scoring_throughput.py              # writes results/scoring_throughput.{json,md}
    python benchmarks/scoring_throughput.py --threads 1 --name scoring_throughput_1t
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, write_result
from seqrec.losses.softmax import ChunkedCE


def timed(fn: Callable[[], Any], repeats: int) -> float:
    """Median seconds of ``fn`` over ``repeats`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(n: int, c: int, d: int, eval_rows: int, repeats: int, seed: int) -> dict[str, Any]:
    """GFLOP/s of every kernel above, interleaved round by round (median per kernel)."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(2048, 2048, generator=g)
    b = torch.randn(2048, 2048, generator=g)
    a16, b16 = a.bfloat16(), b.bfloat16()
    table = (torch.randn(c + 1, d, generator=g) / d**0.5).requires_grad_()  # (C + 1, d)
    hidden = torch.randn(n, d, generator=g).requires_grad_()  # (N, d)
    targets = torch.randint(1, c + 1, (n,), generator=g)  # (N,)
    users = torch.randn(eval_rows, d, generator=g)  # (rows, d)
    scores = torch.empty(eval_rows, c)  # (rows, C), reused as the evaluator does
    items = table.detach()[1:]  # (C, d)
    ce = ChunkedCE()

    def ce_step() -> None:
        hidden.grad = table.grad = None
        ce(hidden, targets, table).backward()

    def ce_step_bf16() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            ce_step()

    kernels: dict[str, tuple[Callable[[], Any], float]] = {
        "peak_fp32": (lambda: a @ b, 2 * 2048**3),
        "peak_bf16": (lambda: a16 @ b16, 2 * 2048**3),
        "eval_scoring_fp32": (
            lambda: torch.matmul(users, items.T, out=scores),
            2 * eval_rows * c * d,
        ),
        "ce_step_fp32": (ce_step, 6 * n * c * d),
        "ce_step_bf16_autocast": (ce_step_bf16, 6 * n * c * d),
    }
    seconds: dict[str, list[float]] = {k: [] for k in kernels}
    for _ in range(repeats):  # interleaved: every kernel sees the same machine state
        for name, (fn, _flops) in kernels.items():
            seconds[name].append(timed(fn, 1))
    out = {}
    for name, (_fn, flops) in kernels.items():
        s = statistics.median(seconds[name])
        out[name] = {"seconds": s, "gflops": flops / s / 1e9, "flops": flops}
    peak = out["peak_fp32"]["gflops"]
    for name in out:
        out[name]["fraction_of_fp32_peak"] = out[name]["gflops"] / peak
    return out


def render(payload: dict[str, Any]) -> str:
    m, r, cfg = payload["machine"], payload["results"], payload["config"]
    lines = [
        "# Scoring-layer throughput against the matmul peak (one run)",
        "",
        f"C = {cfg['items']:,} items, d = {cfg['dim']}, N = {cfg['positions']:,} training positions, "
        f"{cfg['eval_rows']} evaluation rows per block; median of {cfg['repeats']} interleaved rounds, "
        f"{m['torch_threads']} torch threads. Rerun: `{m['command']}`.",
        "",
        "| kernel | GFLOP/s | of fp32 peak | ms |",
        "|---|---|---|---|",
    ]
    for name, v in r.items():
        lines.append(
            f"| {name} | {v['gflops']:.1f} | {100 * v['fraction_of_fp32_peak']:.0f}% | "
            f"{1e3 * v['seconds']:.1f} |"
        )
    lines += [
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}, commit {m['git_commit']}.",
        "",
        "FLOPs counted: matmuls only (ce step: 6·N·C·d for its three matmuls; the exp over N·C "
        "logits is extra work, not counted). bf16 numbers say whether this CPU has bf16 units: "
        "where bf16 is slower than fp32 it is emulated and seqrec keeps fp32.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--items", type=int, default=12_101, help="catalogue size C (Beauty)")
    ap.add_argument("--dim", type=int, default=64, help="hidden size d")
    ap.add_argument("--positions", type=int, default=3_584, help="training positions N per step")
    ap.add_argument("--eval-rows", type=int, default=512, help="rows per evaluation score block")
    ap.add_argument("--repeats", type=int, default=7, help="interleaved rounds (median)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default="scoring_throughput", help="results/NAME.{json,md}")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    results = measure(args.positions, args.items, args.dim, args.eval_rows, args.repeats, args.seed)
    payload = {
        "config": {k: v for k, v in vars(args).items() if k != "name"},
        "machine": machine(),
        "results": results,
    }
    js, md = write_result(args.name, payload, render(payload))
    print(render(payload))
    print(f"wrote {js} and {md}")


if __name__ == "__main__":
    main()
