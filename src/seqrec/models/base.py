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

    def encode_real(self, items: Tensor) -> tuple[Tensor, Tensor]:
        """The hidden states of the non-padding positions only.

        items: int64[B, L], left-padded -> (hidden float[T, d], index int64[T]) where ``index``
        is each real position's flat index ``b * L + j`` into ``items`` (row-major order, T real
        positions). Equal to ``encode(items).reshape(B * L, d)[index]``, which is the default;
        a model may compute it without spending work on padding (SASRec does).
        """
        index = real_positions(items)  # (T,)
        hidden = self.encode(items)  # (B, L, d)
        return hidden.reshape(-1, hidden.shape[-1])[index], index

    def encode_last(self, items: Tensor) -> Tensor:
        """items: int64[B, L], left-padded, every row non-empty -> float[B, d], the hidden state
        at the last column (what ranking needs). Equal to ``encode(items)[:, -1]``, the default;
        a model may skip work the last position does not need (SASRec does)."""
        return self.encode(items)[:, -1, :]

    #: True when :meth:`encode_real` spends no work on padding, so the trainer can encode a
    #: whole batch at once instead of in length pieces
    packs_padding: bool = False


def real_positions(items: Tensor) -> Tensor:
    """int64[T]: flat indices ``b * L + j`` of the non-padding cells of a left-padded (B, L)."""
    return items.reshape(-1).nonzero().squeeze(1)
