"""Most-popular baseline: counts, shapes, and ranking through the ordinary evaluator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqrec.data.sequences import EvalSet, Sequences
from seqrec.errors import SeqrecError
from seqrec.evaluate import evaluate
from seqrec.models.popularity import PopularityModel


def test_fit_counts_and_shapes() -> None:
    train = Sequences.from_lists([[1, 2, 2], [2, 3]], n_items=4)
    model = PopularityModel.fit(train)
    assert model.n_items == 4 and model.dim == 1
    assert model.item_embeddings()[:, 0].tolist() == [0.0, 1.0, 3.0, 1.0, 0.0]
    h = model.encode(torch.tensor([[0, 1, 2], [3, 4, 1]]))
    assert h.shape == (2, 3, 1) and bool((h == 1).all())
    assert "counts" in model.state_dict() and not list(model.parameters())


def test_constructor_forces_padding_to_zero() -> None:
    model = PopularityModel(np.array([7, 2, 1]))
    assert model.item_embeddings()[:, 0].tolist() == [0.0, 2.0, 1.0]


@pytest.mark.parametrize("counts", [[5], [[1, 2]], [0, -1, 2], [0, float("nan"), 1]])
def test_bad_counts_raise(counts) -> None:
    with pytest.raises(SeqrecError):
        PopularityModel(counts)


def test_fit_rejects_out_of_range_items() -> None:
    train = Sequences(offsets=np.array([0, 2]), items=np.array([1, 5]), n_items=4)
    with pytest.raises(SeqrecError, match=r"1\.\.4"):
        PopularityModel.fit(train)


def test_ranks_by_popularity_by_hand() -> None:
    # counts of items 1..4: 1, 3, 1, 0
    model = PopularityModel.fit(Sequences.from_lists([[1, 2, 2], [2, 3]], n_items=4))
    es = EvalSet(
        inputs=Sequences.from_lists([[1], [4]], n_items=4),
        targets=np.array([3, 2]),
        users=np.array([0, 1]),
    )
    on = evaluate(model, es, maxlen=3, ks=(1, 2))
    # ex 0: item 1 (tied with the target) is masked; item 2 outranks -> greater 1, ties 0
    # ex 1: target 2 is the most popular -> rank 1
    np.testing.assert_array_equal(on.greater, [1, 0])
    np.testing.assert_array_equal(on.ties, [0, 0])
    off = evaluate(model, es, maxlen=3, ks=(1, 2), history="keep")
    np.testing.assert_array_equal(off.ties, [1, 0])  # item 1 now ties the target
    assert off.metrics["hr@2"] == pytest.approx((1 / 2 + 1) / 2)


def test_beats_random_on_skewed_data() -> None:
    rng = np.random.default_rng(0)
    C = 200
    p = 1.0 / np.arange(1, C + 1) ** 1.2
    p /= p.sum()
    draw = lambda n: list(rng.choice(np.arange(1, C + 1), size=n, p=p))  # noqa: E731
    train = Sequences.from_lists([draw(20) for _ in range(100)], n_items=C)
    es = EvalSet(
        inputs=Sequences.from_lists([draw(5) for _ in range(300)], n_items=C),
        targets=np.array(draw(300)),
        users=np.arange(300),
    )
    res = evaluate(PopularityModel.fit(train), es, maxlen=5, ks=(10,), history="keep")
    assert res.metrics["hr@10"] > 3 * 10 / C
