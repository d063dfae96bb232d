"""Summary numbers of a prepared dataset."""

from __future__ import annotations

from typing import Any

import numpy as np

from seqrec.data.sequences import Sequences


def dataset_stats(seqs: Sequences) -> dict[str, Any]:
    """Users, items, interactions and length statistics (JSON-friendly Python numbers).

    users = U, items = C (catalogue size), interactions = nnz, avg_length = nnz / U,
    density = nnz / (U * C), items_seen = items with at least one interaction,
    repeated_pairs = interactions whose (user, item) pair occurred earlier for that user,
    time_span (only with timestamps) = max - min timestamp.
    """
    lengths = seqs.lengths()
    U, C, nnz = seqs.n_users, seqs.n_items, seqs.n_interactions
    row = np.repeat(np.arange(U, dtype=np.int64), lengths)
    pairs = row * (C + 1) + seqs.items.astype(np.int64)
    stats: dict[str, Any] = {
        "users": int(U),
        "items": int(C),
        "interactions": int(nnz),
        "avg_length": float(nnz / U) if U else 0.0,
        "min_length": int(lengths.min()) if U else 0,
        "median_length": float(np.median(lengths)) if U else 0.0,
        "max_length": int(lengths.max()) if U else 0,
        "density": float(nnz / (U * C)) if U and C else 0.0,
        "items_seen": int(np.count_nonzero(np.bincount(seqs.items, minlength=C + 1)[1:])),
        "repeated_pairs": int(nnz - len(np.unique(pairs))),
    }
    if seqs.timestamps is not None and nnz:
        ts = np.asarray(seqs.timestamps)
        stats["time_span"] = float(ts.max() - ts.min())
    return stats
