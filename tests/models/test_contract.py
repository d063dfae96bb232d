"""The SequentialRecommender contract, checked for every registered model (DESIGN §2).

Inputs are int64[B, L] left-padded with 0; encode -> float[B, L, d]; position t depends only on
positions <= t of its own row; padding (extra, or trimmed away) never changes a real position;
item_embeddings() -> [C + 1, d] is the input table (row 0 = padding).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from seqrec.config import ModelConfig
from seqrec.errors import ConfigError, SeqrecError
from seqrec.models import MODELS, SequentialRecommender, build_model

N_ITEMS, DIM, MAXLEN = 20, 16, 8


#: every registered model, and each variant of one that changes its computation
VARIANTS: dict[str, dict[str, str]] = {name: {"name": name} for name in MODELS} | {
    "sasrec-bert": {"name": "sasrec", "block": "bert", "init": "normal"},
    "gru4rec-recbole": {"name": "gru4rec", "gru_variant": "recbole"},
}


def make(name: str, dropout: float = 0.2, seed: int = 0) -> SequentialRecommender:
    torch.manual_seed(seed)
    cfg = ModelConfig(**VARIANTS[name], dim=DIM, layers=2, heads=2, dropout=dropout, maxlen=MAXLEN)
    return build_model(cfg, N_ITEMS)


def left_pad(rows: list[list[int]], width: int) -> torch.Tensor:
    """int64[len(rows), width], each row's items right-aligned after zeros."""
    out = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, width - len(r) :] = torch.tensor(r)
    return out


ROWS = [[3, 7, 1, 9, 20, 4], [5, 2], [11, 12, 13, 14], [8]]  # longest = 6 < MAXLEN


@pytest.fixture(params=sorted(VARIANTS))
def name(request: pytest.FixtureRequest) -> str:
    return request.param


def test_registry_and_build() -> None:
    assert set(MODELS) == {"sasrec", "gru4rec"}
    with pytest.raises(ConfigError, match="did you mean 'sasrec'"):
        build_model(ModelConfig(name="sasrek"), N_ITEMS)


def test_shapes_and_types(name: str) -> None:
    model = make(name).eval()
    assert isinstance(model, SequentialRecommender)
    assert (model.n_items, model.dim) == (N_ITEMS, DIM)
    x = left_pad(ROWS, 6)
    h = model.encode(x)
    assert h.shape == (4, 6, DIM) and h.dtype == torch.float32
    assert torch.isfinite(h).all()
    assert model.item_embeddings().shape == (N_ITEMS + 1, DIM)
    assert model.encode(x.int()).shape == (4, 6, DIM)  # int32 ids are accepted too


def test_bad_inputs_raise(name: str) -> None:
    model = make(name)
    with pytest.raises(SeqrecError, match="expects"):
        model.encode(torch.ones(4, dtype=torch.long))  # 1-D
    with pytest.raises(SeqrecError, match="expects"):
        model.encode(torch.ones(2, 3))  # float ids


def test_padding_row_of_item_table(name: str) -> None:
    model = make(name).train()
    table = model.item_embeddings()
    assert torch.equal(table[0], torch.zeros(DIM))
    assert table[1:].abs().sum(dim=1).gt(0).all()
    model.encode(left_pad(ROWS, 6)).square().sum().backward()
    grad = table.grad
    assert grad is not None
    assert torch.equal(grad[0], torch.zeros(DIM))  # padding_idx: the lookup never updates row 0
    assert grad[3].abs().sum() > 0  # a used item does get a gradient


def test_item_table_is_the_input_table(name: str) -> None:
    """Editing a row of item_embeddings() changes encode for rows that contain that item only."""
    model = make(name).eval()
    x = left_pad([[1, 2, 3], [4, 5, 6]], 3)
    before = model.encode(x)
    with torch.no_grad():
        model.item_embeddings()[2] += 1.0
    after = model.encode(x)
    assert not torch.allclose(before[0, 1:], after[0, 1:])
    assert torch.equal(before[1], after[1])


def test_causal(name: str) -> None:
    model = make(name).eval()
    x = torch.randint(1, N_ITEMS + 1, (3, MAXLEN), generator=torch.Generator().manual_seed(1))
    h = model.encode(x)
    for t in range(MAXLEN):
        x2 = x.clone()
        x2[:, t] = x[:, t] % N_ITEMS + 1  # a different real item
        h2 = model.encode(x2)
        torch.testing.assert_close(h2[:, :t], h[:, :t], rtol=0, atol=1e-6)
        assert (h2[:, t] - h[:, t]).abs().amax(dim=-1).gt(1e-4).all()  # position t does see it


def test_rows_independent(name: str) -> None:
    model = make(name).eval()
    x = left_pad(ROWS, 6)
    h = model.encode(x)
    real = x != 0
    for i in range(len(ROWS)):
        hi = model.encode(x[i : i + 1])[0]
        torch.testing.assert_close(hi[real[i]], h[i][real[i]], rtol=1e-5, atol=1e-6)
    x2 = x.clone()
    x2[1:, -1] = 1  # change every other row
    torch.testing.assert_close(model.encode(x2)[0], h[0], rtol=0, atol=1e-6)


