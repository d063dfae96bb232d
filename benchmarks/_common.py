"""Shared helpers for benchmark scripts: machine facts, versions, result files."""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    import numpy as np
    import torch

    from seqrec.runs import cpu_model, source_commit

    cpu, commit = cpu_model(), source_commit() or ""
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "git_commit": commit,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gib": round(mem, 1),
        "platform": platform.platform(),
    }


def write_result(name: str, payload: dict[str, Any], markdown: str) -> tuple[Path, Path]:
    """Write results/NAME.json and results/NAME.md (atomically)."""
    from seqrec.io import atomic_write_text

    RESULTS.mkdir(parents=True, exist_ok=True)
    js, md = RESULTS / f"{name}.json", RESULTS / f"{name}.md"
    atomic_write_text(js, json.dumps(payload, indent=2) + "\n")
    atomic_write_text(md, markdown)
    return js, md
