"""Full-softmax cross-entropy over the whole catalogue: exact and memory-efficient.

    CE = -(1/N) Σ_i log softmax(h_i · Wᵀ)[t_i]
       = (1/N) Σ_i ( logsumexp_j(h_i · w_j) - h_i · w_{t_i} ),   j = 1..C

At the last position (``positions="last"``) this is Li et al. 2023's "CE"; at every position
("all", chosen by the trainer) it is their CCE, which Xu et al. 2024 call "CE".

The naive PyTorch equivalent (``ce-naive``, the reference every fast path is tested against)::

    logits = hidden @ item_table[1:].T            # (N, C)
    loss = F.cross_entropy(logits, targets - 1)

``ce`` computes the same number and the same gradients without ever holding the N × C logits
(at 100k items that block costs gigabytes, at 1M it does not fit; DESIGN §7): by default
through :func:`fused_cross_entropy`, which computes the gradients block of rows by block of
rows in the forward pass (fastest measured here); with ``impl="torch"`` through torch's
``F.linear_cross_entropy`` (the same scheme); with ``impl="chunked"`` through
:func:`chunked_cross_entropy`, whose forward pass streams over item chunks keeping a running
shift m and sum s per row (log-sum-exp) and whose backward pass recomputes each chunk's logits.

``sampled-softmax`` and ``sce`` (Xu et al. 2024) are the cheap sampled approximations.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from seqrec.errors import ConfigError
from seqrec.losses.base import History, SequenceLoss
from seqrec.losses.checks import check_inputs
from seqrec.losses.sampled import SampledLoss

#: default number of items per chunk: big enough for an efficient matmul, small enough that
#: the (N, chunk) float32 block stays a few tens of MiB at N = 12,800
DEFAULT_CHUNK = 2048

#: the exact paths of ``ce`` (see ChunkedCE); "fused" was the fastest measured here
IMPLS = ("fused", "torch", "chunked")
DEFAULT_IMPL = "fused"

# a per-chunk sum of exp(logit - m) above this means the running shift m is too small for that
# row: the chunk is recomputed for those rows with an exact max; keeps every float finite
_RESCALE = 1e30


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64 (gradcheck); everything else is accumulated in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _chunk_view(buf: Tensor, rows: int, width: int) -> Tensor:
    """A contiguous (rows, width) view on the front of a flat reusable buffer."""
    return buf[: rows * width].view(rows, width)


def chunked_logsumexp(
    hidden: Tensor, weight: Tensor, shift: Tensor, chunk_size: int = DEFAULT_CHUNK
) -> Tensor:
    """Row-wise log Σ_j exp(hidden_i · weight_j) over all rows of ``weight``, chunk by chunk.

    hidden: (N, d); weight: (C, d); shift: (N,) a starting guess of each row's max logit (the
    target logit is a good one: it makes most rows need no rescaling at all).
    Returns (N,) in the dtype of ``hidden``. Memory: one (N, chunk_size) buffer.

    The shift m is folded into the matmul (``addmm(-m, h, Wᵀ)``), so each chunk costs one matmul,
    one in-place exp and one row sum. A chunk whose terms would overflow is redone, for the rows
    concerned only, with that chunk's exact max; a running sum that grows large is folded into m.
    """
    n, c = hidden.shape[0], weight.shape[0]
    m = shift.clone()  # (N,) running shift
    s = torch.zeros_like(m)  # (N,) running Σ exp(logit - m)
    neg_m = (-m).unsqueeze(1)  # (N, 1)
    buf = torch.empty(n * min(chunk_size, c), dtype=hidden.dtype)
    for start in range(0, c, chunk_size):
        w = weight[start : start + chunk_size]  # (c', d)
        block = _chunk_view(buf, n, w.shape[0])  # (N, c')
        torch.addmm(neg_m, hidden, w.T, out=block)  # logit - m
        block.exp_()
        part = block.sum(1)  # (N,)
        bad = ~(part < _RESCALE)  # overflow, inf or nan
        if bad.any():
            rows = bad.nonzero().squeeze(1)
            logits = hidden[rows] @ w.T  # (b, c')
            top = torch.maximum(logits.amax(1), m[rows])  # (b,)
            s[rows] *= torch.exp(m[rows] - top)
            m[rows] = top
            part[rows] = torch.exp(logits - top.unsqueeze(1)).sum(1)
            neg_m = (-m).unsqueeze(1)
        s += part
        big = s > _RESCALE
        if big.any():
            m = torch.where(big, m + torch.log(s), m)
            s = torch.where(big, torch.ones_like(s), s)
            neg_m = (-m).unsqueeze(1)
    return m + torch.log(s)


class _ChunkedCrossEntropy(torch.autograd.Function):
    """Exact mean CE over items 1..C of ``item_table``; see :func:`chunked_cross_entropy`."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        hidden: Tensor,
        item_table: Tensor,
        targets: Tensor,
        chunk_size: int,
    ) -> Tensor:
        dt = _compute_dtype(hidden.dtype)
        h = hidden.to(dt)  # (N, d)
        table = item_table.to(dt)  # (C + 1, d)
        pos = (h * table[targets]).sum(1)  # (N,) target logits
        lse = chunked_logsumexp(h, table[1:], pos, chunk_size)  # (N,)
        ctx.save_for_backward(hidden, item_table, targets, lse)
        ctx.chunk_size = chunk_size
        return (lse - pos).mean().to(hidden.dtype)

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad_output: Tensor
    ) -> tuple[Tensor | None, Tensor | None, None, None]:
        hidden, item_table, targets, lse = ctx.saved_tensors
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if not (need_h or need_w):
            return None, None, None, None
        dt = _compute_dtype(hidden.dtype)
        h = hidden.to(dt)  # (N, d)
        table = item_table.to(dt)  # (C + 1, d)
        weight = table[1:]  # (C, d)
        n, c = h.shape[0], weight.shape[0]
        g = grad_output.to(dt) / n  # d loss / d (per-row CE)
        hs = h * g  # (N, d)
        neg_lse = (-lse).unsqueeze(1)  # (N, 1)
        grad_h = torch.zeros_like(h) if need_h else None  # (N, d): Σ_j p_ij w_j
        grad_table = torch.zeros_like(table) if need_w else None  # (C + 1, d), row 0 stays 0
        grad_w = grad_table[1:] if grad_table is not None else None  # (C, d)
        chunk_size = ctx.chunk_size
        buf = torch.empty(n * min(chunk_size, c), dtype=dt)
        for start in range(0, c, chunk_size):
            w = weight[start : start + chunk_size]  # (c', d)
            p = _chunk_view(buf, n, w.shape[0])  # (N, c')
            torch.addmm(neg_lse, h, w.T, out=p)
            p.exp_()  # softmax probabilities
            if grad_h is not None:
                grad_h.addmm_(p, w)
            if grad_w is not None:
                torch.mm(p.T, hs, out=grad_w[start : start + w.shape[0]])
        # the one-hot part: d/dh_i -= w_{t_i}, d/dw_{t_i} -= h_i
        gh = None
        if grad_h is not None:
            gh = (grad_h.mul_(g) - g * table[targets]).to(hidden.dtype)
        gw = None
        if grad_table is not None:
            grad_table.index_add_(0, targets, hs, alpha=-1)
            gw = grad_table.to(item_table.dtype)
        return gh, gw, None, None


