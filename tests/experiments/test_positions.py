"""Per-position evaluation: examples counted from the end of each sequence, metrics that agree
with the evaluator on the test and validation positions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqrec.config import ModelConfig
from seqrec.data.sequences import Sequences
from seqrec.data.split import leave_one_out
from seqrec.data.synthetic import generate
from seqrec.errors import SeqrecError
from seqrec.evaluate import evaluate
from seqrec.experiments.positions import (
    PositionMetrics,
    offset_examples,
    per_position_metrics,
)
from seqrec.models import build_model


def test_offset_examples_count_from_the_end_and_skip_short_users():
    seqs = Sequences.from_lists([[1, 2, 3, 4], [5, 6], [7, 8, 9]])
    users = np.array([0, 1, 2])
    last = offset_examples(seqs, users, 1)
    assert last.targets.tolist() == [4, 6, 9] and last.users.tolist() == [0, 1, 2]
    assert last.inputs[0].tolist() == [1, 2, 3] and last.inputs[1].tolist() == [5]
    second = offset_examples(seqs, users, 2)
    assert second.targets.tolist() == [3, 8] and second.users.tolist() == [0, 2]
    assert second.inputs[1].tolist() == [7]
    third = offset_examples(seqs, users, 3)  # user 2's 3rd-last item has no history before it
    assert third.targets.tolist() == [2] and third.users.tolist() == [0]
    assert len(offset_examples(seqs, users, 4)) == 0
    with pytest.raises(SeqrecError, match="starts at 1"):
        offset_examples(seqs, users, 0)


def test_last_two_positions_are_the_test_and_validation_metrics():
    torch.manual_seed(0)
    seqs = generate(120, 60, seed=3, mean_length=8)
    split = leave_one_out(seqs)
    model = build_model(ModelConfig(name="sasrec", dim=8, layers=1, maxlen=12), seqs.n_items)
    kw = dict(maxlen=12, ks=(5, 10), history="mask", batch_size=37)
    res = per_position_metrics(model, seqs, split.test.users, window=6, **kw)
    assert res.offsets.tolist() == [1, 2, 3, 4, 5, 6]
    assert res.n[0] == len(split.test) and res.n[1] == len(split.valid)
    assert np.all(np.diff(res.n) <= 0)  # fewer users reach further back
    test = evaluate(model, split.test, **kw).metrics
    valid = evaluate(model, split.valid, **kw).metrics
    for k in ("ndcg@10", "hr@5", "mrr"):
        assert res.metrics[k][0] == pytest.approx(test[k], abs=1e-12)
        assert res.metrics[k][1] == pytest.approx(valid[k], abs=1e-12)
    again = PositionMetrics.from_json(res.to_json())
    assert again.offsets.tolist() == res.offsets.tolist()
    assert np.allclose(again.metrics["ndcg@10"], res.metrics["ndcg@10"])
