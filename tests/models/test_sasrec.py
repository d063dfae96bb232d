"""SASRec specifics: parameter count, a naive per-row reference, positions, validation."""

from __future__ import annotations

import math

import pytest
import torch

from seqrec.config import ModelConfig
from seqrec.errors import ConfigError, SeqrecError
from seqrec.models import SASRec, build_model, sasrec


def test_parameter_count_matches_hand_computation() -> None:
    C, d, maxlen = 12101, 64, 50
    item_table = (C + 1) * d  # 774,528 (row 0 = padding)
    positions = maxlen * d  # 3,200
    attention = 4 * (d * d + d)  # Q, K, V, output projections with biases: 16,640
    ffn = 2 * (d * d + d)  # two point-wise layers with biases: 8,320
    norms = 2 * 2 * d  # attention-query LayerNorm + FFN LayerNorm: 256
    block = attention + ffn + norms  # 25,216
    final_norm = 2 * d  # 128
    expected = item_table + positions + 2 * block + final_norm
    assert expected == 828_288
    model = SASRec(C, dim=d, layers=2, heads=1, maxlen=maxlen)
    assert sum(p.numel() for p in model.parameters()) == expected


def test_bert_block_parameter_count_matches_hand_computation() -> None:
    C, d, maxlen = 12101, 64, 50
    table_and_positions = (C + 1) * d + maxlen * d  # 777,728
    emb_norm = 2 * d  # 128
    attention = 4 * (d * d + d)  # Q, K, V, output projections: 16,640
    ffn = (d * 4 * d + 4 * d) + (4 * d * d + d)  # d -> 4d -> d with biases: 33,088
    norms = 2 * 2 * d  # after attention, after the feed-forward: 256
    expected = table_and_positions + emb_norm + 2 * (attention + ffn + norms)
    assert expected == 877_824  # the figure in the module docstring
    model = SASRec(C, dim=d, layers=2, heads=2, maxlen=maxlen, block="bert")
    assert sum(p.numel() for p in model.parameters()) == expected


def _layer_norm(x: torch.Tensor, norm: torch.nn.LayerNorm, eps: float = 1e-8) -> torch.Tensor:
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * norm.weight + norm.bias


def _causal_attention(
    attn: torch.nn.Module, q_in: torch.Tensor, kv_in: torch.Tensor, heads: int
) -> torch.Tensor:
    """softmax(Q Kᵀ / √d_h + causal mask) V per head, then the output projection: (n, d)."""
    n, d = q_in.shape
    dh = d // heads
    Q = q_in @ attn.q_proj.weight.T + attn.q_proj.bias
    K = kv_in @ attn.k_proj.weight.T + attn.k_proj.bias
    V = kv_in @ attn.v_proj.weight.T + attn.v_proj.bias
    out = []
    for h in range(heads):
        s = slice(h * dh, (h + 1) * dh)
        scores = Q[:, s] @ K[:, s].T / math.sqrt(dh)  # (n, n)
        scores = scores.masked_fill(torch.ones(n, n).triu(1).bool(), float("-inf"))
        out.append(torch.softmax(scores, dim=-1) @ V[:, s])
    return torch.cat(out, dim=-1) @ attn.out_proj.weight.T + attn.out_proj.bias


def naive_sasrec(model: SASRec, seq: list[int]) -> torch.Tensor:
    """One row with no padding at all, written from the paper's equations: (n, d)."""
    n, d = len(seq), model.dim
    pos = torch.arange(model.maxlen - n, model.maxlen)  # the last item is position maxlen-1
    x = model.item_emb.weight[torch.tensor(seq)] * math.sqrt(d) + model.pos_emb.weight[pos]
    for blk in model.blocks:
        q_in = _layer_norm(x, blk.attn_norm)
        x = q_in + _causal_attention(blk.attn, q_in, x, model.heads)
        x = _layer_norm(x, blk.ffn_norm)
        f = blk.ffn
        x = x + torch.relu(x @ f.fc1.weight.T + f.fc1.bias) @ f.fc2.weight.T + f.fc2.bias
    return _layer_norm(x, model.final_norm)


