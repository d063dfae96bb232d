"""Full-ranking metrics from tie-aware ranks: a pure functional core plus a streaming accumulator.

A ranking is described, per example, by two integers computed against the whole catalogue:

* ``greater`` -- how many candidate items score strictly higher than the target;
* ``ties`` -- how many *other* candidates score exactly the same as the target.

Ties must never flatter a model (DESIGN §2), so every metric is the **expected** value under
uniformly random tie-breaking: the target's 1-based rank ``R`` is uniform on
``{g + 1, ..., g + t + 1}`` (``g = greater``, ``t = ties``), and

* ``HR@k   = P(R <= k) = clip((k - g) / (t + 1), 0, 1)``
* ``NDCG@k = E[1{R <= k} / log2(R + 1)] = 1/(t+1) * sum_{r=g+1}^{min(g+t+1, k)} 1/log2(r + 1)``
* ``MRR@k  = E[1{R <= k} / R] = 1/(t+1) * sum_{r=g+1}^{min(g+t+1, k)} 1/r``
* ``MRR    = E[1 / R] = 1/(t+1) * (H_{g+t+1} - H_g)``  (no cutoff)

With one relevant item the ideal DCG is 1, so NDCG@k needs no normaliser. Each value costs O(1)
from float64 prefix sums ``D[n] = sum_{r<=n} 1/log2(r+1)`` and ``H[n] = sum_{r<=n} 1/r``
(harmonic numbers), grown on demand up to the largest rank seen. A scorer that gives every item
the same score over ``C`` items therefore gets exactly a random ranking's metrics, e.g.
``HR@10 = 10 / C``.

Example (a target ranked 3rd with no ties, and a target tied with 3 others at the top):

>>> m = rank_metrics([2, 0], [0, 3], ks=(1, 3))
>>> [round(float(v), 4) for v in m["ndcg@3"]]  # 1/log2(4) = 0.5; (1 + 1/log2(3) + 1/2 + 0)/4
[0.5, 0.5327]
>>> [float(v) for v in m["hr@1"]]
[0.0, 0.25]
>>> acc = MetricAccumulator(ks=(1, 3))
>>> acc.update([2, 0], [0, 3])
>>> acc.count, round(acc.compute()["hr@3"], 4)
(2, 0.875)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from seqrec.errors import ConfigError, SeqrecError

DEFAULT_KS: tuple[int, ...] = (1, 5, 10, 20)

# Prefix-sum tables, shared by every call and grown by doubling when a larger rank shows up.
# _DCG[n] = sum_{r=1}^{n} 1/log2(r+1), _HARM[n] = sum_{r=1}^{n} 1/r, both float64 with [0] = 0.
_DCG = np.zeros(1, dtype=np.float64)
_HARM = np.zeros(1, dtype=np.float64)


def _prefix_tables(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (D, H) covering ranks 0..n (inclusive), growing the cached tables if needed."""
    global _DCG, _HARM
    if len(_DCG) <= n:
        size = max(n + 1, 2 * len(_DCG), 1024)
        r = np.arange(1, size, dtype=np.float64)
        dcg = np.zeros(size, dtype=np.float64)
        harm = np.zeros(size, dtype=np.float64)
        np.cumsum(1.0 / np.log2(r + 1.0), out=dcg[1:])
        np.cumsum(1.0 / r, out=harm[1:])
        _DCG, _HARM = dcg, harm
    return _DCG, _HARM


