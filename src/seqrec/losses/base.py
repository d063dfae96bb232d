"""The loss interface (DESIGN §2): losses see hidden states and the item table, never logits.

    loss(hidden[N, d], targets[N], item_table[C + 1, d], *, history=None, generator=None) -> scalar

``targets`` are item indices in ``1..C``; row 0 of ``item_table`` is padding and is never a
candidate. Callers pass only real (non-padding) positions, so every row of ``hidden`` counts.
The result is the mean over the N positions. Which positions train ("all" or "last") is chosen
by the trainer, not the loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class History:
    """Per-position "already seen" items, for negative pools that exclude the user's history.

    items: int64[B, H], each row sorted ascending, 0-padded on the left (0 is never an item);
        the items of the sequence that position belongs to.
    row: int64[N], for each loss position the row of ``items`` it belongs to.
    """

    items: Tensor
    row: Tensor


class SequenceLoss(nn.Module):
    """Base class for losses. Subclasses store their hyperparameters as attributes."""

    #: short registry name, e.g. "ce"
    name: str = ""

    @classmethod
    def config_settings(cls) -> frozenset[str]:
        """The LossConfig fields, besides ``name`` and ``positions``, that ``from_config``
        reads: the settings that can make two runs of this loss differ (a report names a
        method by these and ignores the rest, e.g. ``nce_c`` on a ``ce`` run)."""
        return frozenset()

    def forward(
        self,
        hidden: Tensor,
        targets: Tensor,
        item_table: Tensor,
        *,
        history: History | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        raise NotImplementedError