def naive_bert_sasrec(model: SASRec, seq: list[int]) -> torch.Tensor:
    """One unpadded row through S3-Rec's / RecBole's SASRec, written from BERT's equations (post-LN
    residuals, erf GELU, 4d-wide feed-forward, embedding LayerNorm, no final norm): (n, d)."""
    n = len(seq)
    pos = torch.arange(model.maxlen - n, model.maxlen)
    x = model.item_emb.weight[torch.tensor(seq)] + model.pos_emb.weight[pos]
    x = _layer_norm(x, model.emb_norm, eps=1e-12)
    for blk in model.blocks:
        x = _layer_norm(x + _causal_attention(blk.attn, x, x, model.heads), blk.attn_norm, 1e-12)
        inner = x @ blk.fc1.weight.T + blk.fc1.bias  # (n, 4d)
        inner = inner * 0.5 * (1.0 + torch.erf(inner / math.sqrt(2.0)))
        x = _layer_norm(x + inner @ blk.fc2.weight.T + blk.fc2.bias, blk.ffn_norm, 1e-12)
    return x


def _padded_rows_match_naive(model: SASRec, naive) -> None:
    rows = [[4, 9, 30, 2, 2, 17, 5], [1], [8, 3, 12], [6, 7, 8, 9, 10, 11, 12, 13, 14, 15]]
    for width in (10, 7):  # full window and a trimmed batch (the 10-long row is then cut)
        x = torch.zeros(len(rows), width, dtype=torch.long)
        for i, r in enumerate(rows):
            r = r[-width:]
            x[i, width - len(r) :] = torch.tensor(r)
        h = model.encode(x)
        for i, r in enumerate(rows):
            r = r[-width:]
            expected = naive(model, r)
            torch.testing.assert_close(h[i, width - len(r) :], expected, rtol=1e-4, atol=1e-5)


def _perturb_vectors(model: SASRec) -> None:
    with torch.no_grad():  # non-trivial norms and biases so that every term is exercised
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))


@pytest.mark.parametrize("heads", [1, 2])
def test_matches_naive_reference_on_padded_batches(heads: int) -> None:
    torch.manual_seed(0)
    model = SASRec(30, dim=16, layers=2, heads=heads, dropout=0.3, maxlen=10).eval()
    _perturb_vectors(model)
    _padded_rows_match_naive(model, naive_sasrec)


@pytest.mark.parametrize("heads", [1, 2])
def test_bert_block_matches_naive_reference_on_padded_batches(heads: int) -> None:
    torch.manual_seed(0)
    model = SASRec(30, dim=16, layers=2, heads=heads, dropout=0.3, maxlen=10, block="bert")
    model.eval()
    _perturb_vectors(model)
    _padded_rows_match_naive(model, naive_bert_sasrec)
    # and it is a different function from the default block with the same seed
    torch.manual_seed(0)
    other = SASRec(30, dim=16, layers=2, heads=heads, maxlen=10).eval()
    x = torch.tensor([[0, 4, 9, 30]])
    assert model.encode(x).shape == other.encode(x).shape
    assert not torch.allclose(model.encode(x), other.encode(x))


def test_positions_are_anchored_at_the_end() -> None:
    """A one-column batch puts its item at position maxlen-1, not 0 (checked against the block
    equations written out for a single key, where the attention softmax is exactly 1)."""
    torch.manual_seed(0)
    model = SASRec(10, dim=8, layers=1, heads=1, maxlen=6).eval()
    x = torch.tensor([[3]])
    expected = model.item_emb.weight[3] * math.sqrt(8) + model.pos_emb.weight[5]
    blk = model.blocks[0]
    q = _layer_norm(expected, blk.attn_norm)
    v = expected @ blk.attn.v_proj.weight.T + blk.attn.v_proj.bias
    y = q + v @ blk.attn.out_proj.weight.T + blk.attn.out_proj.bias  # one key: softmax = 1
    y = _layer_norm(y, blk.ffn_norm)
    y = y + torch.relu(y @ blk.ffn.fc1.weight.T + blk.ffn.fc1.bias) @ blk.ffn.fc2.weight.T
    y = _layer_norm(y + blk.ffn.fc2.bias, model.final_norm)
    torch.testing.assert_close(model.encode(x)[0, 0], y, rtol=1e-5, atol=1e-5)


def test_padding_rows_are_zero_before_final_norm_and_finite_in_training() -> None:
    torch.manual_seed(0)
    model = SASRec(10, dim=8, layers=2, heads=2, dropout=0.5, maxlen=6).train()
    with torch.no_grad():  # non-zero biases: a padding row would drift away from 0 if not reset
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
    x = torch.tensor([[0, 0, 0, 0], [0, 0, 1, 2]])
    h = model.encode(x)
    assert torch.isfinite(h).all()
    h.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    model.eval()
    # padding rows are zeroed after the embedding and after every block, so their output is the
    # final LayerNorm of a zero vector, i.e. its bias
    torch.testing.assert_close(model.encode(x)[0], model.final_norm.bias.expand(4, 8))


