"""Where scoring sampled items by a dense matmul beats gathering their rows (sampled losses).

``seqrec.losses.sampled.gather_scores`` scores M items per position either by gathering the M
item rows of each position (memory-bound: N·M·d floats read twice and scattered once) or by
scoring the whole catalogue with a matmul and picking the M columns (compute-bound: ∝ N·C·d).
It picks "dense" when C + 1 <= DENSE_RATIO · M. This script times forward + backward of both
methods, interleaved in one process (best of ``--repeats``), over catalogue-to-M ratios around
that threshold, and writes benchmarks/results/gather_vs_dense.{json,md}. Run it on an idle
machine; the figures are ratios of the two methods measured in the same run.

    python benchmarks/gather_vs_dense.py --threads 1
"""

from __future__ import annotations

import argparse
import time

import torch

from _common import machine, write_result
from seqrec.losses.sampled import DENSE_RATIO, gather_scores

# (N positions, C + 1 catalogue rows, M scored per position): ML-1M batch (128 × 200) with K = 100
# (+ the target) across catalogue sizes, and K = 50 at ML-1M's size
SHAPES = [
    (25_600, 3_417, 101),
    (25_600, 4_848, 101),
    (25_600, 6_000, 101),
    (25_600, 8_000, 101),
    (25_600, 12_102, 101),
    (25_600, 20_034, 101),
    (25_600, 3_417, 51),
]


def time_once(h: torch.Tensor, w: torch.Tensor, ids: torch.Tensor, method: str) -> float:
    h.grad = w.grad = None
    t = time.perf_counter()
    gather_scores(h, w, ids, method=method).square().sum().backward()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dim", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for n, c, m in SHAPES:
        g = torch.Generator().manual_seed(0)
        h = torch.randn(n, args.dim, generator=g, requires_grad=True)
        w = torch.randn(c, args.dim, generator=g, requires_grad=True)
        ids = torch.randint(1, c, (n, m), generator=g)
        best = {"gather": float("inf"), "dense": float("inf")}
        for _ in range(args.repeats):
            for method in best:
                best[method] = min(best[method], time_once(h, w, ids, method))
        rows.append(
            {
                "n": n,
                "catalogue_rows": c,
                "m": m,
                "c_over_m": c / m,
                "gather_s": best["gather"],
                "dense_s": best["dense"],
                "gather_over_dense": best["gather"] / best["dense"],
                "auto_picks": "dense" if c <= DENSE_RATIO * m else "gather",
            }
        )
        print(
            f"C/M = {c / m:6.1f}: gather {best['gather']:.3f} s, dense {best['dense']:.3f} s "
            f"(gather/dense {best['gather'] / best['dense']:.2f}; auto: {rows[-1]['auto_picks']})"
        )
    payload = {
        "machine": machine(),
        "dense_ratio": DENSE_RATIO,
        "threads": args.threads,
        "dim": args.dim,
        "repeats": args.repeats,
        "rows": rows,
    }
    md = [
        "# Sampled scores: gathered rows against a dense matmul",
        "",
        f"Forward + backward of `gather_scores`, best of {args.repeats}, {args.threads} "
        f"thread(s), d = {args.dim}, both methods interleaved in one process; "
        f"`auto` picks dense when C + 1 <= {DENSE_RATIO} · M.",
        "",
        "| N | C + 1 | M | C/M | gather s | dense s | gather / dense | auto picks |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        md.append(
            f"| {r['n']} | {r['catalogue_rows']} | {r['m']} | {r['c_over_m']:.1f} "
            f"| {r['gather_s']:.3f} | {r['dense_s']:.3f} | {r['gather_over_dense']:.2f} "
            f"| {r['auto_picks']} |"
        )
    md += ["", f"Command: `{payload['machine']['command']}`", ""]
    write_result("gather_vs_dense", payload, "\n".join(md))


if __name__ == "__main__":
    main()
