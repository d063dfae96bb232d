"""Input validation shared by every loss: shapes and item-index ranges (O(N), no logits)."""

from __future__ import annotations

from torch import Tensor

from seqrec.errors import DataError


def check_inputs(hidden: Tensor, targets: Tensor, item_table: Tensor) -> None:
    """Raise DataError unless hidden (N, d), targets (N,) in 1..C, item_table (C + 1, d) agree."""
    if hidden.dim() != 2 or item_table.dim() != 2 or targets.dim() != 1:
        raise DataError(
            "loss inputs must be hidden (N, d), targets (N,), item_table (C + 1, d); got shapes "
            f"{tuple(hidden.shape)}, {tuple(targets.shape)}, {tuple(item_table.shape)}: "
            "select the training positions before calling the loss"
        )
    if hidden.shape[0] != targets.shape[0] or hidden.shape[1] != item_table.shape[1]:
        raise DataError(
            f"loss inputs disagree: hidden {tuple(hidden.shape)}, targets {tuple(targets.shape)}, "
            f"item_table {tuple(item_table.shape)}; hidden needs one row per target and the "
            "item table's width d"
        )
    if targets.dtype.is_floating_point:
        raise DataError(f"targets must be integer item indices, got dtype {targets.dtype}")
    if hidden.shape[0] == 0:
        raise DataError("the loss got no positions (N = 0): the batch has no non-padding target")
    n_items = item_table.shape[0] - 1
    lo, hi = int(targets.min()), int(targets.max())
    if lo < 1 or hi > n_items:
        raise DataError(
            f"targets must be item indices in 1..{n_items} (0 is padding), got values in "
            f"{lo}..{hi}: drop padding positions and check the item table has C + 1 rows"
        )
