"""Memory and time of one training step of each loss (issue 4, DESIGN §7).

One step = forward + backward of the loss w.r.t. the hidden states (N, d) and the item table
(C + 1, d), on SYNTHETIC random tensors (hidden ~ N(0, 1), items ~ N(0, 1/d), uniform random
targets): no model, no data set. Default N = 256 × 50 = 12,800 positions, d = 64, catalogue sizes
12,101 (Beauty-sized), 100,000 and 1,000,000, for

    ce-naive    F.cross_entropy on the materialised (N, C) logits
    ce          exact CE as seqrec trains it by default (impl = "fused": gradients computed
                block of rows by block of rows in the forward pass, seqrec.losses.softmax)
    ce-torch    exact CE through torch's F.linear_cross_entropy (impl = "torch")
    ce-chunked  exact CE, own item-chunked autograd function (impl = "chunked")
    rece        reduced CE (Gusak et al. 2024) with seqrec's defaults: the authors' bucket rule
                n_b = ⌊√(4 · 3 · min(C, N))⌋, 1 extra chunk, 1 round
    sce         scaled CE (Xu et al. 2024), K = 256 uniform negatives, α = 100
    bce         SASRec's BCE, K = 1 uniform negative
    rece-eE-rR[-cC]  RECE with e = E extra chunks, r = R rounds and, with -cC, n_c = C chunks
                (default: the authors' rule), e.g. rece-e3-r4 or rece-e0-r1-c4 (--losses only)

Every measurement runs in a FRESH PROCESS (this script with --single), so peak RSS is that one
loss's: ``ru_maxrss`` at the end minus ``ru_maxrss`` right after the inputs were allocated. Time
is the median over --repeats steps after one untimed warm-up step (whose time is reported as
``first_s``: torch's fused CE spends seconds on its first call). Each run is first checked against
a memory estimate and the RAM available; runs that cannot fit are reported with the estimate
instead (ce-naive at 1M items needs the 51 GB N × C logit block alone). Exact losses must agree:
the table reports the largest relative difference between ce-naive, ce and ce-chunked.
Timings are only comparable within one run of this script (ratios to ``ce`` are given).

    python benchmarks/loss_step.py                                   # full run (long)
    python benchmarks/loss_step.py --sizes 2000 --rows 1024 --name loss_step_smoke   # smoke test
    python benchmarks/loss_step.py --sizes 12101 --rows 2915 --losses ce rece rece-e3-r4 \
        rece-e0-r1-c4 --name loss_step_beauty_batch     # RECE's wider nets at a Beauty batch
"""

from __future__ import annotations

import argparse
import json
import math
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import machine, write_result

LOSSES = ("ce-naive", "ce", "ce-torch", "ce-chunked", "rece", "sce", "bce")
EXACT = ("ce-naive", "ce", "ce-torch", "ce-chunked")
RECE_VARIANT = re.compile(r"rece-e(\d+)-r(\d+)(?:-c(\d+))?")
SCE_K = 256
BCE_K = 1
F32 = 4  # bytes


def loss_config(name: str) -> Any:
    """The LossConfig of one benchmarked variant."""
    from seqrec.config import LossConfig

    if name == "ce":
        return LossConfig(name="ce")  # the default impl
    if name == "ce-torch":
        return LossConfig(name="ce", ce_impl="torch")
    if name == "ce-chunked":
        return LossConfig(name="ce", ce_impl="chunked")
    if name == "sce":
        return LossConfig(name="sce", negatives=SCE_K)
    if name == "bce":
        return LossConfig(name="bce", negatives=BCE_K)
    variant = RECE_VARIANT.fullmatch(name)
    if variant:
        e, r, chunks = variant.groups()
        return LossConfig(
            name="rece",
            rece_extra_chunks=int(e),
            rece_rounds=int(r),
            rece_chunks=int(chunks) if chunks else None,
        )
    return LossConfig(name=name)


def loss_name(text: str) -> str:
    """argparse type of --losses: a name of LOSSES or a RECE variant."""
    if text in LOSSES or RECE_VARIANT.fullmatch(text):
        return text
    raise argparse.ArgumentTypeError(
        f"unknown loss {text!r}: choose from {', '.join(LOSSES)} or rece-eE-rR[-cC]"
    )


