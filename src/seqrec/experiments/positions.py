"""Per-position evaluation: how well a model predicts each item of a user's sequence (Li et al.
2023, Fig. 3).

For a user with full sequence ``s_1..s_n`` (train items, then the validation and the test item
under leave-one-out) and an offset ``k = 1..window`` counted from the end, the example
predicts ``s_{n-k+1}`` from ``s_1..s_{n-k}``:

* ``k = 1`` is the test example and ``k = 2`` the validation example of the leave-one-out
  split (the metrics equal :func:`seqrec.evaluate.evaluate` on ``split.test`` / ``split.valid``,
  tested);
* ``k >= 3`` are positions of the *training* sequence: targets the model was trained on.

Every example is ranked against the whole catalogue by :func:`seqrec.evaluate.evaluate` (same
tie handling and history masking); the metric at offset ``k`` is the mean over the users whose
sequence has at least ``k + 1`` items (so that the target has a history):

    NDCG@10(k) = (1 / |U_k|) * sum_{u in U_k} NDCG@10(rank of s^u_{n_u - k + 1} given s^u_{<})

Cost: one evaluation pass per offset, each over at most the evaluated users; memory is bounded
by one offset's prefixes (never users x window histories at once).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from seqrec import runs
from seqrec.data.sequences import EvalSet, Sequences
from seqrec.data.split import prefixes
from seqrec.errors import SeqrecError
from seqrec.metrics import DEFAULT_KS

DEFAULT_WINDOW = 50


@dataclass(frozen=True)
class PositionMetrics:
    """Metrics at each offset from the end of the sequences.

    offsets: int[m], 1 = the last item (test), 2 = the one before (validation), ...
    n: int[m], examples (users) at each offset.
    metrics: name -> float[m] (``ndcg@10``, ``hr@10``, ...).
    """

    offsets: np.ndarray
    n: np.ndarray
    metrics: dict[str, np.ndarray]

    def to_json(self) -> dict[str, Any]:
        return {
            "align": "end",
            "note": "offset 1 = last item of each sequence (leave-one-out: test), 2 = validation, "
            ">= 3 = training targets",
            "offsets": [int(k) for k in self.offsets],
            "n": [int(v) for v in self.n],
            "metrics": {k: [float(x) for x in v] for k, v in self.metrics.items()},
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> PositionMetrics:
        return cls(
            offsets=np.asarray(raw["offsets"], dtype=np.int64),
            n=np.asarray(raw["n"], dtype=np.int64),
            metrics={k: np.asarray(v, dtype=float) for k, v in raw["metrics"].items()},
        )


def offset_examples(seqs: Sequences, users: np.ndarray, offset: int) -> EvalSet:
    """The examples at ``offset`` (1 = last item) for the ``users`` long enough to have one.

    Example ``j`` predicts item ``n_u - offset`` (0-based) of user ``u`` from every item before it.
    """
    if offset < 1:
        raise SeqrecError(f"offset counts from the end and starts at 1, got {offset}")
    users = np.asarray(users, dtype=np.int64)
    lengths = seqs.lengths()[users]
    keep = lengths >= offset + 1  # at least one history item before the target
    users, target_pos = users[keep], lengths[keep] - offset
    return EvalSet(
        inputs=prefixes(seqs, users, target_pos),
        targets=seqs.items[seqs.offsets[users] + target_pos].astype(np.int64),
        users=users,
    )


def per_position_metrics(
    model: Any,
    seqs: Sequences,
    users: np.ndarray,
    *,
    maxlen: int,
    window: int = DEFAULT_WINDOW,
    ks: Sequence[int] = DEFAULT_KS,
    history: str = "mask",
    batch_size: int = 512,
) -> PositionMetrics:
    """Full-ranking metrics at offsets ``1..window`` from the end of each user's sequence.

    Args:
        model: a trained :class:`~seqrec.models.base.SequentialRecommender`.
        seqs: the users' full sequences (``PreparedDataset.sequences``).
        users: the rows of ``seqs`` to evaluate (e.g. ``split.test.users``).
        maxlen, ks, history, batch_size: as :func:`seqrec.evaluate.evaluate`.
        window: how many offsets; offsets no user reaches are left out.
    """
    from seqrec.evaluate import evaluate

    if window < 1:
        raise SeqrecError(f"window must be >= 1, got {window}")
    offsets, counts, values = [], [], []
    for k in range(1, window + 1):
        examples = offset_examples(seqs, users, k)
        if len(examples) == 0:
            break  # longer offsets have even fewer users
        res = evaluate(
            model,
            examples,
            maxlen=maxlen,
            ks=ks,
            history=history,
            batch_size=batch_size,
        )
        offsets.append(k)
        counts.append(res.n_examples)
        values.append(res.metrics)
    names = list(values[0]) if values else []
    return PositionMetrics(
        offsets=np.asarray(offsets, dtype=np.int64),
        n=np.asarray(counts, dtype=np.int64),
        metrics={m: np.asarray([v[m] for v in values], dtype=float) for m in names},
    )


def run_positions(run_dir: str | Path, *, window: int = DEFAULT_WINDOW) -> PositionMetrics:
    """Per-position metrics of a finished run's best checkpoint, saved to ``positions.json``.

    Uses the run's own dataset, split, maxlen and evaluation settings; users are those of the
    run's test set.
    """
    from seqrec.data.datasets import load_dataset
    from seqrec.data.split import make_split

    run_dir = Path(run_dir)
    cfg = runs.load_run_config(run_dir)
    model, _ = runs.load_checkpoint(run_dir / runs.BEST)
    prepared = load_dataset(cfg.data)
    split = make_split(prepared.sequences, cfg.data)
    result = per_position_metrics(
        model,
        prepared.sequences,
        split.test.users,
        maxlen=cfg.model.maxlen,
        window=window,
        ks=cfg.eval.ks,
        history=cfg.eval.history,
        batch_size=cfg.eval.batch_size,
    )
    runs.write_json(run_dir / runs.POSITIONS, {"window": window, **result.to_json()})
    return result


def load_positions(run_dir: str | Path) -> PositionMetrics | None:
    """The saved per-position metrics of a run, or None if it has none (or they are unreadable)."""
    path = Path(run_dir) / runs.POSITIONS
    if not path.is_file():
        return None
    try:
        return PositionMetrics.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


__all__ = [
    "PositionMetrics",
    "load_positions",
    "offset_examples",
    "per_position_metrics",
    "run_positions",
]
