"""What every model is: an encoder of item sequences into hidden states, plus an item table.

Contract (DESIGN §2): inputs are **left-padded** with 0, so the most recent item of every row is in
the last column. ``encode`` returns one hidden state per position; the hidden state at position
``t`` may depend only on items at positions ``<= t`` (causal), and rows never interact. Padding
columns of the output are unspecified (losses and the evaluator never read them). A model never
chooses or computes a loss; scores are ``hidden @ item_embeddings().T``.
"""

from __future__ import annotations

from torch import Tensor, nn


class SequentialRecommender(nn.Module):
    """Base class. Subclasses set ``n_items`` and ``dim`` and implement the two methods."""

    n_items: int
    dim: int

    def encode(self, items: Tensor) -> Tensor:
        """items: int64[B, L], left-padded with 0 -> hidden: float[B, L, d]."""
        raise NotImplementedError

    def item_embeddings(self) -> Tensor:
        """float[C + 1, d]: the output item table (row 0 = padding), tied with the input table."""
        raise NotImplementedError