def test_padding_invariance_and_trimming(name: str) -> None:
    """A batch trimmed to its longest row equals the last L columns of the maxlen-wide window,
    and prepending more padding (even beyond maxlen for models without a position table) never
    changes a real position."""
    model = make(name).eval()
    trimmed = left_pad(ROWS, 6)  # (4, 6), as the trainer builds it
    full = left_pad(ROWS, MAXLEN)  # (4, MAXLEN)
    real = trimmed != 0
    h_trim = model.encode(trimmed)  # (4, 6, d)
    h_full = model.encode(full)[:, -6:]  # (4, 6, d)
    torch.testing.assert_close(h_trim[real], h_full[real], rtol=1e-5, atol=1e-5)
    h7 = model.encode(left_pad(ROWS, 7))[:, -6:]
    torch.testing.assert_close(h_trim[real], h7[real], rtol=1e-5, atol=1e-5)
    # the shortest possible trim: one column (only the last items)
    h1 = model.encode(trimmed[:, -1:])
    torch.testing.assert_close(h1[:, 0], model.encode(left_pad([[r[-1]] for r in ROWS], 5))[:, -1])


def test_all_padding_row_is_finite(name: str) -> None:
    model = make(name).eval()
    x = left_pad([[], [1, 2]], 4)
    h = model.encode(x)
    assert torch.isfinite(h).all()
    torch.testing.assert_close(h[1, 2:], model.encode(left_pad([[1, 2]], 2))[0])


def test_eval_deterministic_train_stochastic(name: str) -> None:
    model = make(name, dropout=0.5)
    x = left_pad(ROWS, 6)
    real = x != 0
    model.eval()
    torch.testing.assert_close(model.encode(x), model.encode(x), rtol=0, atol=0)
    model.train()
    a, b = model.encode(x), model.encode(x)
    assert not torch.allclose(a[real], b[real])
    # with dropout 0, train mode and eval mode agree: dropout is the only train/eval difference
    model0 = make(name, dropout=0.0)
    torch.testing.assert_close(model0.train().encode(x), model0.eval().encode(x))


def test_gradients_reach_every_parameter(name: str) -> None:
    model = make(name).train()
    x = torch.randint(1, N_ITEMS + 1, (6, MAXLEN), generator=torch.Generator().manual_seed(2))
    x[:2, :3] = 0  # some padding too
    h = model.encode(x[:, :-1])  # (6, MAXLEN-1, d)
    h = torch.cat([h, model.encode(x)[:, -1:]], dim=1)  # a full-width pass reaches every position
    logits = h @ model.item_embeddings().T  # (6, MAXLEN, C+1)
    F.cross_entropy(logits.flatten(0, 1), torch.randint(1, N_ITEMS + 1, (6 * MAXLEN,))).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert p.grad.abs().sum() > 0, pname


def test_state_dict_round_trip(name: str) -> None:
    """runs.load_checkpoint rebuilds with build_model and loads the state dict."""
    model = make(name, seed=0).eval()
    other = make(name, seed=1).eval()
    x = left_pad(ROWS, 6)
    assert not torch.allclose(model.encode(x), other.encode(x))
    other.load_state_dict(model.state_dict())
    torch.testing.assert_close(other.encode(x), model.encode(x), rtol=0, atol=0)


def _stride_data() -> tuple[torch.Tensor, torch.Tensor]:
    """Arithmetic progressions mod C with a row-specific stride in {1, 2, 3}: predicting the next
    item needs the last *two* items. Rows have lengths 4..9 (left-padded)."""
    C, rows, targets = N_ITEMS, [], []
    for stride in (1, 2, 3):
        for start in range(C):
            n = 4 + (start + stride) % 6  # 4..9 items, of which the last one is only a target
            seq = [1 + (start + stride * t) % C for t in range(n)]
            rows.append(seq[:-1])
            targets.append(seq[1:])
    return left_pad(rows, MAXLEN), left_pad(targets, MAXLEN)


def test_overfits_a_deterministic_pattern(name: str) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(**VARIANTS[name], dim=32, layers=2, heads=1, dropout=0.0, maxlen=MAXLEN)
    model = build_model(cfg, N_ITEMS).train()
    x, y = _stride_data()  # (60, MAXLEN) each
    real = y != 0
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    for _ in range(100):
        logits = model.encode(x)[real] @ model.item_embeddings().T  # (N, C+1)
        loss = F.cross_entropy(logits, y[real])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        pred = (model.encode(x) @ model.item_embeddings().T).argmax(-1)  # (60, MAXLEN)
    seen_two = real & (x.ne(0).cumsum(1) >= 2)  # positions with at least two items of history
    acc = (pred[seen_two] == y[seen_two]).float().mean().item()
    assert acc > 0.95, f"{name} reached only {acc:.2f} accuracy on a learnable pattern"


def test_encode_real_and_last_equal_encode(name: str) -> None:
    """The fast paths (packed real positions, last position only) give encode's values and
    gradients: the trainer and the evaluator rely on them."""
    model = make(name, dropout=0.0).double()
    x = left_pad(ROWS, 7)
    ref = model.encode(x)  # (B, L, d)
    hidden, index = model.encode_real(x)  # (T, d), (T,)
    assert torch.equal(index, (x.reshape(-1) != 0).nonzero().squeeze(1))
    torch.testing.assert_close(hidden, ref.reshape(-1, DIM)[index], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(model.encode_last(x), ref[:, -1], rtol=1e-12, atol=1e-12)

    weight = torch.randn_like(hidden)
    params = [p for p in model.parameters() if p.requires_grad]
    fast = torch.autograd.grad((hidden * weight).sum(), params, allow_unused=True)
    plain = torch.autograd.grad(
        (model.encode(x).reshape(-1, DIM)[index] * weight).sum(), params, allow_unused=True
    )
    for p, a, b in zip(params, fast, plain, strict=True):
        if a is None or b is None:
            assert (a is None and b is None) or torch.count_nonzero(a if a is not None else b) == 0
            continue
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=f"gradient of {p.shape}")
