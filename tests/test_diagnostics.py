"""Diagnostics: exact valid CE and the Xu et al. 2024 bound -log NDCG <= CE, against a naive
materialised reference; and the trainer logs them per epoch when asked."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from seqrec.data.sequences import EvalSet, Sequences
from seqrec.diagnostics import ce_and_rank, validation_diagnostics
from seqrec.models.base import SequentialRecommender


def test_ce_and_rank_match_materialised_scores():
    g = torch.Generator().manual_seed(0)
    n, c, d = 17, 53, 5
    hidden = torch.randn(n, d, generator=g) * 2
    table = torch.randn(c + 1, d, generator=g)
    targets = torch.randint(1, c + 1, (n,), generator=g)
    ce, rank = ce_and_rank(hidden, table, targets, chunk_size=10)  # 10 does not divide 53
    s = hidden @ table[1:].T  # (n, C)
    ref_ce = F.cross_entropy(s, targets - 1, reduction="none")
    t = s[torch.arange(n), targets - 1].unsqueeze(1)
    ref_rank = 1 + (s >= t).sum(1) - 1  # the target itself is not counted
    torch.testing.assert_close(ce.float(), ref_ce, rtol=1e-5, atol=1e-5)
    assert torch.equal(rank, ref_rank)
    # Proposition 4.1 per example: -log NDCG <= log rank <= CE
    nln = torch.log(torch.log2(1.0 + rank.double()))
    assert bool((nln <= torch.log(rank.double()) + 1e-12).all())
    assert bool((torch.log(rank.double()) <= ce + 1e-5).all())


def test_ties_count_against_the_target():
    """All scores equal: rank = C (pessimistic), CE = log C, and the bound is tight-ish."""
    c = 20
    ce, rank = ce_and_rank(torch.zeros(3, 4), torch.zeros(c + 1, 4), torch.tensor([1, 5, 20]))
    assert rank.tolist() == [c] * 3
    torch.testing.assert_close(ce, torch.full((3,), math.log(c), dtype=torch.float64))


class _Fixed(SequentialRecommender):
    """A model whose hidden state is a fixed vector per last item (no dropout, no training)."""

    def __init__(self, table: torch.Tensor, states: torch.Tensor) -> None:
        super().__init__()
        self.n_items = table.shape[0] - 1
        self.table = torch.nn.Parameter(table)
        self.states = states

    def encode(self, items: torch.Tensor) -> torch.Tensor:
        return self.states[items]  # (B, L, d)

    def item_embeddings(self) -> torch.Tensor:
        return self.table


def test_validation_diagnostics_equal_naive_means():
    g = torch.Generator().manual_seed(3)
    c, d = 30, 4
    table = torch.randn(c + 1, d, generator=g)
    states = torch.randn(c + 1, d, generator=g) * 3
    histories = [[1, 2, 3], [4], [5, 6], [7, 8, 9, 10], [2, 2]]
    targets = np.array([11, 12, 3, 29, 30])
    eval_set = EvalSet(Sequences.from_lists(histories, c), targets, np.arange(5))
    model = _Fixed(table, states)
    model.train()
    out = validation_diagnostics(model, eval_set, maxlen=3, batch_size=2, chunk_size=7)
    assert model.training  # restored
    h = states[[h[-1] for h in histories]]  # (5, d) last position
    s = h @ table[1:].T
    t = torch.from_numpy(targets)
    ce = F.cross_entropy(s, t - 1, reduction="none").double()
    rank = (s >= s[torch.arange(5), t - 1].unsqueeze(1)).sum(1).double()
    nln = torch.log(torch.log2(1 + rank))
    assert out["valid_ce"] == pytest.approx(float(ce.mean()), rel=1e-5)
    assert out["valid_neg_log_ndcg"] == pytest.approx(float(nln.mean()), rel=1e-9)
    assert out["xu_bound_holds"] is True and out["xu_bound_violations"] == 0


def test_trainer_logs_diagnostics_per_epoch_only_when_asked(tmp_path):
    from seqrec import runs
    from seqrec.config import RunConfig, merge, validate
    from seqrec.train import fit

    base = {
        "data": {"dataset": "synthetic", "synthetic_users": 120, "synthetic_items": 40},
        "model": {"name": "gru4rec", "dim": 8, "layers": 1, "maxlen": 8},
        "loss": {"name": "sce", "negatives": 5},
        "train": {"epochs": 2, "batch_size": 64, "threads": 1, "diagnostics": True},
        "out_dir": str(tmp_path),
    }
    run = fit(validate(merge(RunConfig(), {**base, "name": "on"})), quiet=True).run_dir
    records = runs.read_metrics(run)
    assert len(records) == 2
    for r in records:
        diag = r["diagnostics"]
        assert set(diag) == {
            "valid_ce",
            "valid_neg_log_ndcg",
            "xu_bound_holds",
            "xu_bound_violations",
        }
        assert math.isfinite(r["loss"]) and 0 < diag["valid_ce"] < 2 * math.log(40)
        assert diag["valid_neg_log_ndcg"] <= diag["valid_ce"] and diag["xu_bound_holds"]
    base["train"] = {**base["train"], "diagnostics": False, "epochs": 1}
    run = fit(validate(merge(RunConfig(), {**base, "name": "off"})), quiet=True).run_dir
    assert "diagnostics" not in runs.read_metrics(run)[0]