def chunked_cross_entropy(
    hidden: Tensor, item_table: Tensor, targets: Tensor, *, chunk_size: int = DEFAULT_CHUNK
) -> Tensor:
    """Exact mean full-softmax CE without materialising the (N, C) logits.

    hidden: (N, d); item_table: (C + 1, d), row 0 = padding (never a candidate, zero gradient);
    targets: (N,) in 1..C. Equal in value and gradient to
    ``F.cross_entropy(hidden @ item_table[1:].T, targets - 1)``.
    Extra memory: one (N, chunk_size) buffer plus O(N + C·d); compute is accumulated in float32
    (float64 inputs stay float64).
    """
    if chunk_size < 1:
        raise ConfigError(f"chunk_size must be >= 1, got {chunk_size}")
    return _ChunkedCrossEntropy.apply(hidden, item_table, targets, chunk_size)


#: row block of the row-fused CE: rows x C float32 logits, capped so the block stays near
#: 64 MiB at large C (128 rows at Beauty's 12k items, 16 at 1M)
FUSED_ROWS = 128
FUSED_BLOCK_ELEMENTS = 1 << 24


def fused_rows(n_items: int) -> int:
    """Rows per block of the row-fused CE for a catalogue of ``n_items``."""
    return max(1, min(FUSED_ROWS, FUSED_BLOCK_ELEMENTS // max(n_items, 1)))


def _softmax_block(
    hidden: Tensor, weight: Tensor, shift: Tensor, out: Tensor
) -> tuple[Tensor, Tensor]:
    """exp(hidden · weightᵀ - shift) into ``out`` and its row sums, overflow-safe.

    hidden: (r, d); weight: (C, d); shift: (r,), the target logits (each row's sum then holds
    exp(0) = 1, so it never underflows); out: (r, C). Rows whose sum would overflow float32 are
    recomputed with their exact max as the shift. Returns (row sums (r,), shifts used (r,)).
    """
    torch.addmm((-shift).unsqueeze(1), hidden, weight.T, out=out)  # (r, C) logit - shift
    out.exp_()
    z = out.sum(1)  # (r,)
    bad = ~(z < _RESCALE)  # overflow, inf or nan
    if bad.any():
        rows = bad.nonzero().squeeze(1)  # (b,)
        logits = hidden[rows] @ weight.T  # (b, C)
        top = logits.amax(1)  # (b,)
        out[rows] = torch.exp(logits - top.unsqueeze(1))
        shift = shift.clone()
        shift[rows] = top
        z[rows] = out[rows].sum(1)
    return z, shift


class _RowFusedCrossEntropy(torch.autograd.Function):
    """Exact mean CE whose gradients are computed in the forward pass, block of rows by block
    of rows: per block one logits matmul, one exp, and the two gradient matmuls, so the logits
    are computed once (the item-chunked path computes them twice). Backward only scales the
    stored gradients by the incoming one. See :func:`fused_cross_entropy`."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        hidden: Tensor,
        item_table: Tensor,
        targets: Tensor,
        rows: int,
    ) -> Tensor:
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        dt = _compute_dtype(hidden.dtype)
        h = hidden.to(dt)  # (N, d)
        table = item_table.to(dt)  # (C + 1, d)
        weight = table[1:]  # (C, d)
        n, c = h.shape[0], weight.shape[0]
        pos = (h * table[targets]).sum(1)  # (N,) target logits
        lse = torch.empty_like(pos)  # (N,)
        grad_h = torch.empty_like(h) if need_h else None  # (N, d): Σ_j p_ij w_j
        # Σ_i p_ij h_i accumulated transposed, (d, C): a contiguous left operand is faster
        grad_wt = torch.zeros(h.shape[1], c, dtype=dt) if need_w else None
        buf = torch.empty(min(rows, n) * c, dtype=dt)
        for start in range(0, n, rows):
            hr = h[start : start + rows]  # (r, d)
            p = _chunk_view(buf, hr.shape[0], c)  # (r, C)
            z, shift = _softmax_block(hr, weight, pos[start : start + rows], p)
            lse[start : start + rows] = shift + torch.log(z)
            if need_h or need_w:
                p.mul_(z.reciprocal().unsqueeze(1))  # softmax probabilities
                if grad_h is not None:
                    torch.mm(p, weight, out=grad_h[start : start + rows])
                if grad_wt is not None:
                    grad_wt.addmm_(hr.T, p)
        del buf
        # the one-hot part and the 1/N of the mean: d/dh_i -= w_{t_i}, d/dw_{t_i} -= h_i
        saved_h = saved_w = None
        if grad_h is not None:
            saved_h = ((grad_h - table[targets]) / n).to(hidden.dtype)
        if grad_wt is not None:
            grad_table = torch.zeros_like(table)  # (C + 1, d), row 0 stays 0
            grad_table[1:] = grad_wt.T
            del grad_wt
            grad_table.index_add_(0, targets, h, alpha=-1)
            saved_w = (grad_table / n).to(item_table.dtype)
        ctx.saved = (saved_h, saved_w)
        return (lse - pos).mean().to(hidden.dtype)

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad_output: Tensor
    ) -> tuple[Tensor | None, Tensor | None, None, None]:
        saved_h, saved_w = ctx.saved
        gh = saved_h * grad_output if saved_h is not None else None
        gw = saved_w * grad_output if saved_w is not None else None
        return gh, gw, None, None


def fused_cross_entropy(
    hidden: Tensor, item_table: Tensor, targets: Tensor, *, rows: int | None = None
) -> Tensor:
    """Exact mean full-softmax CE, gradients computed during the forward pass (row-fused).

    hidden: (N, d); item_table: (C + 1, d), row 0 = padding (never a candidate, zero gradient);
    targets: (N,) in 1..C. Equal in value and gradient to
    ``F.cross_entropy(hidden @ item_table[1:].T, targets - 1)``.

    For each block of r rows: L = h_r Wᵀ - s⁺ (shifted by the target logits), P = exp(L) / Σ,
    lse = s⁺ + log Σ, ∂/∂h_r = P W - W[t], ∂/∂W += Pᵀ h_r (and -h_i at row t_i), all / N.
    Three matmuls and one exp per logit, against four and two for the item-chunked path.
    Extra memory: one (r, C) block plus the (N, d) and (C + 1, d) gradients; ``rows``
    defaults to :func:`fused_rows`.
    """
    n_rows = rows if rows is not None else fused_rows(item_table.shape[0] - 1)
    if n_rows < 1:
        raise ConfigError(f"rows must be >= 1, got {n_rows}")
    if not torch.is_grad_enabled():  # no graph: skip the gradient matmuls
        hidden, item_table = hidden.detach(), item_table.detach()
    return _RowFusedCrossEntropy.apply(hidden, item_table, targets, n_rows)


class ChunkedCE(SequenceLoss):
    """``ce``: exact full-softmax cross-entropy without the (N, C) logits (memory-efficient).

    ``cce`` is not a separate loss: it is ``ce`` at every position (``positions="all"``), a
    choice the trainer makes.

    Args:
        chunk_size: items per chunk of ``impl="chunked"``.
        impl: three exact paths, all equal to ``ce-naive`` in value and gradient (tested):
            "fused" (the default): own row-fused autograd function, :func:`fused_cross_entropy`:
            gradients are computed in the forward pass, block of rows by block of rows (3
            matmuls, 1 exp per logit); "torch": torch's ``F.linear_cross_entropy`` (torch >=
            2.13) in row chunks of ``torch_rows``, the same scheme; "chunked": own item-chunked
            function, :func:`chunked_cross_entropy`, which recomputes the logits in backward (4
            matmuls, 2 exps) but holds the least memory at very large C (an (N, chunk) block
            and no (C, d) gradient buffer beyond the table's own), so pick it when memory binds.
            A Beauty SASRec epoch (N ~ 2,900 per batch, d = 64, C = 12,101, 2 threads, idle):
            fused about 15% faster than torch (benchmarks/results/speed_vs_recbole.md).
        torch_rows: row-chunk size for impl="torch"; 256 was the fastest measured at 12k-1M
            items (DESIGN §7), while torch's automatic choice is pathological for d = 64.
    """

    name = "ce"

    def __init__(
        self, chunk_size: int = DEFAULT_CHUNK, *, impl: str = DEFAULT_IMPL, torch_rows: int = 256
    ) -> None:
        super().__init__()
        if chunk_size < 1 or torch_rows < 1:
            raise ConfigError(f"ce chunk sizes must be >= 1, got {chunk_size} and {torch_rows}")
        if impl not in IMPLS:
            raise ConfigError(f"ce impl must be one of {', '.join(IMPLS)}, got '{impl}'")
        if impl == "torch" and not hasattr(F, "linear_cross_entropy"):
            raise ConfigError("ce impl='torch' needs torch >= 2.13 (F.linear_cross_entropy)")
        self.chunk_size = chunk_size
        self.impl = impl
        self.torch_rows = torch_rows

    @classmethod
    def config_settings(cls) -> frozenset[str]:
        return frozenset({"ce_impl", "ce_chunk_size"})

    @classmethod
    def from_config(
        cls, cfg: Any, n_items: int, *, item_counts: np.ndarray | None = None
    ) -> ChunkedCE:
        """Build from a LossConfig; optional fields ``ce_chunk_size`` and ``ce_impl``."""
        impl = getattr(cfg, "ce_impl", "auto")
        return cls(
            getattr(cfg, "ce_chunk_size", DEFAULT_CHUNK),
            impl=DEFAULT_IMPL if impl == "auto" else impl,
        )

    def forward(
        self,
        hidden: Tensor,
        targets: Tensor,
        item_table: Tensor,
        *,
        history: History | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        check_inputs(hidden, targets, item_table)
        if self.impl == "fused":
            return fused_cross_entropy(hidden, item_table, targets)
        if self.impl == "torch":
            options = torch.nn.LinearCrossEntropyOptions(batch_chunk_size=self.torch_rows)
            return F.linear_cross_entropy(hidden, item_table[1:], targets - 1, options=options)
        return chunked_cross_entropy(hidden, item_table, targets, chunk_size=self.chunk_size)


class NaiveCE(SequenceLoss):
    """``ce-naive``: F.cross_entropy on the materialised (N, C) logits (reference, baseline)."""

    name = "ce-naive"

    def forward(
        self,
        hidden: Tensor,
        targets: Tensor,
        item_table: Tensor,
        *,
        history: History | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        check_inputs(hidden, targets, item_table)
        logits = hidden @ item_table[1:].T  # (N, C)
        return F.cross_entropy(logits, targets - 1)


def _ce_on_first(pos: Tensor, neg: Tensor) -> Tensor:
    """(N,) cross-entropy with the target in column 0 of [s⁺, s⁻_1..s⁻_K]."""
    logits = torch.cat([pos.unsqueeze(1), neg], dim=1)  # (N, 1 + K)
    zeros = torch.zeros(logits.shape[0], dtype=torch.long)
    return F.cross_entropy(logits, zeros, reduction="none")


class SampledSoftmaxLoss(SampledLoss):
    """``sampled-softmax``: CE over the target and K sampled negatives (Jean et al. 2015).

    ℓ = -log softmax([s⁺, s⁻_1 - o_1, ..., s⁻_K - o_K])[0],   o_k = log(K q(k)) if ``logq``
    else 0, with q the pool's proposal (:meth:`SampledLoss.proposal`: 1/C for "all" and
    "shared", 1/(C - 1) for "not-target", count^power / Σ for "popularity"; "not-history" and
    "in-batch" have no closed-form q and are rejected with ``logq``).

    With ``logq``, Σ_k exp(s⁻_k) / (K q(k)) is an unbiased importance-sampling estimate of
    Σ_j exp(s_j) over the items the pool can draw (Bengio & Senécal 2008): with "not-target"
    the whole normaliser exp(s⁺) + Σ_k exp(s⁻_k) / (K q) is unbiased for the full softmax
    partition Z = Σ_{j=1..C} exp(s_j); with "all" / "popularity" (which may draw the target) it
    is unbiased for exp(s⁺) + Z (tested statistically). Being the log of an unbiased estimate,
    the loss itself is biased upwards for finite K (Jensen), vanishing as K grows. With uniform
    q over all C items it equals ``sce`` with α = C / K.
    """

    name = "sampled-softmax"
    config_fields: ClassVar[dict[str, tuple[str, Any]]] = {"logq": ("logq", False)}

    def __init__(self, n_items: int, *, logq: bool = False, **kwargs: Any) -> None:
        super().__init__(n_items, **kwargs)
        self.logq = bool(logq)
        log_kq = torch.zeros(self.n_items)  # (C,) for items 1..C; unused without logq
        if self.logq:
            log_kq = torch.log(self.negatives * self.proposal()).float()  # (C,)
        self.register_buffer("log_kq", log_kq, persistent=False)

    def row_loss(self, pos: Tensor, neg: Tensor, negatives: Tensor) -> Tensor:
        if self.logq:
            neg = neg - self.log_kq.to(neg.dtype)[negatives - 1]  # (N, K)
        return _ce_on_first(pos, neg)


class SCELoss(SampledLoss):
    """``sce``: scaled cross-entropy (Xu et al. 2024): CE over K uniform negatives whose
    normalising term is scaled up by α to stand in for the C - K unsampled items.

    ℓ = -log [ exp(s⁺) / (exp(s⁺) + α Σ_k exp(s⁻_k)) ]
      = -log softmax([s⁺, s⁻_1 + log α, ..., s⁻_K + log α])[0],   α = 100 by default
    """

    name = "sce"
    config_fields: ClassVar[dict[str, tuple[str, Any]]] = {"alpha": ("alpha", 100.0)}

    def __init__(self, n_items: int, *, alpha: float = 100.0, **kwargs: Any) -> None:
        super().__init__(n_items, **kwargs)
        if not alpha > 0:
            raise ConfigError(f"sce scale alpha must be > 0, got {alpha}")
        self.alpha = float(alpha)

    def row_loss(self, pos: Tensor, neg: Tensor, negatives: Tensor) -> Tensor:
        return _ce_on_first(pos, neg + math.log(self.alpha))
