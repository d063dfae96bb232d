"""GRU4Rec specifics: a naive per-row GRU reference, padding columns, parameter count, config."""

from __future__ import annotations

import pytest
import torch

from seqrec.config import ModelConfig
from seqrec.errors import ConfigError
from seqrec.models import GRU4Rec, build_model


def naive_gru4rec(model: GRU4Rec, seq: list[int]) -> torch.Tensor:
    """One row with no padding, GRU equations written out step by step (PyTorch gate order r, z, n):

    r = σ(W_ir x + b_ir + W_hr h + b_hr),  z = σ(W_iz x + b_iz + W_hz h + b_hz),
    n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)),  h' = (1 − z) ⊙ n + z ⊙ h.
    """
    d = model.dim
    xs = model.item_emb.weight[torch.tensor(seq)]  # (n, d)
    for layer in range(model.layers):
        W_i = getattr(model.gru, f"weight_ih_l{layer}")
        W_h = getattr(model.gru, f"weight_hh_l{layer}")
        b_i = getattr(model.gru, f"bias_ih_l{layer}", torch.zeros(3 * d))  # none: "recbole"
        b_h = getattr(model.gru, f"bias_hh_l{layer}", torch.zeros(3 * d))
        h, outs = torch.zeros(d), []
        for x in xs:
            gi, gh = W_i @ x + b_i, W_h @ h + b_h
            r = torch.sigmoid(gi[:d] + gh[:d])
            z = torch.sigmoid(gi[d : 2 * d] + gh[d : 2 * d])
            n = torch.tanh(gi[2 * d :] + r * gh[2 * d :])
            h = (1 - z) * n + z * h
            outs.append(h)
        xs = torch.stack(outs)
    if model.variant == "recbole":  # the dense head after the GRU
        xs = xs @ model.head.weight.T + model.head.bias
    return xs  # (n, d)


@pytest.mark.parametrize("variant", ["plain", "recbole"])
@pytest.mark.parametrize("layers", [1, 2])
def test_matches_naive_reference_on_left_padded_batches(layers: int, variant: str) -> None:
    torch.manual_seed(0)
    model = GRU4Rec(30, dim=12, layers=layers, dropout=0.3, maxlen=10, variant=variant).eval()
    with torch.no_grad():  # non-zero biases, so that running over padding would show
        for name, p in model.gru.named_parameters():
            if name.startswith("bias"):
                p.add_(0.3 * torch.randn_like(p))
    rows = [[4, 9, 30, 2, 2, 17, 5], [1], [8, 3, 12], [6, 7, 8, 9, 10, 11, 12, 13]]
    for width in (8, 12):
        x = torch.zeros(len(rows), width, dtype=torch.long)
        for i, r in enumerate(rows):
            x[i, width - len(r) :] = torch.tensor(r)
        h = model.encode(x)
        for i, r in enumerate(rows):
            pad = width - len(r)
            torch.testing.assert_close(h[i, pad:], naive_gru4rec(model, r), rtol=1e-4, atol=1e-5)
            assert torch.equal(h[i, :pad], torch.zeros(pad, 12))  # padding columns are 0


def test_parameter_count() -> None:
    C, d = 12101, 64
    gru_layer = 3 * (d * d + d * d + 2 * d)  # r, z, n gates: input and hidden weights, two biases
    model = GRU4Rec(C, dim=d, layers=1)
    assert sum(p.numel() for p in model.parameters()) == (C + 1) * d + gru_layer == 799_488


def test_recbole_variant_parameters_and_initialisation() -> None:
    """RecBole 1.2.1's GRU4Rec: bias-free GRU (6d² per layer), a dense d x d head with bias;
    only layer 0's GRU matrices are xavier_uniform_, the rest at torch's defaults."""
    C, d = 12101, 64
    torch.manual_seed(0)
    model = GRU4Rec(C, dim=d, layers=2, variant="recbole")
    expected = (C + 1) * d + 2 * (6 * d * d) + (d * d + d)
    assert sum(p.numel() for p in model.parameters()) == expected
    assert not any(name.startswith("bias") for name, _ in model.gru.named_parameters())
    glorot = (6 / (d + 3 * d)) ** 0.5  # xavier_uniform_ bound of a (3d, d) matrix
    assert model.gru.weight_ih_l0.abs().max().item() <= glorot
    assert model.gru.weight_ih_l0.abs().max().item() > 0.9 * glorot
    default = 1 / d**0.5  # torch's GRU default: U(±1/√d)
    assert model.gru.weight_ih_l1.abs().max().item() <= default
    assert model.gru.weight_ih_l1.abs().max().item() > 0.9 * default
    assert model.head.bias.abs().max().item() > 0  # torch's Linear default, not zeroed
    assert model.gru.dropout == 0.0  # RecBole's nn.GRU has no dropout between layers
    assert torch.equal(model.item_emb.weight[0], torch.zeros(d))
    # no dropout on the output: train and eval differ only through the input dropout
    model0 = GRU4Rec(30, dim=8, dropout=0.0, variant="recbole")
    x = torch.tensor([[0, 3, 4, 5]])
    torch.testing.assert_close(model0.train().encode(x), model0.eval().encode(x))
    with pytest.raises(ConfigError, match="gru_variant"):
        GRU4Rec(10, variant="theano")
    cfg = ModelConfig(name="gru4rec", gru_variant="recbole")
    assert build_model(cfg, 10).variant == "recbole"


def test_from_config_and_validation() -> None:
    cfg = ModelConfig(name="gru4rec", dim=16, layers=2, heads=4, dropout=0.1, maxlen=7)
    model = build_model(cfg, 50)
    assert isinstance(model, GRU4Rec)
    assert (model.dim, model.layers, model.dropout, model.maxlen) == (16, 2, 0.1, 7)
    assert model.gru.num_layers == 2 and model.gru.dropout == 0.1
    # a GRU has no position table: inputs longer than maxlen are fine
    assert model.eval().encode(torch.ones(2, 9, dtype=torch.long)).shape == (2, 9, 16)
    with pytest.raises(ConfigError, match="dropout"):
        GRU4Rec(10, dropout=-0.1)
    with pytest.raises(ConfigError, match="n_items"):
        GRU4Rec(0)