def estimate_bytes(name: str, n: int, c: int, d: int) -> int:
    """Rough peak extra memory of one step: loss-specific blocks plus the dense (C + 1, d)
    gradient and optimizer-free copies of the item table that every loss makes."""
    from seqrec.losses.rece import default_buckets
    from seqrec.losses.softmax import fused_rows

    table = 3 * (c + 1) * d * F32  # gradient, gathered/cast copies
    if name == "ce-naive":
        return 3 * n * c * F32 + table  # logits, softmax, their gradient
    if name == "ce":  # one (rows, C) block of probabilities, gradients held from the forward
        return 2 * fused_rows(c) * c * F32 + 2 * n * d * F32 + table
    if name == "ce-torch":
        return 3 * 256 * c * F32 + 2 * n * d * F32 + table  # 256-row blocks of the logits
    if name == "ce-chunked":
        return 2 * n * min(2048, c) * F32 + table  # one (N, chunk) block each way
    if name == "rece" or RECE_VARIANT.fullmatch(name):
        cfg = loss_config(name)
        e, r = cfg.rece_extra_chunks, cfg.rece_rounds
        n_c = min(cfg.rece_chunks or default_buckets(c, n, e), n, c)
        width = (2 * e + 1) * math.ceil(c / n_c) * r  # candidate slots per row, all rounds
        return 6 * n * width * F32 + 2 * table  # logits, exp, count, masks; gathered items
    k = SCE_K if name == "sce" else BCE_K
    entries = n * (k + 1)  # sampled scores, by sparse products (seqrec.losses.sampled)
    # scores and their gradients, the CSR columns; per item-gradient chunk the sort's keys and order
    return entries * (4 * F32 + 8) + min(entries, 1 << 20) * (2 * 4 + 2 * 8) + table


