"""Negative samplers: K item ids in 1..C per loss position, fully vectorised.

Pools (DESIGN §3):
- ``"all"``: uniform over the C items; may return the target.
- ``"not-target"``: uniform over the C - 1 items other than the target (exact, no rejection).
- ``"not-history"``: uniform over the items that are neither the target nor in the user's history
  (exact, no rejection; see :func:`sample_not_history`).
- ``"in-batch"``: the targets of the other positions of the same batch, never the row's own
  target (:func:`sample_in_batch`).
- popularity-proportional (:func:`sample_popular`) and ``shared`` (one draw of K reused by every
  row, :func:`sample_shared`), for phase-2 losses and benchmarks.

Every sampler takes an optional ``torch.Generator``; the same generator state gives the same ids.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from seqrec.errors import ConfigError, DataError
from seqrec.losses.base import History

POOLS = ("all", "not-target", "not-history", "in-batch")


def sample_uniform(
    n_rows: int, n_items: int, k: int, *, generator: torch.Generator | None = None
) -> Tensor:
    """(n_rows, k) ids uniform over 1..n_items (with replacement; may hit the target)."""
    return torch.randint(1, n_items + 1, (n_rows, k), generator=generator)


def sample_not_target(
    targets: Tensor, n_items: int, k: int, *, generator: torch.Generator | None = None
) -> Tensor:
    """(N, k) ids uniform over {1..C} minus each row's target.

    Exact without rejection: draw v uniform in 1..C-1, then shift v >= target up by one, which
    maps 1..C-1 one-to-one onto 1..C without the target.
    """
    if n_items < 2:
        raise ConfigError(
            f"the 'not-target' negative pool needs at least 2 items, the catalogue has {n_items}"
        )
    v = torch.randint(1, n_items, (targets.shape[0], k), generator=generator)  # (N, k) in 1..C-1
    return v + (v >= targets.unsqueeze(1)).long()


def _excluded_keys(items: Tensor, n_items: int) -> tuple[Tensor, Tensor]:
    """Per history row: sorted unique excluded items E (0-padding and repeats -> sentinel C + 1)
    and their counts. Returns (E (B, H), count (B,)), each row of E ascending."""
    sentinel = n_items + 1
    x = items.long()  # (B, H) ascending per row, 0 = padding
    repeat = torch.zeros_like(x, dtype=torch.bool)
    repeat[:, 1:] = x[:, 1:] == x[:, :-1]
    valid = (x > 0) & ~repeat  # (B, H)
    e = torch.where(valid, x, torch.full_like(x, sentinel)).sort(dim=1).values  # (B, H)
    return e, valid.sum(1)


def _row_searchsorted(
    flat: Tensor, width: int, stride: int, row: Tensor, values: Tensor, right: bool
) -> Tensor:
    """searchsorted of ``values`` (N, k) into row ``row`` (N,) of a (B, width) table flattened
    with row b's values offset by b * stride (so the flat array is globally sorted). Returns the
    position within the row, (N, k). Avoids gathering a (N, width) copy of the table."""
    offset = (row * stride).unsqueeze(1)  # (N, 1)
    pos = torch.searchsorted(flat, values + offset, right=right)  # (N, k)
    return pos - (row * width).unsqueeze(1)


def sample_not_history(
    targets: Tensor,
    n_items: int,
    k: int,
    history: History,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """(N, k) ids uniform over the items that are neither the target nor in the row's history.

    Exact and rejection-free (so it has no retry bound and no failure when a history covers most
    of the catalogue): with E the row's sorted unique excluded items, the r-th allowed item
    (r = 1..C-|E|) is ``r + #{j : E_j - j <= r}`` (0-based j), found by one searchsorted.
    The target, when not already in the history, is skipped the same way as in
    :func:`sample_not_target`: draw rank r among C - |E| - 1 values, and step over the target's
    own rank. Work is O(B·H log H) per batch plus O(N·k log H); no (N, H) copy is made.

    Raises DataError if some row's history and target cover the whole catalogue.
    """
    items, row = history.items, history.row.long()
    if items.dim() != 2 or row.shape != targets.shape:
        raise DataError(
            "history.items must be (B, H) and history.row (N,) like the targets "
            f"{tuple(targets.shape)}; "
            f"got {tuple(items.shape)} and {tuple(history.row.shape)}"
        )
    n = targets.shape[0]
    b, width = items.shape
    if width == 0:
        return sample_not_target(targets, n_items, k, generator=generator)
    e, count = _excluded_keys(items, n_items)  # (B, H), (B,)
    stride = n_items + 2  # every row's keys and values lie in 0..C+1
    base = torch.arange(b).unsqueeze(1) * stride  # (B, 1)
    flat_e = (e + base).reshape(-1)  # (B*H,) globally ascending
    keys = torch.where(
        e <= n_items, e - torch.arange(width), torch.full_like(e, n_items + 1)
    )  # (B, H)
    flat_keys = (keys + base).reshape(-1)  # (B*H,)

    t = targets.long().unsqueeze(1)  # (N, 1)
    at = _row_searchsorted(flat_e, width, stride, row, t, right=False)  # (N, 1) #E < t
    hit = flat_e[(row.unsqueeze(1) * width + at.clamp(max=width - 1))] == t + (
        row * stride
    ).unsqueeze(1)
    hit &= at < width
    target_in_e = hit.squeeze(1)  # (N,)
    allowed = n_items - count[row] - (~target_in_e).long()  # (N,) size of the pool
    if bool((allowed < 1).any()):
        i = int((allowed < 1).nonzero()[0])
        raise DataError(
            f"no negative item is left for loss position {i}: its history and target cover all "
            f"{n_items} items; use the 'not-target' or 'all' negative pool for this dataset"
        )
    u = torch.rand((n, k), generator=generator, dtype=torch.float64)  # (N, k)
    r = (u * allowed.unsqueeze(1)).long().clamp(
        max=allowed.unsqueeze(1) - 1
    ) + 1  # (N, k) in 1..allowed
    target_rank = (t - at).squeeze(1)  # (N,) rank of the target among non-history items
    r = r + ((r >= target_rank.unsqueeze(1)) & ~target_in_e.unsqueeze(1)).long()
    return r + _row_searchsorted(flat_keys, width, stride, row, r, right=True)


def popularity_cdf(item_counts: np.ndarray | Tensor, power: float = 1.0) -> Tensor:
    """float64[C] cumulative distribution of q(j) ∝ count_j^power over items 1..C.

    ``item_counts`` is indexed by item id with entry 0 = padding (ignored), length C + 1.
    """
    counts = torch.as_tensor(np.asarray(item_counts), dtype=torch.float64)[1:]  # (C,)
    if counts.numel() == 0 or bool((counts < 0).any()):
        raise DataError("item counts must be non-negative, one per item id 0..C")
    weights = counts.pow(power) if power != 1.0 else counts
    total = float(weights.sum())
    if not total > 0:
        raise DataError("item counts are all zero: no item can be sampled by popularity")
    cdf = torch.cumsum(weights, 0) / total
    cdf[-1] = 1.0
    return cdf


def popularity_probs(cdf: Tensor) -> Tensor:
    """float64[C] the proposal q(j) behind a :func:`popularity_cdf`, for item j + 1."""
    return torch.diff(cdf, prepend=cdf.new_zeros(1))


def sample_popular(
    n_rows: int, k: int, cdf: Tensor, *, generator: torch.Generator | None = None
) -> Tensor:
    """(n_rows, k) ids drawn i.i.d. with P(j) = cdf[j-1] - cdf[j-2] (inverse-CDF, one searchsorted).

    Items with zero weight are never drawn. May return the target.
    """
    u = torch.rand((n_rows, k), generator=generator, dtype=torch.float64)
    return torch.searchsorted(cdf, u, right=True).clamp_(max=cdf.shape[0] - 1) + 1


def sample_shared(
    n_rows: int, n_items: int, k: int, *, generator: torch.Generator | None = None
) -> Tensor:
    """(n_rows, k) ids: ONE uniform draw of k items reused by every row (an expanded view, stride 0
    on rows). Sampled losses detect the stride and score it with a single (N, d)·(d, k) matmul."""
    return sample_uniform(1, n_items, k, generator=generator).expand(n_rows, k)


def sample_in_batch(
    targets: Tensor, n_items: int, k: int, *, generator: torch.Generator | None = None
) -> Tensor:
    """(N, k) in-batch negatives: for each position, k draws (with replacement) uniform over the
    positions of the batch whose target differs from its own, returning their targets.

    An item is thus drawn in proportion to how often it is a target in the batch (the popularity
    proposal of in-batch softmax, e.g. Hidasi et al. 2016's mini-batch sampling), and the row's
    own target is never returned, not even when another position shares it. Exact without
    rejection: with the targets sorted, the positions sharing row i's target form one block
    [lo_i, hi_i); draw v in 0..N-1-(hi_i-lo_i) and step over the block. Rows whose target is the
    only one in the batch (all positions share it) fall back to :func:`sample_not_target`.
    """
    n = targets.shape[0]
    t = targets.long()
    ordered = torch.sort(t).values  # (N,)
    lo = torch.searchsorted(ordered, t, right=False)  # (N,) first position of the own target
    same = torch.searchsorted(ordered, t, right=True) - lo  # (N,) positions sharing it
    allowed = n - same  # (N,) other positions to draw from
    u = torch.rand((n, k), generator=generator, dtype=torch.float64)  # (N, k)
    v = (u * allowed.unsqueeze(1)).long().clamp(max=(allowed - 1).clamp(min=0).unsqueeze(1))
    v = v + (v >= lo.unsqueeze(1)).long() * same.unsqueeze(1)  # skip the own-target block
    out = ordered[v.clamp(max=n - 1)]  # (N, k)
    lonely = allowed == 0
    if bool(lonely.any()):
        rows = lonely.nonzero().squeeze(1)
        out[rows] = sample_not_target(t[rows], n_items, k, generator=generator)
    return out


def sample_negatives(
    targets: Tensor,
    n_items: int,
    k: int,
    *,
    pool: str,
    history: History | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """(N, k) int64 negative ids in 1..n_items for the N loss positions, from the named pool.

    pool: "all" (uniform, may hit the target) | "not-target" | "not-history" (needs ``history``)
    | "in-batch" (the other positions' targets).
    """
    if k < 1:
        raise ConfigError(f"the number of negatives must be >= 1, got {k}")
    if pool == "all":
        return sample_uniform(targets.shape[0], n_items, k, generator=generator)
    if pool == "not-target":
        return sample_not_target(targets, n_items, k, generator=generator)
    if pool == "not-history":
        if history is None:
            raise ConfigError(
                "the 'not-history' negative pool needs the users' histories: the trainer must pass "
                "history= to the loss (or choose loss.pool = 'not-target')"
            )
        return sample_not_history(targets, n_items, k, history, generator=generator)
    if pool == "in-batch":
        return sample_in_batch(targets, n_items, k, generator=generator)
    raise ConfigError(f"unknown negative pool '{pool}'; choose one of {', '.join(POOLS)}")
