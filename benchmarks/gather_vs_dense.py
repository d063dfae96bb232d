"""How to score M sampled items per position fastest (the sampled losses' inner step).

``seqrec.losses.sampled.gather_scores`` has three exact methods: "sparse" (sparse products with
the matrix of sampled entries: ∝ N·M·d work, nothing of that size held), "gather" (the M item
rows of each position gathered: memory-bound, N·M·d floats read twice and scattered once) and
"dense" (the whole catalogue scored by a matmul, M columns picked: compute-bound, ∝ N·C·d).
"auto" takes "sparse" where torch can run it, else "dense" when C + 1 <= DENSE_RATIO · M, else
"gather". This script times forward + backward of the three, interleaved in one process (best
of ``--repeats``), at the shapes of the sampled losses in the studies (ML-1M, Yelp and Beauty
batches; K = 1 for BCE/BPR, 100, 500) and across catalogue-to-M ratios, and writes
benchmarks/results/gather_vs_dense[-tN].{json,md}. Run it on an idle machine; the figures are
ratios of the methods measured in the same run.

    python benchmarks/gather_vs_dense.py --threads 1
    python benchmarks/gather_vs_dense.py --threads 2
"""

from __future__ import annotations

import argparse
import time

import torch

from _common import machine, write_result
from seqrec.losses.sampled import DENSE_RATIO, gather_scores

METHODS = ("sparse", "gather", "dense")

# (N positions, C + 1 catalogue rows, M scored per position): ML-1M batch (128 × 200) with K = 100
# (+ the target) across catalogue sizes, K = 50 at ML-1M's size, Beauty (512 × 50) with K = 500,
# and BCE/BPR's one negative at ML-1M's, Beauty's and Yelp's sizes
SHAPES = [
    (25_600, 3_417, 101),
    (25_600, 4_848, 101),
    (25_600, 6_000, 101),
    (25_600, 8_000, 101),
    (25_600, 12_102, 101),
    (25_600, 20_034, 101),
    (25_600, 3_417, 51),
    (25_600, 12_102, 501),
    (25_600, 3_417, 2),
    (25_600, 12_102, 2),
    (25_600, 20_034, 2),
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
        best = dict.fromkeys(METHODS, float("inf"))
        for _ in range(args.repeats):
            for method in METHODS:
                best[method] = min(best[method], time_once(h, w, ids, method))
        fallback = "dense" if c <= DENSE_RATIO * m else "gather"
        rows.append(
            {
                "n": n,
                "catalogue_rows": c,
                "m": m,
                "c_over_m": c / m,
                **{f"{k}_s": v for k, v in best.items()},
                "fastest": min(best, key=best.__getitem__),
                "fallback_over_sparse": best[fallback] / best["sparse"],
                "auto_picks": "sparse" if m <= c else fallback,
                "fallback_picks": fallback,
            }
        )
        print(
            f"C = {c}, M = {m}: "
            + ", ".join(f"{k} {v:.3f} s" for k, v in best.items())
            + f"; auto: {rows[-1]['auto_picks']}",
            flush=True,
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
        "# Sampled scores: sparse products, gathered rows, a dense matmul",
        "",
        f"Forward + backward of `gather_scores`, best of {args.repeats}, {args.threads} "
        f"thread(s), d = {args.dim}, the three methods interleaved in one process, "
        f"{payload['machine']['cpu']}. `auto` picks sparse; without it (a torch failing "
        f"`sparse_scores_supported`), dense when C + 1 <= {DENSE_RATIO} · M, else gather: "
        "the last column is that choice's time over sparse's.",
        "",
        "| N | C + 1 | M | C/M | sparse s | gather s | dense s | fastest | old choice / sparse |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        md.append(
            f"| {r['n']} | {r['catalogue_rows']} | {r['m']} | {r['c_over_m']:.1f} "
            f"| {r['sparse_s']:.3f} | {r['gather_s']:.3f} | {r['dense_s']:.3f} "
            f"| {r['fastest']} | {r['fallback_over_sparse']:.1f}× ({r['fallback_picks']}) |"
        )
    md += ["", f"Command: `{payload['machine']['command']}`", ""]
    name = "gather_vs_dense" if args.threads == 1 else f"gather_vs_dense-t{args.threads}"
    write_result(name, payload, "\n".join(md))


if __name__ == "__main__":
    main()
