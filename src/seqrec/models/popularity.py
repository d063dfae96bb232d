"""Most-popular baseline: every user gets the catalogue ranked by training interaction count.

It is a :class:`SequentialRecommender` of dimension 1 so the ordinary evaluator ranks it:
``encode`` returns ones ``(B, L, 1)`` and ``item_embeddings`` returns the counts ``(C + 1, 1)``
(row 0, padding, is 0), hence ``score(i) = count(i)``. Items with equal counts are tied and get
the evaluator's expected (random tie-breaking) metrics, so unseen items never flatter it. With
history masking on it is the usual "most popular not yet seen" baseline every run is compared with.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from seqrec.data.sequences import Sequences
from seqrec.errors import SeqrecError
from seqrec.models.base import SequentialRecommender


class PopularityModel(SequentialRecommender):
    """Scores item ``i`` by ``counts[i]``; ``counts`` is indexed by item id (length C + 1).

    >>> m = PopularityModel.fit(Sequences.from_lists([[1, 2, 2], [2, 3]], n_items=4))
    >>> m.item_embeddings()[:, 0].tolist()
    [0.0, 1.0, 3.0, 1.0, 0.0]
    """

    def __init__(self, counts: Any) -> None:
        super().__init__()
        if isinstance(counts, Tensor):
            counts = counts.detach().cpu().numpy()
        c = np.asarray(counts, dtype=np.float64)
        if c.ndim != 1 or len(c) < 2:
            raise SeqrecError(
                f"PopularityModel: counts must be one-dimensional of length C + 1 (item ids "
                f"0..C, 0 = padding), got shape {c.shape}"
            )
        if not np.all(np.isfinite(c)) or c.min() < 0:
            raise SeqrecError("PopularityModel: counts must be finite and >= 0")
        c = c.copy()
        c[0] = 0.0  # padding is never a candidate and never counted
        self.n_items = len(c) - 1
        self.dim = 1
        self.register_buffer("counts", torch.from_numpy(c)[:, None])  # (C + 1, 1) float64

    @classmethod
    def fit(cls, train: Sequences) -> PopularityModel:
        """Count every item's occurrences in the training sequences."""
        items = np.asarray(train.items, dtype=np.int64)
        if items.size and (items.min() < 1 or items.max() > train.n_items):
            raise SeqrecError(
                f"PopularityModel.fit: training items must be in 1..{train.n_items}, found "
                f"{int(items.min())}..{int(items.max())}"
            )
        return cls(np.bincount(items, minlength=train.n_items + 1))

    def encode(self, items: Tensor) -> Tensor:
        """items: int64[B, L] -> ones float64[B, L, 1] (the history does not matter)."""
        return torch.ones(*items.shape, 1, dtype=self.counts.dtype, device=items.device)

    def item_embeddings(self) -> Tensor:
        """float64[C + 1, 1]: training counts, row 0 = 0."""
        return self.counts
