"""SASRec: self-attentive sequential recommendation (Kang & McAuley, ICDM 2018).

Faithful to the paper and its two reference implementations (the authors' TensorFlow code,
``kang205/SASRec``, and the widely used PyTorch port, ``pmixer/SASRec.pytorch``)::

    x      = dropout(E[items] * sqrt(d) + P[positions])      # (B, L, d), then padding rows := 0
    for each of `layers` blocks:
        q  = LayerNorm(x)                                    # layer-normed queries only
        x  = q + MultiHeadAttention(q, k=x, v=x, causal & key-not-padding mask)
        x  = LayerNorm(x)
        x  = x + Dropout(W2 Dropout(ReLU(W1 x + b1)) + b2)  # point-wise FFN with its own residual
        x  = x * not_padding                                 # padding rows := 0
    hidden = LayerNorm(x)                                    # final LayerNorm

All LayerNorms use eps = 1e-8 as both references do. Attention has input projections for Q, K,
V and an output projection (as ``torch.nn.MultiheadAttention`` in the PyTorch port).

``block="bert"`` is the post-LN Transformer block of BERT that S3-Rec's code (Zhou et al., CIKM
2020) and RecBole build their SASRec from, the SASRec behind Li et al. 2023's numbers::

    x      = dropout(LayerNorm(E[items] + P[positions]))   # no sqrt(d) scale; padding rows := 0
    for each block:
        x  = LayerNorm(x + Dropout(MultiHeadAttention(x, x, x, same mask)))
        x  = LayerNorm(x + Dropout(W2 GELU(W1 x + b1) + b2))  # W1: d -> 4d, W2: 4d -> d
        x  = x * not_padding
    hidden = x                                               # no final LayerNorm

with LayerNorm eps = 1e-12, the same attention and mask, and N(0, 0.02) weights as their
initialisation (``init="normal"``).

Positions with left padding: the most recent item is always in the last column, and its position
index is always ``maxlen - 1`` whatever the batch width L, i.e. ``positions = arange(maxlen - L,
maxlen)``. This is what both references compute on a full ``maxlen`` window, so a batch trimmed
to its longest row gives exactly the same hidden states as the full window (S3-Rec's code too
pads every input to ``maxlen``, so this holds for the ``bert`` block as well). The attention mask
also hides padding keys (as the TF reference does), so extra left padding never changes the
hidden state of a real position. A padding query would then see no key at all; it may attend to
itself (the diagonal is always allowed) so that no NaN appears; its output is zeroed anyway.

Initialisation (stated, as the references differ in details): every weight matrix, including
the item and position tables, is ``xavier_normal_`` as in the PyTorch port; biases start at 0
(TF's default, and ``nn.MultiheadAttention``'s for its projections); LayerNorm weight 1, bias 0;
row 0 of the item table (padding) is 0 and receives no gradient from the input lookup
(``padding_idx=0``).

Parameters: (C + 1)·d item table + maxlen·d positions + layers·(6d² + 10d) + 2d final norm;
for C = 12101, d = 64, maxlen = 50, 2 blocks: 828,288. With ``block="bert"``: (C + 1)·d + maxlen·d
+ 2d embedding norm + layers·(12d² + 13d); for the same sizes, 877,824.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqrec.config import BLOCKS, INITS, PADDING_KEYS, RESIDUALS, ModelConfig, check_choice
from seqrec.errors import ConfigError, SeqrecError
from seqrec.models.base import SequentialRecommender, real_positions
from seqrec.models.dropout import FastDropout, dropout

LN_EPS = 1e-8  # both reference implementations
BERT_LN_EPS = 1e-12  # S3-Rec and RecBole
NORMAL_INIT_STD = 0.02  # S3-Rec's and RecBole's initializer_range

#: encode_last computes the whole (B, L) grid, padding included, when at least this share of
#: its cells is real (length-sorted ranking blocks), instead of packing the real ones
DENSE_FILL = 0.75


class CausalSelfAttention(nn.Module):
    """Multi-head attention with separate query and key/value inputs (SASRec: Q = LN(x), K = V = x)."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, queries: Tensor, keys: Tensor, allowed: Tensor) -> Tensor:
        """queries: (B, L, d); keys: (B, L', d) with L' = L, or L + 1 with a leading all-zero
        "padding" key; allowed: (B, 1, L, L') bool (True where query i may see key j) or float
        (added to the attention logits)."""
        B, L, d = queries.shape
        H = self.heads

        def split(t: Tensor) -> Tensor:  # (B, L', d) -> (B, H, L', d/H)
            return t.view(B, t.shape[1], H, d // H).transpose(1, 2)

        q = split(self.q_proj(queries))  # (B, H, L, d/H)
        k = split(self.k_proj(keys))  # (B, H, L', d/H)
        v = split(self.v_proj(keys))  # (B, H, L', d/H)
        p = self.dropout if self.training else 0.0
        out = _attend(q, k, v, allowed, p)  # (B, H, L, d/H)
        out = out.transpose(1, 2).reshape(B, L, d)  # (B, L, d)
        return self.out_proj(out)  # (B, L, d)

    def forward_packed(
        self,
        queries: Tensor,
        query_index: Tensor | None,
        keys: Tensor,
        index: Tensor | None,
        grid: tuple[int, int, int],
        allowed: Tensor,
        sink: bool,
    ) -> Tensor:
        """The same attention with queries and keys given only at real positions.

        queries: (Tq, d) at flat cells ``query_index`` of a (B, Lq) grid; keys: (T, d) at flat
        cells ``index`` of the (B, L) grid; grid = (B, Lq, L); allowed: the mask of
        :meth:`forward` restricted to the Lq query columns. Only attention itself runs on the
        padded grid (padding keys are masked, so their zero fill never matters); projections run
        on real positions only. With ``sink`` the leading all-zero key row of :meth:`forward`
        becomes the projection biases. An index of None means every cell of its grid, in
        order (the dense case: nothing to scatter or gather). Returns (Tq, d).
        """
        B, Lq, L = grid
        d, H = queries.shape[1], self.heads
        # K and V projections in one matmul and one scatter (same input)
        kv_weight = torch.cat([self.k_proj.weight, self.v_proj.weight])  # (2d, d)
        kv_bias = torch.cat([self.k_proj.bias, self.v_proj.bias])  # (2d,)
        kv = _scatter_rows(F.linear(keys, kv_weight, kv_bias), index, B * L)  # (B * L, 2d)
        k, v = kv.view(B, L, 2 * d).split(d, dim=2)  # (B, L, d) each
        if sink:  # the zero key row of forward(): its projections are the biases
            k = torch.cat([self.k_proj.bias.expand(B, 1, d), k], dim=1)  # (B, L + 1, d)
            v = torch.cat([self.v_proj.bias.expand(B, 1, d), v], dim=1)  # (B, L + 1, d)
        q = _scatter_rows(self.q_proj(queries), query_index, B * Lq).view(B, Lq, d)  # (B, Lq, d)

        def split(t: Tensor) -> Tensor:  # (B, L', d) -> (B, H, L', d/H)
            return t.view(B, t.shape[1], H, d // H).transpose(1, 2)

        p = self.dropout if self.training else 0.0
        out = _attend(split(q), split(k), split(v), allowed, p)  # (B, H, Lq, d/H)
        out = out.transpose(1, 2).reshape(B * Lq, d)  # (B * Lq, d)
        if query_index is not None:
            out = out[query_index]  # (Tq, d)
        return self.out_proj(out)  # (Tq, d)


def _attend(q: Tensor, k: Tensor, v: Tensor, allowed: Tensor, p: float) -> Tensor:
    """softmax(q kᵀ / √d_h + mask) v with dropout rate p on the attention weights.

    q: (B, H, Lq, d_h); k, v: (B, H, L', d_h); allowed: bool (True = may attend) or an additive
    float bias, broadcastable to (B, H, Lq, L'). Without dropout and with one query per row
    (the ranking path's last block) this is torch's fused scaled_dot_product_attention, which is
    quicker there; with several queries the plain softmax below is quicker at SASRec's lengths
    (measured up to L = 50); with dropout the weights are dropped by the cheaper CPU mask of
    :mod:`seqrec.models.dropout` (the fused kernel would draw them with bernoulli_)."""
    if p == 0.0 and q.shape[2] == 1:  # one query per row: the fused kernel is quicker
        return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    scores = q @ k.transpose(-2, -1) * (q.shape[-1] ** -0.5)  # (B, H, Lq, L')
    if allowed.dtype == torch.bool:
        scores = scores.masked_fill(~allowed, float("-inf"))
    else:
        scores = scores + allowed
    weights = torch.softmax(scores, dim=-1)  # (B, H, Lq, L')
    if p > 0.0:
        weights = dropout(weights, p, training=True)
    return weights @ v  # (B, H, Lq, d_h)


def _scatter_rows(rows: Tensor, index: Tensor | None, n: int) -> Tensor:
    """(n, d) zeros with ``rows`` (T, d) written at ``index`` (T,); differentiable.
    ``index=None`` means rows already cover all n cells in order (returned as they are)."""
    if index is None:
        return rows
    return rows.new_zeros(n, rows.shape[1]).index_copy(0, index, rows)


class PointWiseFeedForward(nn.Module):
    """x + Dropout(W2 Dropout(ReLU(W1 x))): the references' two 1x1 convolutions, as Linear layers."""

    def __init__(self, dim: int, dropout: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, dim)
        self.fc2 = nn.Linear(dim, dim)
        self.dropout1 = FastDropout(dropout)
        self.dropout2 = FastDropout(dropout)

    def forward(self, x: Tensor) -> Tensor:  # (B, L, d) -> (B, L, d)
        return x + self.dropout2(self.fc2(self.dropout1(F.relu(self.fc1(x)))))


class _AttentionBlock(nn.Module):
    """What both blocks share: attention over the block input, then the block's own residuals,
    norms and feed-forward. A block says which rows are the queries and the attention residual
    (:meth:`_queries`) and what follows the attention (:meth:`_after_attention`)."""

    attn: CausalSelfAttention

    def _queries(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x (..., d) -> (queries, residual base), each (..., d)."""
        raise NotImplementedError

    def _after_attention(self, base: Tensor, attended: Tensor) -> Tensor:
        """(residual base, attention output), each (..., d) -> the block's output (..., d)."""
        raise NotImplementedError

    def forward(self, x: Tensor, allowed: Tensor, sink: bool = False) -> Tensor:
        """x: (B, L, d) -> (B, L, d). With ``sink`` the keys get one leading all-zero row that
        stands for the padding of the maxlen window (its weight comes in ``allowed``)."""
        q, base = self._queries(x)  # (B, L, d) each
        keys = F.pad(x, (0, 0, 1, 0)) if sink else x  # (B, L or L + 1, d)
        return self._after_attention(base, self.attn(q, keys, allowed))  # (B, L, d)

    def forward_packed(
        self,
        x: Tensor,
        index: Tensor | None,
        shape: tuple[int, int],
        allowed: Tensor,
        sink: bool,
        last: Tensor | None = None,
    ) -> Tensor:
        """:meth:`forward` on real positions only: x (T, d) at flat cells ``index`` of the
        (B, L) grid -> (T, d) (``index=None``: x covers the whole grid, padding included).
        With ``last`` (B,), the positions in x of each row's last column, only those queries
        are computed -> (B, d) (enough for the final block when ranking)."""
        B, L = shape
        q, base = self._queries(x)  # (T, d) each
        if last is None:
            out = self.attn.forward_packed(q, index, x, index, (B, L, L), allowed, sink)
        else:
            q, base = q[last], base[last]  # (B, d)
            mask = allowed[:, :, -1:, :]  # (B, 1, 1, L')
            out = self.attn.forward_packed(q, None, x, index, (B, 1, L), mask, sink)
        return self._after_attention(base, out)  # (T, d) or (B, d)


class Block(_AttentionBlock):
    """One SASRec block: layer-normed-query attention with residual, LayerNorm, point-wise FFN."""

    def __init__(self, dim: int, heads: int, dropout: float, residual: str = "query") -> None:
        super().__init__()
        self.residual = residual
        self.attn_norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = CausalSelfAttention(dim, heads, dropout)
        self.ffn_norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.ffn = PointWiseFeedForward(dim, dropout)

    def _queries(self, x: Tensor) -> tuple[Tensor, Tensor]:
        q = self.attn_norm(x)  # queries are layer-normed; the keys and values are x itself
        return q, (q if self.residual == "query" else x)

    def _after_attention(self, base: Tensor, attended: Tensor) -> Tensor:
        return self.ffn(self.ffn_norm(base + attended))


class BertBlock(_AttentionBlock):
    """One post-LN Transformer block as S3-Rec's and RecBole's SASRec (see the module docstring):
    x = LN(x + Dropout(MHA(x))), then x = LN(x + Dropout(W2 GELU(W1 x))) with a 4d-wide W1.
    Padding keys are always masked (no ``sink``)."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.attn = CausalSelfAttention(dim, heads, dropout)
        self.attn_dropout = FastDropout(dropout)
        self.attn_norm = nn.LayerNorm(dim, eps=BERT_LN_EPS)
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.fc2 = nn.Linear(4 * dim, dim)
        self.ffn_dropout = FastDropout(dropout)
        self.ffn_norm = nn.LayerNorm(dim, eps=BERT_LN_EPS)

    def _queries(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x, x

    def _after_attention(self, base: Tensor, attended: Tensor) -> Tensor:
        x = self.attn_norm(base + self.attn_dropout(attended))
        return self.ffn_norm(x + self.ffn_dropout(self.fc2(F.gelu(self.fc1(x)))))


class SASRec(SequentialRecommender):
    """SASRec encoder; scores are ``encode(items) @ item_embeddings().T`` (tied item table).

    Args:
        n_items: catalogue size C (items are 1..C, 0 = padding).
        dim: hidden size d (= item embedding size).
        layers: number of self-attention blocks.
        heads: attention heads (must divide ``dim``).
        dropout: embedding, attention, and FFN dropout rate.
        maxlen: longest input; the size of the position table.
        block: ``sasrec`` (Kang & McAuley) or ``bert`` (S3-Rec / RecBole); see the module.
        residual, padding_keys: variants of the ``sasrec`` block's reference codes.
        init: ``xavier``, ``freerec`` or ``normal``; see :meth:`reset_parameters`.
    """

    def __init__(
        self,
        n_items: int,
        *,
        dim: int = 64,
        layers: int = 2,
        heads: int = 1,
        dropout: float = 0.2,
        maxlen: int = 50,
        block: str = "sasrec",
        residual: str = "query",
        padding_keys: str = "masked",
        init: str = "xavier",
    ) -> None:
        super().__init__()
        if n_items < 1:
            raise ConfigError(f"SASRec needs at least one item, got n_items={n_items}")
        if dim < 1 or layers < 1 or heads < 1 or maxlen < 1:
            raise ConfigError(
                f"SASRec: dim, layers, heads and maxlen must be >= 1, got dim={dim}, "
                f"layers={layers}, heads={heads}, maxlen={maxlen}"
            )
        if dim % heads:
            raise ConfigError(
                f"SASRec: model.dim ({dim}) must be divisible by model.heads ({heads})"
            )
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"SASRec: model.dropout must be in [0, 1), got {dropout}")
        check_choice("model.residual", residual, RESIDUALS)
        check_choice("model.padding_keys", padding_keys, PADDING_KEYS)
        check_choice("model.init", init, INITS)
        check_choice("model.block", block, BLOCKS)
        if block == "bert" and (residual, padding_keys) != ("query", "masked"):
            raise ConfigError(
                "SASRec: model.residual and model.padding_keys are variants of the 'sasrec' "
                "block; the 'bert' block has post-LN residuals and hides padding keys"
            )
        if block == "bert" and init == "freerec":
            raise ConfigError("SASRec: init 'freerec' is for the 'sasrec' block; use 'normal'")
        self.block, self.init = block, init
        self.residual, self.padding_keys = residual, padding_keys
        self.n_items, self.dim, self.layers, self.heads = n_items, dim, layers, heads
        self.dropout, self.maxlen = dropout, maxlen

        self.item_emb = nn.Embedding(n_items + 1, dim, padding_idx=0)  # (C+1, d), tied output table
        self.pos_emb = nn.Embedding(maxlen, dim)  # (maxlen, d); last column = position maxlen-1
        self.emb_dropout = FastDropout(dropout)
        self.emb_norm: nn.Module
        self.final_norm: nn.Module
        self.blocks: nn.ModuleList
        if block == "bert":
            self.emb_norm = nn.LayerNorm(dim, eps=BERT_LN_EPS)
            self.blocks = nn.ModuleList(BertBlock(dim, heads, dropout) for _ in range(layers))
            self.final_norm = nn.Identity()
        else:
            self.emb_norm = nn.Identity()
            self.blocks = nn.ModuleList(Block(dim, heads, dropout, residual) for _ in range(layers))
            self.final_norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.reset_parameters()

    @classmethod
    def from_config(cls, cfg: ModelConfig, n_items: int) -> SASRec:
        """Build from a :class:`seqrec.config.ModelConfig` (every model field but gru_variant)."""
        return cls(
            n_items,
            dim=cfg.dim,
            layers=cfg.layers,
            heads=cfg.heads,
            dropout=cfg.dropout,
            maxlen=cfg.maxlen,
            block=cfg.block,
            residual=cfg.residual,
            padding_keys=cfg.padding_keys,
            init=cfg.init,
        )

    def reset_parameters(self) -> None:
        """``xavier``: xavier_normal_ on every weight matrix, zero biases (pmixer's port).
        ``freerec``: as Xu et al.'s SASRec (FreeRec), where only nn.Linear and nn.Embedding are
        re-initialised: the item/position tables and the attention output projection get
        xavier_normal_; Q/K/V keep nn.MultiheadAttention's xavier_uniform_ over the stacked
        (3d, d) matrix with zero bias; the point-wise layers keep nn.Conv1d's default
        (kaiming_uniform_(a=√5), bias U(±1/√d)). ``normal``: N(0, 0.02) on every nn.Linear and
        nn.Embedding weight, zero biases (S3-Rec, RecBole). LayerNorm (1, 0) and padding row 0 in
        all three."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                if self.init == "normal":
                    nn.init.normal_(module.weight, 0.0, NORMAL_INIT_STD)
                else:
                    nn.init.xavier_normal_(module.weight)
                if isinstance(module, nn.Linear):
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if self.init == "freerec":
            d = self.dim
            for block in self.blocks:
                qkv = torch.empty(3 * d, d)  # (3d, d), as nn.MultiheadAttention.in_proj_weight
                nn.init.xavier_uniform_(qkv)
                attn = block.attn
                for i, proj in enumerate((attn.q_proj, attn.k_proj, attn.v_proj)):
                    with torch.no_grad():
                        proj.weight.copy_(qkv[i * d : (i + 1) * d])
                for layer in (block.ffn.fc1, block.ffn.fc2):  # nn.Conv1d(d, d, 1) defaults
                    nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5))
                    nn.init.uniform_(layer.bias, -1 / math.sqrt(d), 1 / math.sqrt(d))
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    def item_embeddings(self) -> Tensor:
        """float[C + 1, d]: the input item table, also the output table (row 0 = padding)."""
        return self.item_emb.weight

    #: encode_real / encode_last spend no work on padding (see _encode_packed)
    packs_padding = True

    def _attention_mask(self, keep: Tensor) -> Tensor:
        """keep: bool (B, L, 1) -> the attention mask of every block: bool (B, 1, L, L), or
        float (B, 1, L, L + 1) with the padding sink (``padding_keys="attend"``)."""
        L = keep.shape[1]
        causal = torch.ones(L, L, dtype=torch.bool, device=keep.device).tril()  # (L, L), j <= i
        diagonal = torch.eye(L, dtype=torch.bool, device=keep.device)  # (L, L)
        allowed = (causal & keep.transpose(1, 2)) | diagonal  # (B, L, L): key j real, or j == i
        allowed = allowed.unsqueeze(1)  # (B, 1, L, L), broadcast over heads
        if self.padding_keys == "attend":
            dtype = self.item_emb.weight.dtype  # the bias must match the queries' dtype (see below)
            allowed = _with_padding_sink(allowed, keep, self.maxlen, dtype)  # (B, 1, L, L + 1)
        return allowed

    def _embed(self, items: Tensor, positions: Tensor) -> Tensor:
        """Item plus position embedding before dropout: E·√d + P (``sasrec``) or LN(E + P)
        (``bert``). items: int (...,); positions: int broadcastable to it -> (..., d)."""
        if self.block == "bert":
            return self.emb_norm(self.item_emb(items) + self.pos_emb(positions))
        return self.item_emb(items) * math.sqrt(self.dim) + self.pos_emb(positions)

    def encode(self, items: Tensor) -> Tensor:
        """items: int[B, L] left-padded with 0, L <= maxlen -> hidden: float[B, L, d].

        The plain padded computation (the reference the packed paths are tested against, and
        what ONNX export traces)."""
        _check_items(items, self.maxlen)
        L = items.shape[1]
        keep = (items != 0).unsqueeze(-1)  # (B, L, 1), False at padding

        positions = torch.arange(self.maxlen - L, self.maxlen, device=items.device)  # (L,)
        x = self._embed(items, positions)  # (B, L, d)
        x = self.emb_dropout(x) * keep  # (B, L, d), padding rows zeroed

        allowed = self._attention_mask(keep)
        sink = self.padding_keys == "attend"
        for block in self.blocks:
            x = block(x, allowed, sink) * keep  # (B, L, d), padding rows zeroed after every block
        return self.final_norm(x)  # (B, L, d)

    def encode_real(self, items: Tensor) -> tuple[Tensor, Tensor]:
        """(hidden (T, d), flat index (T,)) of the real positions; see the base class."""
        return self._encode_packed(items, last_only=False)

    def encode_last(self, items: Tensor) -> Tensor:
        """(B, d): the hidden state at each row's last column (rows must be non-empty)."""
        hidden, _ = self._encode_packed(items, last_only=True)
        return hidden

    def _encode_packed(self, items: Tensor, *, last_only: bool) -> tuple[Tensor, Tensor]:
        """:meth:`encode` computed on the T real positions only.

        Embeddings, LayerNorms, projections and the FFN are row-wise, so they run on a (T, d)
        matrix of real positions; only the attention product uses the (B, L) grid. With
        ``last_only`` the final block computes only the last column's queries (ranking needs
        nothing else). Same values as ``encode`` (tested), one call per batch whatever the
        lengths: no padding work, no per-piece overhead.
        Returns (hidden (T, d), index (T,)), or with ``last_only`` ((B, d), arange(B) * L + L - 1).
        """
        _check_items(items, self.maxlen)
        B, L = items.shape
        flat = items.reshape(-1)  # (B * L,)
        index = real_positions(items)  # (T,) real cells, row-major
        keep = (items != 0).unsqueeze(-1)  # (B, L, 1)
        if last_only and (index.numel() == 0 or not bool(keep[:, -1, 0].all())):
            raise SeqrecError("SASRec.encode_last: every row needs at least one item")
        # ranking blocks are length-sorted, so nearly full: computing their few padding cells
        # (masked as keys, never read) is cheaper than packing and scattering back
        cells: Tensor | None = index
        if last_only and index.numel() >= DENSE_FILL * B * L:
            cells = None  # every cell of the grid
        col = (index if cells is not None else torch.arange(B * L, device=items.device)) % L
        x = self._embed(flat if cells is None else flat[cells], col + (self.maxlen - L))
        x = self.emb_dropout(x)  # (T, d), T = B * L when dense

        allowed = self._attention_mask(keep)
        sink = self.padding_keys == "attend"
        last = None
        if last_only:
            last = (col == L - 1).nonzero().squeeze(1)  # (B,) each row's last cell, row order
        for i, block in enumerate(self.blocks):
            final = last_only and i == len(self.blocks) - 1
            x = block.forward_packed(x, cells, (B, L), allowed, sink, last if final else None)
        hidden = self.final_norm(x)  # (T, d) or (B, d)
        if last_only:
            return hidden, torch.arange(B, device=items.device) * L + (L - 1)
        return hidden, index


def _with_padding_sink(allowed: Tensor, keep: Tensor, maxlen: int, dtype: torch.dtype) -> Tensor:
    """Additive attention bias that lets every query see the padding of its maxlen window.

    In a maxlen-wide left-padded window (pmixer, FreeRec: causal mask only) each of the
    n_pad = maxlen - n_real padding keys is a zero row, so all have key b_k and value b_v: together
    they act as one key with logit q·b_k/√d + log n_pad. That single "sink" key (column 0, an
    all-zero input row) reproduces the full window exactly for any batch width.
    allowed: bool (B, 1, L, L); keep: bool (B, L, 1) -> ``dtype`` (B, 1, L, L + 1).

    ``dtype`` must be the queries' dtype: torch 2.13's fused CPU attention
    (``scaled_dot_product_attention``) accepts a float32 bias with float64 queries and returns
    wrong values (seen on an AMD EPYC, AVX2 kernels; tests/models/test_sasrec.py caught it).
    """
    n_pad = maxlen - keep.sum(dim=(1, 2))  # (B,)
    sink = torch.log(n_pad.to(dtype)).view(-1, 1, 1, 1)  # (B, 1, 1, 1); -inf if none
    sink = sink.expand(-1, 1, allowed.shape[2], 1)  # (B, 1, L, 1)
    bias = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    bias.masked_fill_(~allowed, float("-inf"))  # (B, 1, L, L)
    return torch.cat([sink, bias], dim=3)  # (B, 1, L, L + 1)


def _check_items(items: Tensor, maxlen: int) -> None:
    """Raise a one-line SeqrecError for inputs the model cannot encode (shape/dtype/length)."""
    if items.dim() != 2 or items.dtype not in (torch.int64, torch.int32) or items.shape[1] == 0:
        raise SeqrecError(
            f"SASRec.encode expects a non-empty int64 tensor (B, L) of left-padded item ids, got "
            f"{items.dtype} of shape {tuple(items.shape)}"
        )
    if items.shape[1] > maxlen:
        raise SeqrecError(
            f"SASRec.encode got {items.shape[1]} columns but model.maxlen is {maxlen}: keep only "
            f"the last {maxlen} items of each row, or train with a larger model.maxlen"
        )
