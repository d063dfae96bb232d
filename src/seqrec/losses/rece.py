"""``rece``: reduced cross-entropy (Gusak et al. 2024, "RECE: Reduced Cross-Entropy Loss for
Large-Catalogue Sequential Recommenders", arXiv 2408.02354).

CE whose normaliser runs over the target and the items an angular LSH puts near each hidden state,
instead of all C items:

1. draw ``n_b`` random Gaussian directions R (d × n_b); the bucket of a vector v is
   argmax_k (v · R)_k (random-rotation LSH for angular distance);
2. bucket the hidden states (N, d) and the items 1..C (C, d) with the same R and sort each list by
   (bucket, winning projection) -- the projection only breaks ties inside a bucket, so the order
   does not depend on the order of the input rows;
3. split both sorted lists into the same number n_c of equal chunks (the last one padded);
   hidden chunk k scores item chunks k - e .. k + e (``extra_chunks`` = e on each side);
4. repeat for ``rounds`` with fresh directions; an item j seen c_ij times by row i (in different
   rounds) has log c_ij subtracted from its logit, so it counts once in the normaliser;
5. the target and padding are never negatives; with S_i the set of items row i saw,

       ℓ_i = log( exp(s⁺_i) + Σ_{j ∈ S_i \\ {t_i}} exp(s_ij) ) - s⁺_i,   s⁺_i = h_i · w_{t_i} (exact)

   and the loss is the mean over the N rows. When every row sees the whole catalogue (one chunk,
   or e >= n_c - 1) this is exactly full-softmax CE (tested, values and gradients).

Memory: per round one (N, (2e + 1) · ⌈C / n_c⌉) logit block (plus its exp and masks), never
N × C; hashing the items is done in row blocks. Compute: r · N · (2e + 1) · C / n_c · d for the
logits and r · (N + C) · n_b · d for the hashing.

Defaults. The authors' rule for the bucket count (README of their reference code, section
"Optimal bucket size", and the grid of their experiments) balances the memory of the hash
projections, r · n_b · max(N, C), against that of the logit / duplicate-count blocks,
4 · r · N · C · (2e + 1) · α_bc / n_b (α_bc = buckets per chunk, 1 here, so n_c = n_b):

    n_b = ⌊√(4 · α_bc · (2e + 1) · min(C, N))⌋,    N = positions in the batch

so by default n_b depends on the batch (it is recomputed for every call), n_c = n_b, e = 1 and
r = 1 (the paper tunes e in 0..10 and r in 1..128). Both are clamped to at most min(N, C).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from seqrec.errors import ConfigError, DataError
from seqrec.losses.base import History, SequenceLoss
from seqrec.losses.checks import check_inputs

#: elements of the (rows, rounds · n_b) projection block when hashing the item table (16 MiB fp32)
HASH_BLOCK = 1 << 22

#: chunk index given to padding slots: never within e of a real chunk (int32, and a difference
#: with any real chunk index stays inside int32)
_FAR = -(1 << 30)


def default_buckets(n_items: int, n_rows: int, extra_chunks: int = 1) -> int:
    """The authors' rule n_b = ⌊√(4 · (2e + 1) · min(C, N))⌋ (at least 1); see the module
    docstring. n_items = C, n_rows = N positions in the batch, extra_chunks = e."""
    return max(1, math.isqrt(4 * (2 * extra_chunks + 1) * min(n_items, n_rows)))


def lsh_buckets(x: Tensor, directions: Tensor) -> tuple[Tensor, Tensor]:
    """Bucket (argmax over the projections) and winning projection of each row, per round.

    x: (M, d); directions: (r, d, n_b). Returns bucket (r, M) int64 and value (r, M) float32.
    Works in row blocks of ~HASH_BLOCK elements, so the (M, r · n_b) projections are never held.
    """
    r, d, n_b = directions.shape
    flat = directions.permute(1, 0, 2).reshape(d, r * n_b).float()  # (d, r · n_b)
    m = x.shape[0]
    bucket = torch.empty(r, m, dtype=torch.long)
    value = torch.empty(r, m, dtype=torch.float32)
    rows = max(1, HASH_BLOCK // (r * n_b))
    with torch.no_grad():
        for s in range(0, m, rows):
            proj = (x[s : s + rows].float() @ flat).view(-1, r, n_b)  # (b, r, n_b)
            top = proj.max(dim=2)  # (b, r)
            bucket[:, s : s + rows] = top.indices.T
            value[:, s : s + rows] = top.values.T
    return bucket, value


def _sort_order(bucket: Tensor, value: Tensor, tiebreak: Tensor | None) -> Tensor:
    """(M,) permutation sorting by bucket ascending, then projection descending, then
    ``tiebreak`` ascending (then index): successive stable sorts, least significant key first."""
    order = torch.arange(bucket.shape[0])
    if tiebreak is not None:
        order = torch.sort(tiebreak, stable=True).indices  # (M,)
    order = order[torch.sort(value[order], descending=True, stable=True).indices]
    return order[torch.sort(bucket[order], stable=True).indices]


def lsh_orders(
    hidden: Tensor, targets: Tensor, item_table: Tensor, directions: Tensor
) -> tuple[Tensor, Tensor]:
    """Per round, the LSH-sorted row indices (r, N) and item ids (r, C) (ids in 1..C).

    Rows with equal bucket and projection are ordered by target, so the chunks do not depend on
    the order of the input rows.
    """
    hb, hv = lsh_buckets(hidden.detach(), directions)  # (r, N)
    ib, iv = lsh_buckets(item_table.detach()[1:], directions)  # (r, C)
    rounds = directions.shape[0]
    rows = torch.stack([_sort_order(hb[k], hv[k], targets) for k in range(rounds)])  # (r, N)
    items = torch.stack([_sort_order(ib[k], iv[k], None) for k in range(rounds)]) + 1  # (r, C)
    return rows, items


def _chunk_of(orders: Tensor, width: int, chunk: int) -> Tensor:
    """(r, width) chunk index of each entry (row or item id) in each round's sorted order;
    entries absent from ``orders`` (padding id 0, the dummy row) get a far-away chunk."""
    r, m = orders.shape
    out = torch.full((r, width), _FAR, dtype=torch.int32)  # int32: the duplicate count's blocks
    out.scatter_(1, orders, (torch.arange(m, dtype=torch.int32) // chunk).expand(r, m))
    return out


def rece_from_orders(
    hidden: Tensor,
    targets: Tensor,
    item_table: Tensor,
    row_orders: Tensor,
    item_orders: Tensor,
    *,
    n_chunks: int,
    extra_chunks: int,
    alpha: float = 1.0,
) -> Tensor:
    """Mean RECE loss given each round's sorted rows (r, N) and sorted item ids (r, C).

    Splits both sorted lists into ``n_chunks`` equal chunks (clamped to 1..min(N, C)); hidden
    chunk k scores item chunks k - e .. k + e (e = ``extra_chunks``, clamped to n_c - 1). See the
    module docstring for the formula. With ``alpha`` != 1 every candidate's term is weighted
    by alpha (log alpha added to its logit), as SCE weights its sampled negatives. Differentiable
    w.r.t. ``hidden`` and ``item_table``.
    """
    n, d = hidden.shape
    c = item_table.shape[0] - 1
    rounds = row_orders.shape[0]
    n_c = max(1, min(n_chunks, n, c))
    e = max(0, min(extra_chunks, n_c - 1))
    cx, cy = math.ceil(n / n_c), math.ceil(c / n_c)  # rows and items per chunk
    n_pad, c_pad = n_c * cx, n_c * cy
    width = (2 * e + 1) * cy  # candidate items per row per round

    pos = (hidden * item_table[targets]).sum(1)  # (N,) exact target logits
    # one dummy row (index N: zero state, target 0) fills the last row chunk
    hidden_ext = torch.cat([hidden, hidden.new_zeros(1, d)])  # (N + 1, d)
    targets_ext = torch.cat([targets, targets.new_zeros(1)])  # (N + 1,)
    pos_ext = torch.cat([pos.detach(), pos.new_zeros(1)])  # (N + 1,)
    row_pad = torch.full((n_pad - n,), n, dtype=torch.long)
    item_pad = torch.zeros(c_pad - c, dtype=torch.long)
    with torch.no_grad():
        row_chunk = _chunk_of(row_orders, n + 1, cx)  # (r, N + 1) int32
        item_chunk = _chunk_of(item_orders, c + 1, cy)  # (r, C + 1) int32

    shift = []  # per round: (N,) the shift m and the sum Σ exp(logit - m) in the original row order
    for k in range(rounds):
        rows = torch.cat([row_orders[k], row_pad])  # (n_pad,) sorted, dummies last
        x = hidden_ext[rows].view(n_c, cx, d)  # (n_c, cx, d)
        ids = torch.cat([item_orders[k], item_pad]).view(n_c, cy)  # (n_c, cy), 0 = padding
        ids = torch.nn.functional.pad(ids, (0, 0, e, e))  # (n_c + 2e, cy)
        y = item_table[ids]  # (n_c + 2e, cy, d)
        logits = torch.cat(
            [torch.bmm(x, y[o : o + n_c].transpose(1, 2)) for o in range(2 * e + 1)], dim=2
        )  # (n_c, cx, width)
        with torch.no_grad():
            window = torch.cat([ids[o : o + n_c] for o in range(2 * e + 1)], dim=1)  # (n_c, width)
            t = targets_ext[rows].view(n_c, cx, 1)  # (n_c, cx, 1)
            drop = (window == 0).unsqueeze(1) | (window.unsqueeze(1) == t)  # (n_c, cx, width)
            if rounds > 1:
                # c_ij = #rounds whose window for row i holds item j: this round (every real
                # candidate of the window, by construction) plus each other round k2 where
                # |chunk of j - chunk of i| <= e; int32 in place, one temporary per round
                count = torch.ones(n_c, cx, width, dtype=torch.int32)
                for k2 in range(rounds):
                    if k2 == k:
                        continue
                    rc = row_chunk[k2][rows].view(n_c, cx, 1)  # (n_c, cx, 1)
                    ic = item_chunk[k2][window].unsqueeze(1)  # (n_c, 1, width)
                    count += torch.sub(ic, rc).abs_().le_(e)  # (n_c, cx, width) 0 / 1
                log_count = count.to(logits.dtype).log_()  # (n_c, cx, width)
        if rounds > 1:
            logits = logits - log_count
        if alpha != 1.0:
            logits = logits + math.log(alpha)
        logits = logits.masked_fill(drop, float("-inf"))
        with torch.no_grad():
            m = torch.maximum(logits.amax(2), pos_ext[rows].view(n_c, cx))  # (n_c, cx) finite
        s = torch.exp(logits - m.unsqueeze(2)).sum(2)  # (n_c, cx); masked terms are exactly 0
        inv = torch.empty(n, dtype=torch.long)
        inv[row_orders[k]] = torch.arange(n)  # position of each original row in the sorted list
        shift.append((m.reshape(-1)[inv], s.reshape(-1)[inv]))

    # log-sum-exp over [s⁺, every round's terms], each round carried as (m, Σ exp(logit - m))
    big = torch.stack([m for m, _ in shift]).amax(0)  # (N,) >= s⁺, no gradient
    total = torch.exp(pos - big)  # (N,)
    for m, s in shift:
        total = total + s * torch.exp(m - big)
    return (big + torch.log(total) - pos).mean()


def rece_loss(
    hidden: Tensor,
    targets: Tensor,
    item_table: Tensor,
    *,
    n_buckets: int | None = None,
    n_chunks: int | None = None,
    extra_chunks: int = 1,
    rounds: int = 1,
    generator: torch.Generator | None = None,
    directions: Tensor | None = None,
    alpha: float = 1.0,
) -> Tensor:
    """Mean RECE loss (Gusak et al. 2024) of hidden (N, d) for targets (N,) in 1..C.

    n_buckets: LSH buckets n_b (default: the authors' rule, :func:`default_buckets` of C, N
    and e); n_chunks: chunks n_c (default n_b);
    extra_chunks: neighbouring item chunks scored on each side; rounds: independent hashings.
    The random directions (rounds, d, n_b) are drawn from ``generator`` (float32 N(0, 1)) unless
    ``directions`` is given. alpha: weight on every candidate's exp (1 = the paper; see
    :class:`RECELoss`). Memory ~ rounds × N × (2 · extra_chunks + 1) × ⌈C / n_c⌉ floats.
    """
    c = item_table.shape[0] - 1
    n_b = (
        n_buckets
        if n_buckets is not None
        else default_buckets(c, hidden.shape[0], max(0, extra_chunks))
    )
    if not alpha > 0:
        raise ConfigError(f"rece alpha must be > 0, got {alpha}")
    if n_b < 1 or extra_chunks < 0 or rounds < 1 or (n_chunks is not None and n_chunks < 1):
        raise ConfigError(
            f"rece needs buckets >= 1, chunks >= 1, extra_chunks >= 0 and rounds >= 1; got "
            f"{n_b}, {n_chunks}, {extra_chunks}, {rounds}"
        )
    if directions is None:
        directions = torch.randn(rounds, hidden.shape[1], n_b, generator=generator)
    elif directions.dim() != 3 or directions.shape[1] != hidden.shape[1]:
        raise DataError(
            f"rece directions must be (rounds, d={hidden.shape[1]}, n_b), "
            f"got {tuple(directions.shape)}"
        )
    row_orders, item_orders = lsh_orders(hidden, targets, item_table, directions)
    return rece_from_orders(
        hidden,
        targets,
        item_table,
        row_orders,
        item_orders,
        n_chunks=n_chunks if n_chunks is not None else directions.shape[2],
        extra_chunks=extra_chunks,
        alpha=alpha,
    )


class RECELoss(SequenceLoss):
    """``rece``: reduced cross-entropy over LSH-chosen hard negatives (Gusak et al. 2024).

    Args:
        n_items: catalogue size C.
        buckets: LSH buckets n_b (None: the authors' rule ⌊√(4 (2e + 1) min(C, N))⌋, computed
            for each batch of N positions).
        chunks: equal chunks n_c of the sorted lists (None: n_b).
        extra_chunks: neighbouring item chunks scored on each side (paper's n_ec), default 1.
        rounds: independent hashings with fresh directions, default 1.
        alpha: weight on every candidate's exp in the normaliser, default 1 (the paper).
            Not part of RECE: SCE's correction (Xu et al. 2024, log alpha added to sampled
            logits), for when the candidate set is a small part of the catalogue and the plain
            normaliser underestimates the full one.
        seed: seeds the directions when no ``generator`` is passed, so such calls are
            reproducible (and use the same directions every call); the trainer passes its
            generator, which gives fresh directions at every step as in the paper.
    """

    name = "rece"

    def __init__(
        self,
        n_items: int,
        *,
        buckets: int | None = None,
        chunks: int | None = None,
        extra_chunks: int = 1,
        rounds: int = 1,
        alpha: float = 1.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if n_items < 1:
            raise ConfigError(f"rece needs at least one item, got n_items={n_items}")
        if (buckets is not None and buckets < 1) or (chunks is not None and chunks < 1):
            raise ConfigError(f"rece buckets and chunks must be >= 1, got {buckets} and {chunks}")
        if not alpha > 0:
            raise ConfigError(f"rece alpha must be > 0, got {alpha}")
        if extra_chunks < 0 or rounds < 1:
            raise ConfigError(
                f"rece needs extra_chunks >= 0 and rounds >= 1, got {extra_chunks} and {rounds}"
            )
        self.n_items = n_items
        self.buckets = buckets
        self.chunks = chunks
        self.extra_chunks = extra_chunks
        self.rounds = rounds
        self.alpha = alpha
        self.seed = seed

    @classmethod
    def config_settings(cls) -> frozenset[str]:
        return frozenset(
            {"rece_buckets", "rece_chunks", "rece_extra_chunks", "rece_rounds", "rece_alpha"}
        )

    @classmethod
    def from_config(
        cls, cfg: Any, n_items: int, *, item_counts: np.ndarray | None = None
    ) -> RECELoss:
        """Build from a LossConfig; optional fields ``rece_buckets``, ``rece_chunks``,
        ``rece_extra_chunks``, ``rece_rounds``, ``rece_alpha``."""
        return cls(
            n_items,
            buckets=getattr(cfg, "rece_buckets", None),
            chunks=getattr(cfg, "rece_chunks", None),
            extra_chunks=getattr(cfg, "rece_extra_chunks", 1),
            rounds=getattr(cfg, "rece_rounds", 1),
            alpha=getattr(cfg, "rece_alpha", 1.0),
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
        if item_table.shape[0] - 1 != self.n_items:
            raise DataError(
                f"the item table has {item_table.shape[0] - 1} items but the rece loss was built "
                f"for {self.n_items}: build the loss with the model's catalogue size"
            )
        if generator is None:
            generator = torch.Generator().manual_seed(self.seed)
        return rece_loss(
            hidden,
            targets,
            item_table,
            n_buckets=self.buckets,
            n_chunks=self.chunks,
            extra_chunks=self.extra_chunks,
            rounds=self.rounds,
            generator=generator,
            alpha=self.alpha,
        )
