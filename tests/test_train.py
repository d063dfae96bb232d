"""End-to-end training: a tiny run beats popularity, is deterministic, and leaves a complete run folder."""

from __future__ import annotations

import json

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
    # no temp files left behind by atomic writes
    assert not [p for p in run.rglob("*.tmp")]


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