def _as_int_array(x: Any, name: str) -> np.ndarray:
    """numpy or torch (any device) or list -> int64[n] numpy array; checks shape and sign."""
    if hasattr(x, "detach"):  # torch.Tensor without importing torch here
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise SeqrecError(f"metrics: {name} must be one-dimensional, got shape {arr.shape}")
    if (
        arr.size
        and not np.issubdtype(arr.dtype, np.integer)
        and not np.all(np.equal(np.mod(arr, 1), 0))
    ):
        raise SeqrecError(f"metrics: {name} must hold integer counts, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if arr.size and arr.min() < 0:
        raise SeqrecError(
            f"metrics: {name} must be >= 0 (got {int(arr.min())}); "
            "ties counts OTHER items with the target's score, so subtract the target itself"
        )
    return arr


def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    given = tuple(ks)
    try:
        out = tuple(int(k) for k in given)
    except (TypeError, ValueError):
        out = ()
    if not out or any(k < 1 for k in out) or any(k != kk for k, kk in zip(out, given, strict=True)):
        raise ConfigError(
            f"metric cutoffs ks must be positive integers, e.g. (1, 5, 10, 20); got {ks!r}"
        )
    return tuple(dict.fromkeys(out))  # drop duplicates, keep order


def metric_names(ks: Sequence[int] = DEFAULT_KS) -> list[str]:
    """Keys produced for ``ks``: ``hr@k`` for every k, then ``ndcg@k``, ``mrr@k``, then ``mrr``."""
    ks = _check_ks(ks)
    return [f"{m}@{k}" for m in ("hr", "ndcg", "mrr") for k in ks] + ["mrr"]


def rank_metrics(greater: Any, ties: Any, ks: Sequence[int] = DEFAULT_KS) -> dict[str, np.ndarray]:
    """Per-example expected HR@k, NDCG@k, MRR@k and MRR under random tie-breaking.

    Args:
        greater: int[n], items scoring strictly above the target (numpy, torch or list).
        ties: int[n], other items scoring exactly the target's score.
        ks: cutoffs.

    Returns:
        ``{"hr@k", "ndcg@k", "mrr@k" for k in ks, "mrr"} -> float64[n]`` (see the module
        docstring for the formulas).

    >>> m = rank_metrics([0, 4], [0, 0], ks=(5,))
    >>> m["hr@5"].tolist(), m["mrr@5"].tolist(), m["mrr"].tolist()
    ([1.0, 1.0], [1.0, 0.2], [1.0, 0.2])
    """
    ks = _check_ks(ks)
    g = _as_int_array(greater, "greater")
    t = _as_int_array(ties, "ties")
    if g.shape != t.shape:
        raise SeqrecError(f"metrics: greater and ties differ in length ({len(g)} vs {len(t)})")
    last = g + t + 1  # worst possible rank
    D, H = _prefix_tables(int(last.max()) if last.size else 0)
    inv_n = 1.0 / (t + 1).astype(np.float64)
    untied = t == 0
    # Without ties the rank is exactly g + 1: use the direct value (exact, no prefix cancellation).
    direct = {"ndcg": 1.0 / np.log2(g + 2.0), "mrr": 1.0 / (g + 1.0)}
    out: dict[str, np.ndarray] = {}
    for k in ks:
        out[f"hr@{k}"] = np.clip((k - g) * inv_n, 0.0, 1.0)
    for name, table in (("ndcg", D), ("mrr", H)):
        for k in ks:
            hi = np.minimum(last, k)  # ranks g+1..hi count; none when hi <= g
            tied = (table[np.maximum(hi, g)] - table[g]) * inv_n
            out[f"{name}@{k}"] = np.where(hi > g, np.where(untied, direct[name], tied), 0.0)
    out["mrr"] = np.where(untied, direct["mrr"], (H[last] - H[g]) * inv_n)
    return {name: out[name] for name in metric_names(ks)}


class MetricAccumulator:
    """Streaming accumulator: ``update`` with (greater, ties) blocks, ``compute`` the means.

    Stores the integer (greater, ties) pairs (16 bytes per example) and evaluates the metrics
    once in ``compute``, so the result does not depend on how examples were split into blocks.

    >>> acc = MetricAccumulator(ks=(1,))
    >>> acc.update([0, 1], [0, 0]); acc.update([0], [1])
    >>> acc.compute()["hr@1"]  # (1 + 0 + 1/2) / 3
    0.5
    """

    def __init__(self, ks: Sequence[int] = DEFAULT_KS) -> None:
        self.ks = _check_ks(ks)
        self._greater: list[np.ndarray] = []
        self._ties: list[np.ndarray] = []
        self._count = 0

    @property
    def count(self) -> int:
        """Number of examples seen so far."""
        return self._count

    def reset(self) -> None:
        self._greater, self._ties, self._count = [], [], 0

    def update(self, greater: Any, ties: Any) -> None:
        """Add a block of examples (int[b] each; numpy, torch or list)."""
        g = _as_int_array(greater, "greater")
        t = _as_int_array(ties, "ties")
        if g.shape != t.shape:
            raise SeqrecError(f"metrics: greater and ties differ in length ({len(g)} vs {len(t)})")
        self._greater.append(g.copy())
        self._ties.append(t.copy())
        self._count += len(g)

    def greater_ties(self) -> tuple[np.ndarray, np.ndarray]:
        """(greater, ties) of every example seen, int64[count] each, in update order."""
        if not self._greater:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        return np.concatenate(self._greater), np.concatenate(self._ties)

    def per_example(self) -> dict[str, np.ndarray]:
        """Per-example metric values, float64[count] per key (for significance tests)."""
        return rank_metrics(*self.greater_ties(), ks=self.ks)

    def compute(self) -> dict[str, float]:
        """Mean of every metric over the examples seen."""
        if self._count == 0:
            raise SeqrecError("metrics: no examples were added; nothing to average")
        return {name: float(v.mean()) for name, v in self.per_example().items()}
