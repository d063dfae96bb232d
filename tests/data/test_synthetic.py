from __future__ import annotations

import numpy as np

from seqrec.data.sequences import Sequences
from seqrec.data.split import leave_one_out
from seqrec.data.synthetic import generate, make_structure


def test_deterministic_for_a_seed() -> None:
    a = generate(200, 100, seed=3)
    b = generate(200, 100, seed=3)
    c = generate(200, 100, seed=4)
    assert np.array_equal(a.offsets, b.offsets) and np.array_equal(a.items, b.items)
    assert np.array_equal(a.timestamps, b.timestamps)
    assert not np.array_equal(a.items[: len(c.items)], c.items[: len(a.items)])


def test_shapes_lengths_and_timestamps() -> None:
    s = generate(3000, 1000, seed=0, mean_length=30)
    lengths = s.lengths()
    assert s.n_users == 3000 and s.n_items == 1000
    assert lengths.min() >= 3
    assert 27 < lengths.mean() < 33
    assert s.items.min() >= 1 and s.items.max() <= 1000
    row = np.repeat(np.arange(s.n_users), lengths)
    same_row = row[1:] == row[:-1]
    assert np.all(np.diff(s.timestamps)[same_row] > 0)  # increasing within a user


def transitions(s: Sequences) -> tuple[np.ndarray, np.ndarray]:
    row = np.repeat(np.arange(s.n_users), s.lengths())
    same = row[1:] == row[:-1]
    return s.items[:-1][same], s.items[1:][same]


def test_planted_successor_structure() -> None:
    p = 0.7
    s = generate(2000, 500, seed=1, p_follow=p)
    st = make_structure(500, seed=1)
    cur, nxt = transitions(s)
    hit = (st.successors[cur] == nxt[:, None]).any(axis=1).mean()
    # follow (p) or a popularity draw that happens to land on a successor
    assert p - 0.02 < hit < p + 0.15
    # control: the same pairs with shuffled next items rarely match
    rng = np.random.default_rng(0)
    ctrl = (st.successors[cur] == rng.permutation(nxt)[:, None]).any(axis=1).mean()
    assert ctrl < 0.2


def test_zipf_like_popularity() -> None:
    s = generate(3000, 1000, seed=2, p_follow=0.0)
    counts = np.bincount(s.items, minlength=1001)[1:]
    st = make_structure(1000, seed=2)
    top = np.argsort(-st.popularity[1:])[:10]
    assert counts[top].sum() > 0.25 * counts.sum()  # H(10)/H(1000) ~ 0.39
    assert np.sort(counts)[-1] > 50 * np.median(counts)
    assert np.corrcoef(counts, st.popularity[1:])[0, 1] > 0.95


def ndcg10_pessimistic(scores: np.ndarray, targets: np.ndarray, history: list[np.ndarray]) -> float:
    """Full-ranking NDCG@10 with history masked; ties count against the target."""
    total = 0.0
    for j, t in enumerate(targets):
        sc = scores[j].astype(np.float64).copy()
        sc[0] = -np.inf
        hist = history[j][history[j] != t]
        sc[hist] = -np.inf
        rank = int(np.sum(sc >= sc[t])) - 1  # 0-based, ties pessimistic
        if rank < 10:
            total += 1.0 / np.log2(rank + 2)
    return total / len(targets)


def test_sequential_signal_beats_popularity() -> None:
    """A first-order Markov model (bigram counts) must clearly beat popularity: a sequential
    model has something to learn."""
    s = generate(3000, 1000, seed=0)
    split = leave_one_out(s)
    C = s.n_items
    cur, nxt = transitions(split.train)
    bigram = np.zeros((C + 1, C + 1))
    np.add.at(bigram, (cur, nxt), 1.0)
    pop = np.bincount(split.train.items, minlength=C + 1).astype(np.float64)
    test = split.test
    n = 600
    last = np.array([test.inputs[j][-1] for j in range(n)])
    hist = [test.inputs[j] for j in range(n)]
    targets = test.targets[:n]
    seq_scores = bigram[last] + 1e-6 * pop  # popularity only breaks ties
    pop_scores = np.broadcast_to(pop, (n, C + 1))
    ndcg_seq = ndcg10_pessimistic(seq_scores, targets, hist)
    ndcg_pop = ndcg10_pessimistic(pop_scores, targets, hist)
    assert ndcg_seq > 2.5 * ndcg_pop, (ndcg_seq, ndcg_pop)
    assert ndcg_seq > 0.4


def test_scales_to_a_million_items() -> None:
    s = generate(2000, 1_000_000, seed=0, mean_length=10)
    assert s.n_items == 1_000_000
    assert s.items.max() <= 1_000_000 and s.items.min() >= 1
    assert s.n_interactions == int(s.lengths().sum())