def test_initialisation() -> None:
    torch.manual_seed(0)
    d = 64
    model = SASRec(5000, dim=d, layers=2, maxlen=50)
    table = model.item_emb.weight
    assert torch.equal(table[0], torch.zeros(d))
    # xavier_normal_: std = sqrt(2 / (fan_in + fan_out))
    assert table[1:].std().item() == pytest.approx(math.sqrt(2 / (5001 + d)), rel=0.05)
    w = model.blocks[0].ffn.fc1.weight
    assert w.std().item() == pytest.approx(math.sqrt(2 / (2 * d)), rel=0.1)
    assert torch.equal(model.blocks[0].attn.q_proj.bias, torch.zeros(d))
    assert model.final_norm.eps == 1e-8


def test_normal_initialisation() -> None:
    """init="normal": N(0, 0.02) on every Linear and Embedding weight (S3-Rec, RecBole)."""
    torch.manual_seed(0)
    d = 64
    model = SASRec(5000, dim=d, layers=2, maxlen=50, block="bert", init="normal")
    table = model.item_emb.weight
    assert torch.equal(table[0], torch.zeros(d))
    assert table[1:].std().item() == pytest.approx(0.02, rel=0.02)
    assert table[1:].mean().abs().item() < 1e-3
    for weight in (
        model.pos_emb.weight,
        model.blocks[1].fc2.weight,
        model.blocks[0].attn.k_proj.weight,
    ):
        assert weight.std().item() == pytest.approx(0.02, rel=0.1)
    assert torch.equal(model.blocks[0].fc1.bias, torch.zeros(4 * d))
    assert torch.equal(model.emb_norm.weight, torch.ones(d))
    assert model.blocks[0].ffn_norm.eps == 1e-12
    # the default block takes it too (only the weights' distribution changes)
    plain = SASRec(5000, dim=d, layers=2, maxlen=50, init="normal")
    assert plain.blocks[0].ffn.fc1.weight.std().item() == pytest.approx(0.02, rel=0.1)


def test_block_validation() -> None:
    with pytest.raises(ConfigError, match="block"):
        SASRec(10, block="post-ln")
    with pytest.raises(ConfigError, match="'sasrec' block"):
        SASRec(10, block="bert", residual="input")
    with pytest.raises(ConfigError, match="'sasrec' block"):
        SASRec(10, block="bert", padding_keys="attend")
    with pytest.raises(ConfigError, match="normal"):
        SASRec(10, block="bert", init="freerec")
    with pytest.raises(ConfigError, match="init"):
        SASRec(10, init="uniform")
    model = build_model(ModelConfig(name="sasrec", block="bert", init="normal"), 10)
    assert isinstance(model.blocks[0], sasrec.BertBlock) and model.init == "normal"


def test_from_config_and_validation() -> None:
    cfg = ModelConfig(name="sasrec", dim=32, layers=3, heads=4, dropout=0.1, maxlen=20)
    model = build_model(cfg, 100)
    assert isinstance(model, SASRec)
    assert (model.dim, len(model.blocks), model.heads, model.dropout, model.maxlen) == (
        32,
        3,
        4,
        0.1,
        20,
    )
    assert model.pos_emb.weight.shape == (20, 32)
    with pytest.raises(ConfigError, match="divisible"):
        SASRec(10, dim=10, heads=3)
    with pytest.raises(ConfigError, match="dropout"):
        SASRec(10, dropout=1.0)
    with pytest.raises(ConfigError, match="n_items"):
        SASRec(0)
    with pytest.raises(SeqrecError, match=r"model\.maxlen is 20"):
        model.encode(torch.ones(2, 21, dtype=torch.long))


def full_window_causal_only(model: SASRec, items: torch.Tensor) -> torch.Tensor:
    """The pmixer / FreeRec forward: a maxlen-wide left-padded window and a causal mask only, so
    real queries also attend to every padding key (a zero row). (B, maxlen, d)."""
    B, L = items.shape
    window = torch.nn.functional.pad(items, (model.maxlen - L, 0))  # (B, maxlen)
    keep = (window != 0).unsqueeze(-1)
    pos = torch.arange(model.maxlen)
    x = (model.item_emb(window) * math.sqrt(model.dim) + model.pos_emb(pos)) * keep
    causal = torch.ones(model.maxlen, model.maxlen, dtype=torch.bool).tril()
    allowed = causal.expand(B, 1, -1, -1)
    for block in model.blocks:
        x = block(x, allowed) * keep
    return model.final_norm(x)


