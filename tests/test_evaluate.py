"""Full-ranking evaluator against a naive reference that materialises the whole score matrix."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from seqrec import evaluate as evaluate_module
from seqrec.data.sequences import EvalSet, Sequences
from seqrec.errors import ConfigError, SeqrecError
from seqrec.evaluate import EvalResult, evaluate
from seqrec.metrics import rank_metrics
from seqrec.models.base import SequentialRecommender

KS = (1, 5, 10, 20)


class FakeModel(SequentialRecommender):
    """Causal toy encoder: hidden[t] = sum of item embeddings up to t, plus dropout (so
    forgetting eval mode changes the scores)."""

    def __init__(self, n_items: int, dim: int = 8, seed: int = 0, dropout: float = 0.5):
        super().__init__()
        torch.manual_seed(seed)
        self.n_items, self.dim = n_items, dim
        self.emb = nn.Embedding(n_items + 1, dim, padding_idx=0)
        self.pos = nn.Parameter(torch.randn(dim))
        self.drop = nn.Dropout(dropout)

    def encode(self, items: Tensor) -> Tensor:
        x = self.emb(items)  # (B, L, d)
        return self.drop(torch.cumsum(x, dim=1) + self.pos)  # (B, L, d)

    def item_embeddings(self) -> Tensor:
        return self.emb.weight


class TableModel(SequentialRecommender):
    """dim 1: hidden is 1 everywhere, so item i scores exactly table[i] (exact ties possible)."""

    def __init__(self, scores: list[float]):
        super().__init__()
        self.n_items, self.dim = len(scores), 1
        self.table = nn.Parameter(torch.tensor([0.0, *scores])[:, None])

    def encode(self, items: Tensor) -> Tensor:
        return torch.ones(*items.shape, 1)

    def item_embeddings(self) -> Tensor:
        return self.table


def make_eval_set(seqs: list[list[int]], targets: list[int], n_items: int) -> EvalSet:
    return EvalSet(
        inputs=Sequences.from_lists(seqs, n_items=n_items),
        targets=np.asarray(targets, dtype=np.int64),
        users=np.arange(len(targets), dtype=np.int64),
    )


def random_eval_set(n: int, C: int, seed: int, max_len: int = 12) -> EvalSet:
    rng = np.random.default_rng(seed)
    seqs = [list(rng.integers(1, C + 1, size=rng.integers(1, max_len + 1))) for _ in range(n)]
    # every third target repeats a history item (the Yelp case: target must never be masked)
    targets = [
        int(s[rng.integers(len(s))]) if j % 3 == 0 else int(rng.integers(1, C + 1))
        for j, s in enumerate(seqs)
    ]
    return make_eval_set(seqs, targets, C)


def naive_reference(model, eval_set: EvalSet, maxlen: int, history: str):
    """Full score matrix + argsort ranks, Python loops: no shared code with the engine."""
    assert history in ("mask", "keep", "zero")
    model.eval()
    n = len(eval_set)
    x = torch.zeros(n, maxlen, dtype=torch.long)
    for j in range(n):
        hist = list(eval_set.inputs[j])[-maxlen:]
        if hist:
            x[j, maxlen - len(hist) :] = torch.tensor(hist)
    with torch.no_grad():
        h = model.encode(x)[:, -1, :]  # (n, d)
        S = (h @ model.item_embeddings()[1:].T).numpy().astype(np.float64)  # (n, C)
    greater, ties, rank = [], [], []
    for j in range(n):
        row = S[j].copy()
        y = int(eval_set.targets[j])
        for item in eval_set.inputs[j]:
            if history == "mask" and item != y:
                row[item - 1] = -np.inf
            elif history == "zero":
                row[item - 1] = 0.0
        order = np.argsort(-row, kind="stable")
        rank.append(int(np.flatnonzero(order == y - 1)[0]) + 1)
        greater.append(int(np.sum(row > row[y - 1])))
        ties.append(int(np.sum(row == row[y - 1])) - 1)
    return np.array(greater), np.array(ties), np.array(rank)


@pytest.mark.parametrize("torch_compare", [False, True])  # numpy (CPU) and on-device paths
@pytest.mark.parametrize("history", ["mask", "keep", "zero"])
def test_matches_naive_reference(history: str, torch_compare: bool) -> None:
    C, maxlen = 60, 5  # maxlen < some history lengths: truncation is exercised
    model = FakeModel(C)
    es = random_eval_set(80, C, seed=3)
    res = evaluate(
        model,
        es,
        maxlen=maxlen,
        ks=KS,
        history=history,
        batch_size=16,
        _force_torch_compare=torch_compare,
    )
    g, t, rank = naive_reference(model, es, maxlen, history)
    assert isinstance(res, EvalResult) and res.n_examples == 80
    np.testing.assert_array_equal(res.greater, g)
    np.testing.assert_array_equal(res.ties, t)
    if history == "zero":  # the zeroed history ties a repeat target: tie-aware metrics
        assert (t > 0).any()
        for key, values in rank_metrics(g, t, ks=KS).items():
            assert res.metrics[key] == pytest.approx(values.mean(), abs=1e-12)
        return
    assert (t == 0).all()  # random float scores: the argsort rank is the exact rank
    np.testing.assert_array_equal(res.greater + 1, rank)
    for k in KS:
        assert res.metrics[f"hr@{k}"] == pytest.approx(np.mean(rank <= k), abs=1e-12)
        assert res.metrics[f"ndcg@{k}"] == pytest.approx(
            np.mean((rank <= k) / np.log2(rank + 1)), abs=1e-12
        )
    assert res.metrics["mrr"] == pytest.approx(np.mean(1 / rank), abs=1e-12)


def test_masking_changes_results() -> None:
    # guards against a reference that agrees with the engine only because masking is a no-op
    C = 60
    model = FakeModel(C)
    es = random_eval_set(80, C, seed=3)
    on = evaluate(model, es, maxlen=5, history="mask")
    off = evaluate(model, es, maxlen=5, history="keep")
    assert (on.greater <= off.greater).all() and (on.greater < off.greater).any()
    zero = evaluate(model, es, maxlen=5, history="zero")
    assert (zero.greater != on.greater).any() and (zero.greater != off.greater).any()


def test_history_masking_by_hand() -> None:
    # scores of items 1..6: 10, 9, 8, 7, 6, 5
    model = TableModel([10, 9, 8, 7, 6, 5])
    es = make_eval_set([[1, 2, 5], [1, 2], [3, 3, 4]], [5, 2, 6], n_items=6)
    on = evaluate(model, es, maxlen=10, ks=(1, 3))
    # ex 0: 1, 2 masked; 3, 4 outrank target 5 -> greater 2.
    # ex 1: target 2 is in the history but never masked; 1 masked -> greater 0, rank 1.
    # ex 2: 3, 4 masked; 1, 2, 5 outrank 6 -> greater 3.
    np.testing.assert_array_equal(on.greater, [2, 0, 3])
    np.testing.assert_array_equal(on.ties, [0, 0, 0])
    off = evaluate(model, es, maxlen=10, ks=(1, 3), history="keep")
    np.testing.assert_array_equal(off.greater, [4, 1, 5])
    assert on.metrics["hr@1"] == pytest.approx(1 / 3)
    assert on.metrics["hr@3"] == pytest.approx(2 / 3)


def test_zero_history_by_hand() -> None:
    # S3-Rec's protocol: history items, a repeat target included, get the score 0
    model = TableModel([10, 9, 8, 7, 6, 5])
    es = make_eval_set([[1, 2, 5], [1, 2], [3, 3, 4]], [5, 2, 6], n_items=6)
    res = evaluate(model, es, maxlen=10, ks=(1, 3), history="zero")
    # ex 0: 1, 2, 5 -> 0; target 5 now 0: 3, 4, 6 outrank it, 1 and 2 tie it.
    # ex 1: 1, 2 -> 0; target 2 now 0: 3..6 outrank it, 1 ties it.
    # ex 2: 3, 4 -> 0; target 6 (5) keeps its score: 1, 2, 5 outrank it.
    np.testing.assert_array_equal(res.greater, [3, 4, 3])
    np.testing.assert_array_equal(res.ties, [2, 1, 0])
    # with negative scores, zeroing lifts history items above the target: not masking
    neg = TableModel([-1, -2, -3, -4])
    es = make_eval_set([[4]], [1], n_items=4)
    res = evaluate(neg, es, maxlen=3, ks=(1,), history="zero")
    assert (int(res.greater[0]), int(res.ties[0])) == (1, 0)
    masked = evaluate(neg, es, maxlen=3, ks=(1,), history="mask")
    assert (int(masked.greater[0]), int(masked.ties[0])) == (0, 0)


def test_unknown_history_protocol_is_refused() -> None:
    model = TableModel([1, 2, 3])
    es = make_eval_set([[1]], [2], n_items=3)
    with pytest.raises(ConfigError, match="history must be one of mask, keep, zero"):
        evaluate(model, es, maxlen=3, history="masked")


def test_masked_items_are_not_ties() -> None:
    # item 2 ties the target 3 but is in the history: masked, so neither tie nor greater
    model = TableModel([1, 5, 5, 5])
    es = make_eval_set([[2, 1]], [3], n_items=4)
    on = evaluate(model, es, maxlen=3, ks=(1,))
    assert (int(on.greater[0]), int(on.ties[0])) == (0, 1)  # only item 4 ties
    assert on.metrics["hr@1"] == pytest.approx(1 / 2)
    off = evaluate(model, es, maxlen=3, ks=(1,), history="keep")
    assert (int(off.greater[0]), int(off.ties[0])) == (0, 2)
    assert off.metrics["hr@1"] == pytest.approx(1 / 3)


def test_constant_scorer_gets_random_metrics() -> None:
    C = 50
    model = TableModel([0.25] * C)
    es = make_eval_set([[1], [2], [3, 4]], [7, 8, 9], n_items=C)
    off = evaluate(model, es, maxlen=4, history="keep")
    for k in KS:
        assert off.metrics[f"hr@{k}"] == pytest.approx(k / C, abs=1e-15)
    np.testing.assert_array_equal(off.ties, [C - 1] * 3)
    on = evaluate(model, es, maxlen=4, ks=(10,), history="mask", per_example=True)
    np.testing.assert_allclose(on.per_example["hr@10"], [10 / 49, 10 / 49, 10 / 48])


@pytest.mark.parametrize("torch_compare", [False, True])
def test_ties_with_exact_integer_embeddings_match_reference(torch_compare: bool) -> None:
    # integer embeddings and hidden states: every score is exact, ties are real ties
    C = 40
    model = FakeModel(C, dim=4, dropout=0.0)
    with torch.no_grad():
        model.emb.weight.copy_(torch.randint(-1, 2, (C + 1, 4)).float())
        model.emb.weight[0] = 0
        model.pos.copy_(torch.tensor([1.0, 0.0, -1.0, 2.0]))
    es = random_eval_set(50, C, seed=5)
    res = evaluate(model, es, maxlen=6, batch_size=8, _force_torch_compare=torch_compare)
    g, t, _ = naive_reference(model, es, 6, "mask")
    np.testing.assert_array_equal(res.greater, g)
    np.testing.assert_array_equal(res.ties, t)
    assert (t > 0).any()
    want = rank_metrics(g, t, ks=KS)
    for key, values in want.items():
        assert res.metrics[key] == pytest.approx(values.mean(), abs=1e-12)


@pytest.mark.parametrize("history", ["mask", "keep", "zero"])
def test_batch_size_and_budget_invariance(history: str) -> None:
    C = 70
    model = FakeModel(C, seed=1)
    es = random_eval_set(64 + 9, C, seed=7)
    base = evaluate(model, es, maxlen=8, history=history, batch_size=len(es))
    runs = [evaluate(model, es, maxlen=8, history=history, batch_size=bs) for bs in (1, 7, 64)]
    # memory-bounded path: score sub-blocks of 1 row, 3 rows, and a budget below one row
    runs += [
        evaluate(model, es, maxlen=8, history=history, batch_size=64, score_budget=b)
        for b in (C, 3 * C + 5, 1)
    ]
    # without the helper thread that ranks block k while block k + 1 is encoded
    runs += [
        evaluate(model, es, maxlen=8, history=history, batch_size=bs, pipeline=False)
        for bs in (5, 64)
    ]
    for r in runs:
        np.testing.assert_array_equal(r.greater, base.greater)
        np.testing.assert_array_equal(r.ties, base.ties)
        assert r.metrics == base.metrics


def test_restores_training_mode_and_needs_no_grad() -> None:
    model = FakeModel(30)
    es = random_eval_set(10, 30, seed=0)
    model.train()
    a = evaluate(model, es, maxlen=4)
    assert model.training
    model.eval()
    b = evaluate(model, es, maxlen=4)
    assert not model.training
    assert a.metrics == b.metrics  # dropout was off during the pass both times


def test_per_example_and_progress(capsys) -> None:
    model = FakeModel(30)
    es = random_eval_set(12, 30, seed=2)
    res = evaluate(model, es, maxlen=4, per_example=True, progress=True, batch_size=5)
    assert res.per_example is not None
    for key, values in res.per_example.items():
        assert values.shape == (12,)
        assert res.metrics[key] == pytest.approx(values.mean())
    assert evaluate(model, es, maxlen=4).per_example is None


def test_empty_eval_set_raises() -> None:
    es = make_eval_set([], [], n_items=5)
    with pytest.raises(SeqrecError, match="evaluation set is empty"):
        evaluate(FakeModel(5), es, maxlen=3)


@pytest.mark.parametrize(
    ("seqs", "targets", "match"),
    [
        ([[1]], [0], "outside the model's items 1..5"),
        ([[1]], [6], "outside the model's items 1..5"),
        ([[1], []], [2, 3], "empty history"),
        ([[1, 9]], [2], "history items must be in 1..5"),
    ],
)
def test_bad_eval_set_raises(seqs, targets, match) -> None:
    es = make_eval_set(seqs, targets, n_items=9)
    with pytest.raises(SeqrecError, match=match):
        evaluate(FakeModel(5), es, maxlen=3)


@pytest.mark.parametrize("kwargs", [{"maxlen": 0}, {"maxlen": 3, "batch_size": 0}])
def test_bad_arguments_raise(kwargs) -> None:
    es = make_eval_set([[1]], [2], n_items=5)
    with pytest.raises(ConfigError, match="positive integer"):
        evaluate(FakeModel(5), es, **kwargs)


@pytest.mark.parametrize("torch_compare", [False, True])
def test_nan_and_infinite_target_scores_raise(torch_compare: bool) -> None:
    es = make_eval_set([[1]], [3], n_items=3)
    with pytest.raises(SeqrecError, match="NaN"):
        evaluate(TableModel([1.0, float("nan"), 2.0]), es, maxlen=2)
    with pytest.raises(SeqrecError, match="infinite score"):
        kwargs = {"_force_torch_compare": torch_compare}
        evaluate(TableModel([1.0, 2.0, float("inf")]), es, maxlen=2, **kwargs)


def test_large_finite_scores_are_not_nan() -> None:
    # the cheap overflow-prone sum check must fall back to an exact NaN check
    model = TableModel([3e38, 3e38, 1.0])
    es = make_eval_set([[3]], [1], n_items=3)
    res = evaluate(model, es, maxlen=2, ks=(1,))
    assert (int(res.greater[0]), int(res.ties[0])) == (0, 1)


class WideModel(SequentialRecommender):
    """dim 2 with a fixed hidden state, so products can overflow within one dot product."""

    def __init__(self, hidden: list[float], table: list[list[float]]):
        super().__init__()
        self.n_items, self.dim = len(table), 2
        self.hidden = torch.tensor(hidden)
        self.table = nn.Parameter(torch.tensor([[0.0, 0.0], *table]))

    def encode(self, items: Tensor) -> Tensor:
        return self.hidden.expand(*items.shape, 2)

    def item_embeddings(self) -> Tensor:
        return self.table


def test_nan_from_overflowing_products_is_caught() -> None:
    """Finite inputs whose products overflow to +inf and -inf give a NaN score (inf - inf);
    the cheap bound on the (b, d) side must send such blocks to the exact NaN check."""
    es = make_eval_set([[1]], [1], n_items=2)
    model = WideModel([1e30, 1e30], [[1.0, 1.0], [1e30, -1e30]])  # item 2: inf + (-inf)
    with pytest.raises(SeqrecError, match="NaN"):
        evaluate(model, es, maxlen=2)
    fine = WideModel([1e10, 1e10], [[1.0, 1.0], [1e10, -1e10]])  # big but exact: no NaN
    res = evaluate(fine, es, maxlen=2, ks=(1,))
    assert (int(res.greater[0]), int(res.ties[0])) == (0, 0)  # 2e10 against 0


def test_an_error_in_a_pipelined_block_surfaces() -> None:
    """A NaN score in the second of several blocks (ranked on the helper thread) is raised."""

    class NanAfter(FakeModel):
        def encode(self, items: Tensor) -> Tensor:
            hidden = super().encode(items)
            if bool((items == 5).any()):  # the second block (examples 2 and 3)
                hidden = hidden * float("nan")
            return hidden

    es = make_eval_set([[1], [2], [3], [5], [6]], [2, 3, 4, 6, 7], n_items=9)
    with pytest.raises(SeqrecError, match="NaN"):
        evaluate(NanAfter(9), es, maxlen=2, batch_size=2)
    ok = evaluate(FakeModel(9), es, maxlen=2, batch_size=2)
    assert ok.n_examples == 5


@pytest.mark.parametrize("c", [1, 7, 8, 2040, 2041, 3 * 2040, 5000])
def test_count_rows_by_byte_lanes_matches_count_nonzero(c: int) -> None:
    """The lane-sum count equals numpy's, including rows where every byte lane reaches its
    limit of 255 (all true, C a multiple of 8 * 255) and rows whose padding is not all used."""
    rng = np.random.default_rng(c)
    scores = rng.standard_normal((5, c)).astype(np.float32)
    scores[1] = 1.0  # all equal to the reference: every flag true
    scores[2] = -1.0  # none greater
    ref = np.array([[0.0], [1.0], [0.0], [0.5], [scores[4, 0]]], dtype=np.float32)
    flags = evaluate_module._flag_buffer(5, c)
    for compare in (np.greater, np.equal):
        want = np.count_nonzero(compare(scores, ref), axis=1)
        got = evaluate_module._count_rows(compare, scores, ref, flags)
        np.testing.assert_array_equal(got, want)
    assert evaluate_module._count_rows(np.equal, scores, ref, flags)[1] == c


@pytest.mark.parametrize("score_budget", [evaluate_module.SCORE_BUDGET, 5000 * 3])
def test_large_catalogue_in_slices_matches_naive_reference(score_budget: int) -> None:
    """C = 5000 (several lane groups per row), 70 examples (two workers, several slices each,
    one short last slice), history masking: the sliced CPU path equals the naive ranks."""
    C = 5000
    model = FakeModel(C, seed=4)
    es = random_eval_set(70, C, seed=11, max_len=30)
    res = evaluate(model, es, maxlen=20, batch_size=70, score_budget=score_budget)
    g, t, _ = naive_reference(model, es, 20, "mask")
    np.testing.assert_array_equal(res.greater, g)
    np.testing.assert_array_equal(res.ties, t)
