"""ONNX export: onnxruntime gives the same scores and top-k as PyTorch (synthetic and real
Beauty histories), the batch is dynamic, metadata is recorded, failures leave no file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from seqrec.config import ModelConfig, RunConfig, merge, validate
from seqrec.errors import SeqrecError
from seqrec.export import (
    check_parity,
    check_run_parity,
    export_model_onnx,
    export_onnx,
    onnx_session,
)
from seqrec.models import build_model
from seqrec.models.base import SequentialRecommender
from seqrec.recommend import Recommender
from seqrec.train import fit


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1-epoch SASRec (300 users, 60 items, d = 16, 1 block, maxlen 10) on synthetic data."""
    root = tmp_path_factory.mktemp("export")
    cfg = validate(
        merge(
            RunConfig(),
            {
                "data": {"dataset": "synthetic", "synthetic_users": 300, "synthetic_items": 60},
                "model": {"dim": 16, "layers": 1, "maxlen": 10, "dropout": 0.1},
                "train": {"epochs": 1, "batch_size": 64, "seed": 3, "threads": 1},
                "out_dir": str(root / "runs"),
                "name": "tiny",
            },
        )
    )
    return fit(cfg, quiet=True).run_dir


def random_inputs(n: int, maxlen: int, n_items: int, seed: int = 0) -> np.ndarray:
    """int64[n, maxlen] left-padded rows of random length 1..maxlen (plus one all-padding row)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(1, n_items + 1, size=(n, maxlen))
    lengths = rng.integers(1, maxlen + 1, size=n)
    x[np.arange(maxlen)[None, :] < (maxlen - lengths)[:, None]] = 0
    x[0] = 0
    return x.astype(np.int64)


def test_run_export_parity_on_200_histories(run_dir: Path, tmp_path: Path) -> None:
    path = export_onnx(run_dir, tmp_path / "out" / "model.onnx")
    rec = Recommender.from_run(run_dir)
    parity = check_parity(rec.model, path, random_inputs(200, 10, 60), k=10)
    assert parity.n == 200 and parity.max_abs_diff <= 1e-4
    assert parity.unexplained == 0 and parity.topk_exact >= 0.99 and parity.ok()
    # via raw ids, as a client would send them
    hs = [[rec.vocab.items[(7 * i + j) % 60] for j in range(i % 15)] for i in range(50)]
    assert check_run_parity(run_dir, path, hs).ok()


def test_graph_io_dynamic_batch_and_metadata(run_dir: Path, tmp_path: Path) -> None:
    path = export_onnx(run_dir, tmp_path / "m.onnx")
    proto = onnx.load(path)
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["seqrec.maxlen"] == "10" and props["seqrec.n_items"] == "60"
    assert json.loads(props["seqrec.model"])["dim"] == 16
    assert json.loads(props["seqrec.items"]) == list(Recommender.from_run(run_dir).vocab.items)
    session = onnx_session(path)
    assert [i.name for i in session.get_inputs()] == ["items"]
    for b in (1, 7):
        (scores,) = session.run(["scores"], {"items": random_inputs(b, 10, 60, seed=b)})
        assert scores.shape == (b, 60) and scores.dtype == np.float32
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write left no temp file


def test_default_path_is_inside_best(run_dir: Path) -> None:
    path = export_onnx(run_dir)
    assert path == run_dir / "best" / "model.onnx" and path.is_file()
    path.unlink()


def test_parity_detects_a_different_model(run_dir: Path, tmp_path: Path) -> None:
    path = export_onnx(run_dir, tmp_path / "m.onnx")
    rec = Recommender.from_run(run_dir)
    with torch.no_grad():
        rec.model.item_embeddings()[5:].mul_(-1.0)  # changes scores and rankings
    parity = check_parity(rec.model, path, random_inputs(50, 10, 60))
    assert not parity.ok() and parity.max_abs_diff > 1e-2 and parity.unexplained > 0


@pytest.mark.parametrize(
    "cfg",
    [
        ModelConfig(name="gru4rec", dim=16, layers=2, maxlen=12),
        ModelConfig(name="sasrec", dim=16, heads=2, maxlen=12, block="bert", init="normal"),
        ModelConfig(name="gru4rec", dim=16, maxlen=12, gru_variant="recbole"),
    ],
    ids=["gru4rec", "sasrec-bert", "gru4rec-recbole"],
)
def test_other_models_export_too(cfg: ModelConfig, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model(cfg, 40)
    path = export_model_onnx(model, 12, tmp_path / "model.onnx")
    for n in (1, 3, 100):  # batch sizes other than the export example's
        parity = check_parity(model, path, random_inputs(n, 12, 40, seed=n))
        assert parity.max_abs_diff <= 1e-4 and parity.unexplained == 0


class _Broken(SequentialRecommender):
    n_items, dim = 5, 2

    def encode(self, items: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("cannot encode")

    def item_embeddings(self) -> torch.Tensor:
        return torch.zeros(6, 2)


def test_failed_export_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(SeqrecError, match=r"ONNX export to .* failed: RuntimeError: cannot encode"):
        export_model_onnx(_Broken(), 4, tmp_path / "x.onnx")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(SeqrecError, match="items must be int64"):
        check_parity(_Broken(), tmp_path / "x.onnx", np.zeros((0, 4), dtype=np.int64))


def test_real_beauty_parity_on_1000_histories(real_data_dir: str, tmp_path: Path) -> None:
    """The whole path on real data: Beauty read by seqrec (its vocabulary), a run folder holding
    a seeded, untrained SASRec (d = 64, 2 blocks, maxlen 50, the paper settings), exported with
    `export_onnx`, then 1,000 real user histories as raw ids mapped and padded as the service
    does. onnxruntime must give the same scores (<= 1e-4) and the same top-10, in order."""
    from seqrec import runs
    from seqrec.data.datasets import load_dataset

    cfg = validate(
        merge(
            RunConfig(),
            {
                "data": {"dataset": "beauty", "data_dir": real_data_dir},
                "model": {"name": "sasrec", "dim": 64, "layers": 2, "heads": 1, "maxlen": 50},
                "out_dir": str(tmp_path),
                "name": "beauty",
            },
        )
    )
    prepared = load_dataset(cfg.data)
    assert prepared.sequences.n_items == 12101
    run_dir = runs.create_run_dir(cfg)
    runs.start_run(run_dir, cfg)
    torch.manual_seed(0)
    model = build_model(cfg.model, prepared.sequences.n_items)
    runs.save_checkpoint(run_dir / runs.BEST, model, cfg.model, prepared.vocab, {"epoch": 0})

    raw = np.array(prepared.vocab.items, dtype=object)
    histories = [raw[prepared.sequences[u] - 1].tolist() for u in range(1000)]
    path = export_onnx(run_dir)
    parity = check_run_parity(run_dir, path, histories, k=10)
    assert parity.n == 1000 and parity.max_abs_diff <= 1e-4, parity
    assert parity.topk_exact == 1.0 and parity.unexplained == 0, parity


def test_export_command(
    run_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`seqrec export RUN --format onnx` writes the file and checks it against PyTorch."""
    import sys

    from seqrec.cli import main

    out = tmp_path / "cli" / "m.onnx"
    monkeypatch.setattr(
        sys,
        "argv",
        ["seqrec", "export", str(run_dir), "--format", "onnx", "--out", str(out), "--json"],
    )
    with pytest.raises(SystemExit) as done:  # typer exits, 0 on success
        main()
    assert done.value.code == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["path"] == str(out) and out.stat().st_size == payload["bytes"]
    assert payload["parity"]["n"] == 256 and payload["parity"]["max_abs_diff"] <= 1e-4
    assert payload["parity"]["topk_exact"] == 1.0