@pytest.mark.parametrize("residual", ["query", "input"])
def test_attend_padding_equals_the_full_causal_only_window(residual: str) -> None:
    """padding_keys="attend" on a trimmed batch equals the references' full window."""
    torch.manual_seed(0)
    model = SASRec(40, dim=16, layers=2, heads=2, maxlen=12, residual=residual)
    model.padding_keys = "attend"
    for block in model.blocks:  # non-zero biases: padding keys then carry real weight
        for lin in (block.attn.k_proj, block.attn.v_proj, block.attn.q_proj):
            torch.nn.init.normal_(lin.bias, std=0.5)
    model.eval()
    items = torch.tensor([[0, 0, 3, 4, 5], [1, 2, 3, 4, 5], [0, 0, 0, 0, 7]])
    got = model.encode(items)  # (B, 5, d)
    want = full_window_causal_only(model, items)[:, -items.shape[1] :]
    real = items != 0
    torch.testing.assert_close(got[real], want[real], rtol=1e-5, atol=1e-5)
    # and the masked default differs from it: the option is not a no-op
    model.padding_keys = "masked"
    assert not torch.allclose(model.encode(items)[real], want[real], atol=1e-3)


def test_residual_input_differs_from_query() -> None:
    torch.manual_seed(0)
    a = SASRec(30, dim=16, layers=1, maxlen=8, residual="query").eval()
    b = SASRec(30, dim=16, layers=1, maxlen=8, residual="input").eval()
    b.load_state_dict(a.state_dict())
    items = torch.tensor([[0, 1, 2, 3]])
    assert not torch.allclose(a.encode(items), b.encode(items))
    with pytest.raises(ConfigError, match="residual"):
        SASRec(30, residual="pre")
    with pytest.raises(ConfigError, match="padding_keys"):
        SASRec(30, padding_keys="none")


@pytest.mark.parametrize(
    ("block", "residual", "padding_keys"),
    [
        ("sasrec", "query", "masked"),
        ("sasrec", "query", "attend"),
        ("sasrec", "input", "masked"),
        ("sasrec", "input", "attend"),
        ("bert", "query", "masked"),
    ],
)
@pytest.mark.parametrize("layers", [1, 3])
def test_packed_paths_equal_padded_encode(
    block: str, residual: str, padding_keys: str, layers: int
) -> None:
    """encode_real / encode_last (projections on real positions only, attention on the grid,
    last block's last queries only) equal encode for every variant, rows of all lengths."""
    torch.manual_seed(3)
    model = SASRec(
        30,
        dim=8,
        layers=layers,
        heads=2,
        dropout=0.0,
        maxlen=9,
        block=block,
        residual=residual,
        padding_keys=padding_keys,
    ).double()
    with torch.no_grad():  # non-zero biases too: the padding sink's key and value are biases
        for param in model.parameters():
            param.normal_(0.0, 0.4)
        model.item_emb.weight[0] = 0.0
    x = torch.zeros(6, 9, dtype=torch.long)
    for b, n in enumerate([9, 1, 4, 0, 2, 7]):
        if n:
            x[b, -n:] = torch.randint(1, 31, (n,))
    ref = model.encode(x)  # (B, L, d)
    hidden, index = model.encode_real(x)
    torch.testing.assert_close(hidden, ref.reshape(-1, 8)[index], rtol=1e-12, atol=1e-12)
    nonempty = x[x[:, -1] > 0]  # 23 of 45 cells real: packed
    torch.testing.assert_close(
        model.encode_last(nonempty), model.encode(nonempty)[:, -1], rtol=1e-12, atol=1e-12
    )
    # nearly full rows, as in length-sorted ranking blocks: computed on the whole grid
    dense = torch.randint(1, 31, (5, 9))
    dense[1, :2] = 0
    dense[3, :1] = 0
    assert (dense > 0).float().mean() >= sasrec.DENSE_FILL
    torch.testing.assert_close(
        model.encode_last(dense), model.encode(dense)[:, -1], rtol=1e-12, atol=1e-12
    )


def test_encode_last_refuses_an_empty_row() -> None:
    model = SASRec(5, dim=4, maxlen=3).eval()
    x = torch.tensor([[0, 1, 2], [0, 0, 0]])
    with pytest.raises(SeqrecError, match="at least one item"):
        model.encode_last(x)
