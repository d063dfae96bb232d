"""Shared machinery of the sampled losses: draw K negatives, score only the K + 1 rows needed.

A sampled loss defines ``row_loss(pos (N,), neg (N, K), negatives (N, K)) -> (N,)``; this base
class validates inputs, draws (or accepts injected) negatives, gathers scores and takes the mean.
No (N, C) logit matrix is ever built.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from seqrec.errors import ConfigError, DataError
from seqrec.losses.base import History, SequenceLoss
from seqrec.losses.checks import check_inputs
from seqrec.losses.samplers import (
    POOLS,
    popularity_cdf,
    popularity_probs,
    sample_negatives,
    sample_popular,
    sample_shared,
)

#: pools a sampled loss accepts: the config pools plus "popularity" and "shared" (phase 2)
SAMPLER_POOLS = (*POOLS, "popularity", "shared")


#: elements of the (rows, M, d) gathered block per chunk in :func:`gather_scores` (16 MiB fp32)
GATHER_BLOCK = 1 << 22


class _GatherScores(torch.autograd.Function):
    """scores[i, m] = hidden[i] · item_table[ids[i, m]], row-chunked in both passes."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        hidden: Tensor,
        item_table: Tensor,
        ids: Tensor,
        rows: int,
    ) -> Tensor:
        n, m = ids.shape
        out = hidden.new_empty(n, m)  # (N, M)
        for s in range(0, n, rows):
            w = item_table[ids[s : s + rows]]  # (r, M, d)
            torch.bmm(w, hidden[s : s + rows].unsqueeze(2), out=out[s : s + rows].unsqueeze(2))
        ctx.save_for_backward(hidden, item_table, ids)
        ctx.rows = rows
        return out

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad: Tensor
    ) -> tuple[Tensor | None, Tensor | None, None, None]:
        hidden, item_table, ids = ctx.saved_tensors
        rows, d = ctx.rows, hidden.shape[1]
        grad_h = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None  # (N, d)
        grad_t = torch.zeros_like(item_table) if ctx.needs_input_grad[1] else None  # (C + 1, d)
        grad = grad.contiguous()
        for s in range(0, ids.shape[0], rows):
            g = grad[s : s + rows]  # (r, M)
            idx = ids[s : s + rows]  # (r, M)
            if grad_h is not None:
                w = item_table[idx]  # (r, M, d)
                torch.bmm(g.unsqueeze(1), w, out=grad_h[s : s + rows].unsqueeze(1))
            if grad_t is not None:
                contrib = g.unsqueeze(2) * hidden[s : s + rows].unsqueeze(1)  # (r, M, d)
                grad_t.index_add_(0, idx.reshape(-1), contrib.reshape(-1, d))
        return grad_h, grad_t, None, None


#: entries (position, scored item) per chunk of the item-table gradient in :class:`_SparseGatherScores`
SPARSE_BLOCK = 1 << 20


