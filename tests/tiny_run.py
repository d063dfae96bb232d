"""A tiny trained run with raw string ids, shared by the recommend and serve tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from seqrec.config import RunConfig, merge, validate
from seqrec.data.synthetic import generate
from seqrec.train import fit

MAXLEN = 10


def train_tiny_run(root: Path) -> Path:
    """A 1-epoch SASRec on a 300-user, 60-item synthetic log whose raw ids are 'sku-<7i+3>'."""
    seqs = generate(300, 60, seed=1)
    users = np.repeat(np.arange(seqs.n_users), seqs.lengths())
    lines = [f"user{u}\tsku-{7 * int(i) + 3}" for u, i in zip(users, seqs.items, strict=True)]
    (root / "log.tsv").write_text("\n".join(lines) + "\n")
    cfg = validate(
        merge(
            RunConfig(),
            {
                "data": {
                    "dataset": str(root / "log.tsv"), "format": "log", "sep": "\t",
                    "user_col": "0", "item_col": "1",
                },
                "model": {"dim": 16, "layers": 1, "maxlen": MAXLEN, "dropout": 0.1},
                "train": {"epochs": 1, "batch_size": 64, "seed": 3, "threads": 1},
                "out_dir": str(root / "runs"),
                "name": "tiny",
            },
        )
    )  # fmt: skip
    return fit(cfg, quiet=True).run_dir
