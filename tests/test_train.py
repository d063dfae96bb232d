"""End-to-end training: a tiny run beats popularity, is deterministic, and leaves a complete run folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from seqrec import runs
from seqrec.config import RunConfig, merge, validate
from seqrec.train import fit, select_positions


def tiny_config(tmp_path, **overrides) -> RunConfig:
    base = {
        "data": {
            "dataset": "synthetic",
            "synthetic_users": 400,
            "synthetic_items": 120,
            "synthetic_seed": 3,
        },
        "model": {"name": "sasrec", "dim": 32, "layers": 1, "dropout": 0.1, "maxlen": 20},
        "loss": {"name": "ce"},
        "train": {"epochs": 6, "batch_size": 64, "lr": 3e-3, "patience": 10, "seed": 7},
        "out_dir": str(tmp_path / "runs"),
    }
    for section, values in overrides.items():
        if isinstance(values, dict):
            base.setdefault(section, {}).update(values)
        else:
            base[section] = values
    return validate(merge(RunConfig(), base))


def test_select_positions_all_and_last():
    hidden = torch.arange(2 * 3 * 1, dtype=torch.float32).reshape(2, 3, 1)
    targets = torch.tensor([[0, 5, 6], [7, 8, 9]])
    h, t, row = select_positions(hidden, targets, "all")
    assert t.tolist() == [5, 6, 7, 8, 9] and row.tolist() == [0, 0, 1, 1, 1]
    assert h[:, 0].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    h, t, row = select_positions(hidden, targets, "last")
    assert t.tolist() == [6, 9] and row.tolist() == [0, 1] and h[:, 0].tolist() == [2.0, 5.0]


def test_tiny_run_beats_popularity_and_writes_a_complete_folder(tmp_path):
    result = fit(tiny_config(tmp_path, name="a"), quiet=True)
    res = result.results
    assert res["test"]["ndcg@10"] > 1.2 * res["baselines"]["popularity"]["test"]["ndcg@10"]
    run = result.run_dir
    for name in ("config.toml", "metrics.jsonl", "results.json", "environment.json"):
        assert (run / name).is_file(), name
    assert (run / "best" / "model.safetensors").is_file() and (
        run / "best" / "vocab.json"
    ).is_file()
    epochs = runs.read_metrics(run)
    assert [e["epoch"] for e in epochs] == list(range(1, res["epochs_run"] + 1))
    assert all({"loss", "epoch_seconds", "wall_seconds", "valid"} <= set(e) for e in epochs)
    on_disk = json.loads((run / "results.json").read_text())
    assert on_disk["test"] == res["test"] and on_disk["best_epoch"] == res["best_epoch"]
    best_valid = max(e["valid"]["ndcg@10"] for e in epochs)
    assert on_disk["valid"]["ndcg@10"] == pytest.approx(best_valid)
    # the test-set sampling error of every metric: s / sqrt(n) of the per-user values
    assert set(on_disk["test_se"]) == set(res["test"])
    assert 0 < on_disk["test_se"]["ndcg@10"] < on_disk["test"]["ndcg@10"]
    # no temp files left behind by atomic writes
    assert not [p for p in run.rglob("*.tmp")]


def test_standard_errors_are_sample_std_over_sqrt_n():
    from seqrec.evaluate import EvalResult, standard_errors

    values = np.array([0.0, 1.0, 0.5, 0.0])
    res = EvalResult(metrics={"m": 0.375}, n_examples=4, per_example={"m": values})
    # sample std: sqrt(sum((v - 0.375)^2) / 3) = sqrt(0.6875 / 3)
    assert standard_errors(res)["m"] == pytest.approx(np.sqrt(0.6875 / 3) / 2)
    one = EvalResult(metrics={"m": 1.0}, n_examples=1, per_example={"m": np.array([1.0])})
    assert np.isnan(standard_errors(one)["m"])


def test_same_seed_same_numbers(tmp_path):
    a = fit(tiny_config(tmp_path, name="a", train={"epochs": 2}), quiet=True).results
    b = fit(tiny_config(tmp_path, name="b", train={"epochs": 2}), quiet=True).results
    assert a["test"] == b["test"] and a["valid"] == b["valid"]


@pytest.mark.parametrize(
    ("model", "loss", "positions", "pool"),
    [
        ("gru4rec", "ce", "last", "all"),
        ("sasrec", "bce", "all", "not-history"),
        ("sasrec", "bpr", "all", "not-target"),
    ],
)
def test_other_models_and_losses_learn(tmp_path, model, loss, positions, pool):
    cfg = tiny_config(
        tmp_path,
        model={"name": model},
        loss={"name": loss, "positions": positions, "pool": pool, "negatives": 4},
        train={"epochs": 25, "lr": 1e-2},
    )
    res = fit(cfg, quiet=True).results
    assert res["test"]["ndcg@10"] > res["baselines"]["popularity"]["test"]["ndcg@10"]


def test_existing_run_folder_is_not_reused(tmp_path):
    from seqrec.errors import SeqrecError

    fit(tiny_config(tmp_path, name="same", train={"epochs": 1}), quiet=True)
    with pytest.raises(SeqrecError, match="already exists"):
        fit(tiny_config(tmp_path, name="same", train={"epochs": 1}), quiet=True)


@pytest.mark.parametrize("model_name", ["sasrec", "gru4rec"])
@pytest.mark.parametrize("positions", ["all", "last"])
def test_pieces_give_the_plain_batch_loss_and_gradients(model_name, positions):
    """The fast path (a batch cut into length pieces, each trimmed, encoded by encode_real)
    equals the plain one (the whole batch padded to maxlen width through encode, positions
    picked by select_positions) in loss value and in every parameter gradient."""
    import numpy as np

    from seqrec.data.batching import train_batches
    from seqrec.data.sequences import Sequences
    from seqrec.losses import NaiveCE
    from seqrec.models import build_model
    from seqrec.train import encode_batch

    rng = np.random.default_rng(0)
    lists = [rng.integers(1, 31, size=int(rng.integers(2, 25))).tolist() for _ in range(40)]
    train = Sequences.from_lists(lists, n_items=30)
    cfg = merge(RunConfig(), {"model": {"name": model_name, "dim": 16, "maxlen": 12}}).model
    torch.manual_seed(0)
    model = build_model(cfg, n_items=30).eval()  # no dropout: both paths see the same function
    kw = dict(maxlen=12, batch_size=40)
    (plain,) = train_batches(train, rng=np.random.default_rng(1), piece_rows=None, **kw)
    (fast,) = train_batches(train, rng=np.random.default_rng(1), piece_rows=7, **kw)
    assert len(fast) > 1 and len(plain) == 1

    def loss_and_grads(pieces):
        model.zero_grad()
        h, t, row = encode_batch(model, pieces, positions)
        rows = np.concatenate([p.rows for p in pieces])
        order = np.argsort(rows[row.numpy()], kind="stable")  # compare in one position order
        loss = NaiveCE()(h, t, model.item_embeddings())
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        key = torch.from_numpy(rows[row.numpy()][order])
        return loss.detach(), grads, key, t[torch.from_numpy(order)]

    def plain_loss_and_grads(pieces):  # the reference: padded encode at maxlen width
        (piece,) = pieces
        model.zero_grad()
        hidden = model.encode(torch.from_numpy(piece.inputs))  # (B, maxlen, d)
        h, t, row = select_positions(hidden, torch.from_numpy(piece.targets), positions)
        rows = piece.rows
        order = np.argsort(rows[row.numpy()], kind="stable")
        loss = NaiveCE()(h, t, model.item_embeddings())
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        key = torch.from_numpy(rows[row.numpy()][order])
        return loss.detach(), grads, key, t[torch.from_numpy(order)]

    l1, g1, k1, t1 = plain_loss_and_grads(plain)
    l2, g2, k2, t2 = loss_and_grads(fast)
    assert torch.equal(k1, k2) and torch.equal(t1, t2)  # the same positions
    torch.testing.assert_close(l2, l1, rtol=1e-5, atol=1e-6)
    assert g1.keys() == g2.keys()
    for name in g1:
        torch.testing.assert_close(g2[name], g1[name], rtol=1e-4, atol=1e-6, msg=name)