def _csr(crow: Tensor, col: Tensor, values: Tensor, shape: tuple[int, int]) -> Tensor:
    """A CSR matrix whose rows may hold repeated and unsorted columns (see
    :func:`sparse_scores_supported`), without torch's one-time "beta" warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=False)


def _rows_csr(ids: Tensor, values: Tensor, n_cols: int) -> Tensor:
    """(N, n_cols) CSR matrix holding values[i, m] at column ids[i, m]: M entries in every row,
    in the order of ``ids``, repeated columns kept (a product sums them, as a gather would)."""
    n, m = ids.shape
    crow = torch.arange(0, n * m + 1, m, dtype=ids.dtype, device=ids.device)  # (N + 1,)
    return _csr(crow, ids.reshape(-1), values.reshape(-1), (n, n_cols))


@functools.cache
def sparse_scores_supported() -> bool:
    """Whether this torch computes :class:`_SparseGatherScores` exactly, checked once.

    Its sparse matrices are not canonical CSR: a row's columns are the sampled ids as drawn,
    unsorted and possibly repeated (torch's invariant checks would refuse them, so they are
    off). That is right only because ``sampled_addmm`` fills each entry on its own and a CSR
    product sums every entry of a row, which torch's CPU kernels do; a torch whose kernels
    assumed sorted, distinct columns would give wrong numbers silently. So the first call
    compares values and both gradients with the plain gather on a small case with repeats and
    unsorted ids (float64), and :func:`gather_scores` falls back to "dense" or "gather" if they
    differ. The check runs with gradients on, whatever the caller's mode (a first call from
    evaluation under ``torch.no_grad`` must not read as "unsupported" for the whole process).
    """
    with torch.inference_mode(False), torch.enable_grad():
        return _sparse_scores_agree()


def _sparse_scores_agree() -> bool:
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    table = torch.randn(7, 3, generator=g, dtype=torch.float64, requires_grad=True)
    ids = torch.tensor([[6, 2, 2, 0], [1, 1, 1, 1], [5, 3, 6, 3], [0, 6, 4, 2], [3, 3, 5, 1]])
    weights = torch.randn(5, 4, generator=g, dtype=torch.float64)
    try:
        ref = (table[ids] * hidden[:, None]).sum(-1)  # (N, M)
        want = (ref, *torch.autograd.grad((ref * weights).sum(), (hidden, table)))
        got = _SparseGatherScores.apply(hidden, table, ids)
        have = (got, *torch.autograd.grad((got * weights).sum(), (hidden, table)))
        return all(
            torch.allclose(a, b, rtol=1e-12, atol=1e-12) for a, b in zip(have, want, strict=True)
        )
    except (RuntimeError, NotImplementedError):  # kernels missing on this build
        return False


class _SparseGatherScores(torch.autograd.Function):
    """scores[i, m] = hidden[i] · item_table[ids[i, m]] as sparse products, no gathered block.

    With S the (N, C + 1) sparse matrix that has M entries per row, at columns ids[i]:
    forward is the sampled product S ⊙ (H Wᵀ) (``torch.sparse.sampled_addmm``: one d-long dot
    per entry); backward is dL/dH = G W and dL/dW = Gᵀ H with G = S carrying the output's
    gradient, the second from Gᵀ built by sorting the entries by item, in chunks of
    SPARSE_BLOCK entries. Work ∝ N·M·d, memory ∝ N·M; no (N, M, d) or (N, C) block is held.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, hidden: Tensor, item_table: Tensor, ids: Tensor
    ) -> Tensor:
        n, m = ids.shape
        pattern = _rows_csr(ids, hidden.new_zeros(n, m), item_table.shape[0])  # (N, C + 1)
        out = torch.sparse.sampled_addmm(pattern, hidden, item_table.T, beta=0.0)
        ctx.save_for_backward(hidden, item_table, ids)
        return out.values().view(n, m)  # (N, M)

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad: Tensor
    ) -> tuple[Tensor | None, Tensor | None, None]:
        hidden, item_table, ids = ctx.saved_tensors
        n, m = ids.shape
        grad = grad.contiguous()  # (N, M)
        grad_h = grad_t = None
        if ctx.needs_input_grad[0]:
            grad_h = _rows_csr(ids, grad, item_table.shape[0]) @ item_table  # (N, d)
        if ctx.needs_input_grad[1]:
            grad_t = torch.zeros_like(item_table)  # (C + 1, d)
            rows = max(1, SPARSE_BLOCK // m)
            # int32 keys sort ~4x faster than int64 (and every catalogue here fits in them)
            key = torch.int32 if item_table.shape[0] <= torch.iinfo(torch.int32).max else ids.dtype
            for s in range(0, n, rows):
                flat = ids[s : s + rows].reshape(-1)  # (r·M,) the chunk's entries
                # stable: each item's entries stay in row order (a fixed summation order)
                item, order = torch.sort(flat.to(key), stable=True)
                items, counts = torch.unique_consecutive(item, return_counts=True)  # (U,)
                crow = torch.zeros(len(items) + 1, dtype=torch.int64, device=ids.device)
                torch.cumsum(counts, 0, out=crow[1:])
                g_t = _csr(
                    crow,
                    order // m,
                    grad[s : s + rows].reshape(-1)[order],
                    (len(items), len(flat) // m),
                )
                grad_t.index_add_(0, items.long(), g_t @ hidden[s : s + rows])  # (U, d) rows
        return grad_h, grad_t, None


#: Where "sparse" cannot run: above this many catalogue rows per scored column (C / M),
#: :func:`gather_scores` gathers the M item rows of each position; below it, it scores the whole
#: catalogue with a matmul and picks the M columns. Measured on Beauty shapes (N = 3,584,
#: C = 12,101, M = 501, d = 64, one core): forward + backward 1.6-2.3 s gathered vs 0.5-0.7 s
#: dense; the gather is memory-bound (N·M·d floats read twice and scattered once) where the
#: matmul is compute-bound. On ML-1M shapes (N = 25,600, M = 101, d = 64, one thread, idle Intel
#: Xeon, before "sparse" existed; benchmarks/gather_vs_dense.py) gathered / dense: C / M = 34
#: (ML-1M, K = 100) 1.33 s / 0.83 s, 48: 1.33 / 1.00, 59: 1.46 / 1.29, 79: 1.49 / 1.59, 198:
#: 1.61 / 4.74; M = 51 at C / M = 67: 0.69 / 0.82. Hence 48.
DENSE_RATIO = 48


class _DenseGatherScores(torch.autograd.Function):
    """scores[i, m] = (hidden @ item_tableᵀ)[i, ids[i, m]], the logits in row chunks.

    Forward: each chunk's (r, C + 1) logits, keep the M picked columns. Backward: the chunk's
    gradient scattered into a dense (r, C + 1) block G, then dL/dh = G·W and dL/dW += Gᵀ·h (two
    matmuls). Memory: one (r, C + 1) block, r·(C + 1) <= GATHER_BLOCK."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        hidden: Tensor,
        item_table: Tensor,
        ids: Tensor,
        rows: int,
    ) -> Tensor:
        n = ids.shape[0]
        out = hidden.new_empty(ids.shape)  # (N, M)
        for s in range(0, n, rows):
            logits = hidden[s : s + rows] @ item_table.T  # (r, C + 1)
            torch.gather(logits, 1, ids[s : s + rows], out=out[s : s + rows])
        ctx.save_for_backward(hidden, item_table, ids)
        ctx.rows = rows
        return out

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad: Tensor
    ) -> tuple[Tensor | None, Tensor | None, None, None]:
        hidden, item_table, ids = ctx.saved_tensors
        rows = ctx.rows
        grad_h = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None  # (N, d)
        grad_t = torch.zeros_like(item_table) if ctx.needs_input_grad[1] else None  # (C + 1, d)
        grad = grad.contiguous()
        for s in range(0, ids.shape[0], rows):
            idx, g = ids[s : s + rows], grad[s : s + rows]  # (r, M)
            dense = g.new_zeros(idx.shape[0], item_table.shape[0])  # (r, C + 1)
            dense.scatter_add_(1, idx, g)  # repeated ids add up, as in the gathered path
            if grad_h is not None:
                torch.mm(dense, item_table, out=grad_h[s : s + rows])
            if grad_t is not None:
                grad_t.addmm_(dense.T, hidden[s : s + rows])
        return grad_h, grad_t, None, None


#: the exact ways :func:`gather_scores` can score M items per position
GATHER_METHODS = ("auto", "sparse", "gather", "dense")


def gather_scores(
    hidden: Tensor, item_table: Tensor, ids: Tensor, *, method: str = "auto"
) -> Tensor:
    """(N, M) scores of the M items ``ids[i]`` for each row: ``hidden[i] · item_table[ids[i, m]]``.

    Equal (value and gradient) to ``(item_table[ids] * hidden[:, None]).sum(-1)``, computed
    without holding big blocks, by one of three exact methods:

    - "sparse": sparse products with the (N, C + 1) matrix of the sampled entries
      (:class:`_SparseGatherScores`): work ∝ N·M·d and nothing of size N·M·d held;
    - "gather": the (N, M, d) gathered block is never held whole: rows are processed in chunks
      of ~GATHER_BLOCK elements in forward and recomputed in backward (at N = 25,600 positions
      and K = 500 negatives the whole block would be 3.3 GB);
    - "dense": the catalogue's logits in row chunks of ~GATHER_BLOCK elements, M columns picked
      (three matmuls instead of memory-bound gathers; pays when M is a sizeable share of C).

    "auto" picks "sparse", the fastest at every measured shape (benchmarks/gather_vs_dense.py),
    unless M > C + 1 or this torch fails :func:`sparse_scores_supported`; then "dense" when
    C + 1 <= DENSE_RATIO · M, else "gather". "sparse" asked for where it cannot run does the same.
    """
    if method not in GATHER_METHODS:
        raise ConfigError(
            f"gather_scores: method must be one of {', '.join(GATHER_METHODS)}, got {method!r}"
        )
    n, m = ids.shape
    if method in ("auto", "sparse"):
        if m <= item_table.shape[0] and sparse_scores_supported():
            return _SparseGatherScores.apply(hidden, item_table, ids.contiguous())
        method = "auto"  # torch's sampled_addmm fails on rows with more entries than columns
    if method == "dense" or (method == "auto" and item_table.shape[0] <= DENSE_RATIO * m):
        rows = max(1, GATHER_BLOCK // item_table.shape[0])
        return _DenseGatherScores.apply(hidden, item_table, ids.contiguous(), rows)
    rows = max(1, GATHER_BLOCK // max(1, m * hidden.shape[1]))
    if rows >= n:  # small: plain autograd is as lean and simpler
        return torch.bmm(item_table[ids], hidden.unsqueeze(2)).squeeze(2)
    return _GatherScores.apply(hidden, item_table, ids.contiguous(), rows)


def sampled_scores(
    hidden: Tensor, targets: Tensor, negatives: Tensor, item_table: Tensor
) -> tuple[Tensor, Tensor]:
    """Scores of the targets and the negatives only.

    hidden: (N, d); targets: (N,); negatives: (N, K); item_table: (C + 1, d).
    Returns s⁺ (N,) and s⁻ (N, K). Shared negatives (an expanded (1, K) draw, row stride 0) are
    scored with one (N, d)·(d, K) matmul instead of a per-row gather.
    """
    if negatives.shape[0] > 1 and negatives.stride(0) == 0:
        pos = (hidden * item_table[targets]).sum(-1)  # (N,)
        neg = hidden @ item_table[negatives[0]].T  # (N, K)
        return pos, neg
    ids = torch.cat([targets.unsqueeze(1), negatives], dim=1)  # (N, 1 + K)
    scores = gather_scores(hidden, item_table, ids)  # (N, 1 + K)
    return scores[:, 0], scores[:, 1:]


class SampledLoss(SequenceLoss):
    """Base of losses on s⁺ and K sampled negative scores s⁻.

    Args:
        n_items: catalogue size C.
        negatives: K negatives per position.
        pool: "all" | "not-target" | "not-history" | "popularity" | "shared" (see samplers).
        item_counts: int[C + 1] training counts by item id, needed by the "popularity" pool.
        popularity_power: exponent on counts for the "popularity" pool (word2vec uses 0.75).
    """

    def __init__(
        self,
        n_items: int,
        *,
        negatives: int = 1,
        pool: str = "all",
        item_counts: np.ndarray | None = None,
        popularity_power: float = 1.0,
    ) -> None:
        super().__init__()
        if n_items < 1:
            raise ConfigError(f"a sampled loss needs at least one item, got n_items={n_items}")
        if negatives < 1:
            raise ConfigError(f"loss.negatives must be >= 1, got {negatives}")
        if pool not in SAMPLER_POOLS:
            raise ConfigError(
                f"unknown negative pool '{pool}'; choose one of {', '.join(SAMPLER_POOLS)}"
            )
        self.n_items = n_items
        self.negatives = negatives
        self.pool = pool
        self.popularity_power = popularity_power
        self.cdf: Tensor | None = None
        if pool == "popularity":
            if item_counts is None:
                raise ConfigError(
                    "the 'popularity' negative pool needs item_counts (training counts per item)"
                )
            if len(item_counts) != n_items + 1:
                raise ConfigError(
                    f"item_counts must have C + 1 = {n_items + 1} entries, got {len(item_counts)}"
                )
            self.cdf = popularity_cdf(item_counts, popularity_power)

    #: loss-specific constructor keywords read from the LossConfig:
    #: keyword -> (LossConfig field, default used until the field exists)
    config_fields: ClassVar[dict[str, tuple[str, Any]]] = {}

    @classmethod
    def config_settings(cls) -> frozenset[str]:
        """negatives, pool, popularity_power and this loss's ``config_fields``."""
        return frozenset(
            {"negatives", "pool", "popularity_power", *(f for f, _ in cls.config_fields.values())}
        )

    @classmethod
    def from_config(
        cls, cfg: Any, n_items: int, *, item_counts: np.ndarray | None = None
    ) -> SampledLoss:
        """Build from a LossConfig: name, negatives, pool, plus this loss's ``config_fields``."""
        extra = {kw: getattr(cfg, f, default) for kw, (f, default) in cls.config_fields.items()}
        return cls(
            n_items,
            negatives=cfg.negatives,
            pool=cfg.pool,
            item_counts=item_counts,
            popularity_power=getattr(cfg, "popularity_power", 1.0),
            **extra,
        )

    def proposal(self) -> Tensor:
        """float64[C] the probability q(j) of drawing item j + 1 under this loss's pool.

        "all" and "shared": 1/C; "popularity": count^power / Σ count^power; "not-target":
        1/(C - 1), the probability of every item that can be drawn (the target never is).
        "not-history" and "in-batch" have per-row proposals (they depend on the row's history
        or on the batch) and raise ConfigError.
        """
        if self.cdf is not None:
            return popularity_probs(self.cdf)
        if self.pool in ("all", "shared"):
            return torch.full((self.n_items,), 1.0 / self.n_items, dtype=torch.float64)
        if self.pool == "not-target":
            if self.n_items < 2:
                raise ConfigError("the 'not-target' pool needs at least 2 items")
            return torch.full((self.n_items,), 1.0 / (self.n_items - 1), dtype=torch.float64)
        raise ConfigError(
            f"the '{self.pool}' negative pool has no per-item proposal in closed form (it depends "
            "on each row's history or batch); use pool all, not-target, popularity or shared"
        )

    def sample(
        self,
        targets: Tensor,
        *,
        history: History | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """(N, K) negative ids in 1..C from this loss's pool."""
        n = targets.shape[0]
        if self.pool == "popularity":
            assert self.cdf is not None
            return sample_popular(n, self.negatives, self.cdf, generator=generator)
        if self.pool == "shared":
            return sample_shared(n, self.n_items, self.negatives, generator=generator)
        return sample_negatives(
            targets,
            self.n_items,
            self.negatives,
            pool=self.pool,
            history=history,
            generator=generator,
        )

    def row_loss(self, pos: Tensor, neg: Tensor, negatives: Tensor) -> Tensor:
        """Per-position loss (N,) from s⁺ (N,), s⁻ (N, K) and the negative ids (N, K)."""
        raise NotImplementedError

    def forward(
        self,
        hidden: Tensor,
        targets: Tensor,
        item_table: Tensor,
        *,
        history: History | None = None,
        generator: torch.Generator | None = None,
        negatives: Tensor | None = None,
    ) -> Tensor:
        """Mean sampled loss; ``negatives`` (N, K) ids in 1..C, if given, replace the sampler."""
        check_inputs(hidden, targets, item_table)
        if item_table.shape[0] - 1 != self.n_items:
            raise DataError(
                f"the item table has {item_table.shape[0] - 1} items but the loss was built for "
                f"{self.n_items}: build the loss with the model's catalogue size"
            )
        if negatives is None:
            negatives = self.sample(targets, history=history, generator=generator)
        elif negatives.dim() != 2 or negatives.shape[0] != targets.shape[0]:
            raise DataError(
                f"negatives must be (N, K) = ({targets.shape[0]}, K) item ids, "
                f"got {tuple(negatives.shape)}"
            )
        elif negatives.numel() and (
            int(negatives.min()) < 1 or int(negatives.max()) > self.n_items
        ):
            raise DataError(f"negatives must be item ids in 1..{self.n_items} (0 is padding)")
        pos, neg = sampled_scores(hidden, targets, negatives, item_table)
        return self.row_loss(pos, neg, negatives).mean()