def available_bytes() -> int:
    """MemAvailable from /proc/meminfo (bytes)."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def single(args: argparse.Namespace) -> dict[str, Any]:
    """Run one loss at one size in this process; returns its measurements."""
    import torch

    from seqrec.losses import build_loss

    if args.threads:
        torch.set_num_threads(args.threads)
    n, c, d = args.rows, args.items, args.dim
    g = torch.Generator().manual_seed(args.seed)
    hidden = torch.randn(n, d, generator=g)  # (N, d)
    table = torch.randn(c + 1, d, generator=g) / math.sqrt(d)  # (C + 1, d)
    targets = torch.randint(1, c + 1, (n,), generator=g)  # (N,)
    loss_fn = build_loss(loss_config(args.loss), c)
    base_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times, values = [], []
    for step in range(args.repeats + 1):  # step 0 warms up (lazy init, allocator) untimed
        h = hidden.clone().requires_grad_()
        w = table.clone().requires_grad_()
        sampler = torch.Generator().manual_seed(args.seed + 1)  # same negatives every step
        t0 = time.perf_counter()
        value = loss_fn(h, targets, w, generator=sampler)
        value.backward()
        times.append(time.perf_counter() - t0)
        values.append(float(value))
        if step == 0:
            grad_norm = (float(h.grad.norm()), float(w.grad.norm()))
        del h, w, value
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "loss": args.loss,
        "items": c,
        "status": "ok",
        "median_s": statistics.median(times[1:]),
        "first_s": times[0],
        "times_s": times[1:],
        "value": values[0],
        "grad_norms": grad_norm,
        "peak_extra_mib": (peak_kib - base_kib) / 1024,
        "baseline_mib": base_kib / 1024,
        "threads": torch.get_num_threads(),
    }


def measure(args: argparse.Namespace, name: str, c: int) -> dict[str, Any]:
    """One fresh process for ``name`` at C = c, unless the memory estimate forbids it."""
    need = estimate_bytes(name, args.rows, c, args.dim)
    base = {"loss": name, "items": c, "estimate_mib": need / 2**20}
    avail = available_bytes()
    if need > args.memory_fraction * avail:
        verdict = "cannot run" if need > machine_bytes() else "skipped"
        why = f"{verdict}: needs ~{need / 2**30:.1f} GiB, {avail / 2**30:.1f} GiB available"
        if name == "ce-naive":
            why += f" (the N × C logits alone: {args.rows * c * F32 / 1e9:.1f} GB)"
        return {**base, "status": why}
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--single",
        "--loss",
        name,
        "--items",
        str(c),
        "--rows",
        str(args.rows),
        "--dim",
        str(args.dim),
        "--repeats",
        str(args.repeats),
        "--seed",
        str(args.seed),
    ]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=args.timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return {**base, "status": f"timeout after {args.timeout} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {**base, "status": f"failed (exit {proc.returncode}): {tail}"}
    return {**base, **json.loads(lines[-1][len("RESULT ") :])}


def machine_bytes() -> int:
    import os

    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def agreement(rows: list[dict[str, Any]]) -> float | None:
    """Largest relative difference of the loss value between the exact CE variants that ran."""
    vals = [r["value"] for r in rows if r["loss"] in EXACT and r["status"] == "ok"]
    if len(vals) < 2:
        return None
    ref = vals[0]
    return max(abs(v - ref) / max(abs(ref), 1e-12) for v in vals)


def render(payload: dict[str, Any]) -> str:
    s = payload["settings"]
    m = payload["machine"]
    lines = [
        "# One training step per loss: time and peak memory",
        "",
        f"Synthetic random tensors (not a data set): N = {s['rows']} positions, d = {s['dim']}, "
        f"forward + backward w.r.t. hidden states and item table; each cell is a fresh process; "
        f"time = median of {s['repeats']} steps after a warm-up step; memory = peak RSS minus the RSS after the inputs "
        f"were allocated. sce: K = {SCE_K}, bce: K = {BCE_K}, rece: the authors' bucket rule, "
        "1 extra chunk, 1 round. `ce` is seqrec's default exact CE (row-fused), `ce-torch` "
        "torch's F.linear_cross_entropy. Ratios are to `ce` at the same size, in this run.",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}. Command: `{m['command']}`",
        "",
    ]
    for c in s["sizes"]:
        rows = [r for r in payload["results"] if r["items"] == c]
        ce = next((r for r in rows if r["loss"] == "ce" and r["status"] == "ok"), None)
        lines += [
            f"## C = {c:,} items",
            "",
            "| loss | time (s) | × ce | first step (s) | peak extra (MiB) | estimate (MiB) "
            "| loss value | status |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            if r["status"] == "ok":
                ratio = f"{r['median_s'] / ce['median_s']:.2f}" if ce else "-"
                lines.append(
                    f"| {r['loss']} | {r['median_s']:.3f} | {ratio} | {r['first_s']:.3f} | "
                    f"{r['peak_extra_mib']:.0f} | "
                    f"{r['estimate_mib']:.0f} | {r['value']:.5f} | ok |"
                )
            else:
                lines.append(
                    f"| {r['loss']} | - | - | - | - | {r['estimate_mib']:.0f} | - | {r['status']} |"
                )
        agree = agreement(rows)
        if agree is not None:
            lines += ["", f"Exact CE variants agree to a relative {agree:.1e} in value."]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sizes", type=int, nargs="+", default=[12101, 100_000, 1_000_000])
    ap.add_argument("--rows", type=int, default=256 * 50, help="positions N per step")
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument(
        "--losses",
        nargs="+",
        default=list(LOSSES),
        type=loss_name,
        help=f"losses to measure: {', '.join(LOSSES)}, or RECE variants rece-eE-rR[-cC]",
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds per measurement")
    ap.add_argument(
        "--memory-fraction",
        type=float,
        default=0.8,
        help="run only if the estimate is below this fraction of the available RAM",
    )
    ap.add_argument("--name", default="loss_step", help="results/NAME.json and .md")
    ap.add_argument("--single", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--loss", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--items", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.repeats < 1 or args.rows < 1 or args.dim < 1 or min(args.sizes) < 2:
        ap.error("--repeats, --rows and --dim must be >= 1 and every size >= 2")

    if args.single:
        print("RESULT " + json.dumps(single(args)), flush=True)
        return
    results = []
    for c in args.sizes:
        for name in args.losses:
            r = measure(args, name, c)
            results.append(r)
            shown = (
                f"{r['median_s']:.3f} s, +{r['peak_extra_mib']:.0f} MiB" if "median_s" in r else ""
            )
            print(f"C={c:>9,} {name:<11} {shown or r['status']}", flush=True)
    payload = {
        "settings": {
            "sizes": args.sizes,
            "rows": args.rows,
            "dim": args.dim,
            "repeats": args.repeats,
            "seed": args.seed,
            "sce_negatives": SCE_K,
            "bce_negatives": BCE_K,
            "synthetic": True,
        },
        "results": results,
        "machine": machine(),
    }
    js, md = write_result(args.name, payload, render(payload))
    print(f"wrote {js} and {md}")


if __name__ == "__main__":
    main()
