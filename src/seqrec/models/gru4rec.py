"""GRU4Rec: a GRU over the item sequence (Hidasi et al., ICLR 2016; Hidasi & Karatzoglou 2018).

As used as a baseline by Li et al. 2023 (CCE) and RecBole: item embedding -> dropout -> GRU ->
dropout -> hidden state per position. The embedding size equals the hidden size d, so the input
table is also the output table and scores are ``hidden @ item_embeddings().T``::

    e_t = dropout(E[i_t])                                  # (B, L, d)
    h_t = GRU(e_t, h_{t-1}),  h_0 = 0                      # `layers` stacked GRU layers
    out_t = dropout(h_t)                                   # (B, L, d)

Left padding: a GRU is not invariant to a prefix of padding (even a zero input moves the state
through the biases), so each row is first *right*-aligned (its real items moved to columns
0..n-1), the GRU runs over that, and the outputs are moved back to their left-padded columns.
A trailing pad only affects outputs after the real items, which are discarded, so a real
position's hidden state depends only on the real items up to it, whatever the padding width.
The output at padding columns is 0.

Initialisation: the item table is ``xavier_normal_`` (row 0 = padding = 0, ``padding_idx=0``),
GRU weight matrices ``xavier_uniform_`` (Glorot, as the original Theano code and RecBole), GRU
biases 0. ``maxlen`` is stored for the trainer; a GRU has no position table and accepts any L.

``variant="recbole"`` is RecBole 1.2.1's GRU4Rec, the one behind Li et al. 2023's numbers::

    e_t = dropout(E[i_t]);  h_t = GRU(e_t, h_{t-1}) without biases;  out_t = W h_t + b

a bias-free GRU, a dense d x d layer after it, no dropout between GRU layers nor on the
output. RecBole initialises
only the first GRU layer's matrices (``xavier_uniform_``; deeper layers keep torch's default) and
leaves the dense layer at torch's default; so does this variant.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from seqrec.config import GRU_VARIANTS, ModelConfig, check_choice
from seqrec.errors import ConfigError, SeqrecError
from seqrec.models.base import SequentialRecommender
from seqrec.models.dropout import FastDropout


class GRU4Rec(SequentialRecommender):
    """GRU4Rec encoder; scores are ``encode(items) @ item_embeddings().T`` (tied item table).

    Args:
        n_items: catalogue size C (items are 1..C, 0 = padding).
        dim: embedding and hidden size d.
        layers: stacked GRU layers (``plain``: dropout is also applied between them).
        dropout: dropout on the input embeddings and (``plain``) on the output hidden states.
        maxlen: the trainer's window length (informational; any L is accepted).
        variant: ``plain`` or ``recbole`` (see the module docstring).
    """

    def __init__(
        self,
        n_items: int,
        *,
        dim: int = 64,
        layers: int = 1,
        dropout: float = 0.2,
        maxlen: int = 50,
        variant: str = "plain",
    ) -> None:
        super().__init__()
        if n_items < 1:
            raise ConfigError(f"GRU4Rec needs at least one item, got n_items={n_items}")
        check_choice("model.gru_variant", variant, GRU_VARIANTS)
        if dim < 1 or layers < 1 or maxlen < 1:
            raise ConfigError(
                f"GRU4Rec: dim, layers and maxlen must be >= 1, got dim={dim}, layers={layers}, "
                f"maxlen={maxlen}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"GRU4Rec: model.dropout must be in [0, 1), got {dropout}")
        self.n_items, self.dim, self.layers = n_items, dim, layers
        self.dropout, self.maxlen, self.variant = dropout, maxlen, variant
        recbole = variant == "recbole"

        self.item_emb = nn.Embedding(n_items + 1, dim, padding_idx=0)  # (C+1, d), tied output table
        self.emb_dropout = FastDropout(dropout)
        self.gru = nn.GRU(
            dim,
            dim,
            num_layers=layers,
            bias=not recbole,
            batch_first=True,
            dropout=dropout if layers > 1 and not recbole else 0.0,  # RecBole: none between
        )
        self.head: nn.Module = nn.Linear(dim, dim) if recbole else nn.Identity()
        self.out_dropout = FastDropout(0.0 if recbole else dropout)
        self.reset_parameters()

    @classmethod
    def from_config(cls, cfg: ModelConfig, n_items: int) -> GRU4Rec:
        """Build from a :class:`seqrec.config.ModelConfig` (uses dim, layers, dropout, maxlen, gru_variant)."""
        return cls(
            n_items,
            dim=cfg.dim,
            layers=cfg.layers,
            dropout=cfg.dropout,
            maxlen=cfg.maxlen,
            variant=cfg.gru_variant,
        )

    def reset_parameters(self) -> None:
        """xavier_normal_ item table with zero padding row; xavier_uniform_ GRU weights, zero
        biases (``recbole``: only layer 0's matrices, the rest and the dense head at torch's
        defaults, as RecBole)."""
        nn.init.xavier_normal_(self.item_emb.weight)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
        if self.variant == "recbole":
            self.gru.reset_parameters()
            for param in (self.gru.weight_ih_l0, self.gru.weight_hh_l0):
                nn.init.xavier_uniform_(param)
            self.head.reset_parameters()
            return
        for name, param in self.gru.named_parameters():
            if name.startswith("weight"):
                nn.init.xavier_uniform_(param)
            else:
                nn.init.zeros_(param)

    def item_embeddings(self) -> Tensor:
        """float[C + 1, d]: the input item table, also the output table (row 0 = padding)."""
        return self.item_emb.weight

    def encode(self, items: Tensor) -> Tensor:
        """items: int[B, L] left-padded with 0 -> hidden: float[B, L, d] (0 at padding columns)."""
        _check_items(items)
        B, L = items.shape
        # Leading zeros per row (ids are >= 0, so the running sum is 0 exactly over the padding).
        pad = (items.cumsum(dim=1) == 0).sum(dim=1, keepdim=True)  # (B, 1)
        cols = torch.arange(L, device=items.device).unsqueeze(0)  # (1, L)
        to_right = (cols + pad) % L  # (B, L): right-aligned column j reads left column j + pad
        to_left = (cols - pad) % L  # (B, L): left column j reads right-aligned column j - pad

        right = items.gather(1, to_right)  # (B, L), real items first, padding at the end
        x = self.emb_dropout(self.item_emb(right))  # (B, L, d)
        h, _ = self.gru(x)  # (B, L, d), h_0 = 0
        h = self.head(h)  # (B, L, d); the identity unless variant "recbole"
        h = h.gather(
            1, to_left.unsqueeze(-1).expand(B, L, self.dim)
        )  # (B, L, d), back to left-padded
        h = h * (cols >= pad).unsqueeze(-1)  # (B, L, d), padding columns := 0
        return self.out_dropout(h)  # (B, L, d)


def _check_items(items: Tensor) -> None:
    """Raise a one-line SeqrecError for inputs the model cannot encode (shape/dtype)."""
    if items.dim() != 2 or items.dtype not in (torch.int64, torch.int32) or items.shape[1] == 0:
        raise SeqrecError(
            f"GRU4Rec.encode expects a non-empty int64 tensor (B, L) of left-padded item ids, got "
            f"{items.dtype} of shape {tuple(items.shape)}"
        )
