"""Recommender: raw ids in and out, history exclusion, unknown ids, popularity fallback, bounds,
and agreement with a naive per-history scoring of the same model. Plus item titles (metadata)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from seqrec import runs
from seqrec.errors import DataError, SeqrecError
from seqrec.metadata import UNJOINABLE, read_titles, titles_for_dataset
from seqrec.recommend import ITEM_COUNTS, Recommender, score_rows
from tiny_run import MAXLEN, train_tiny_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_run(tmp_path_factory.mktemp("recommend"))


@pytest.fixture(scope="module")
def rec(run_dir: Path) -> Recommender:
    return Recommender.from_run(run_dir)


def naive(
    rec: Recommender, history: list[str], k: int, exclude: bool
) -> tuple[list[str], np.ndarray]:
    """One history at a time, no shared code with the batched path beyond the model."""
    index = rec.vocab.item_index()
    known = [index[r] for r in history if r in index]
    x = torch.zeros(1, rec.maxlen, dtype=torch.int64)
    tail = known[-rec.maxlen :]
    if tail:
        x[0, -len(tail) :] = torch.tensor(tail)
    with torch.no_grad():
        h = rec.model.encode(x)[0, -1]  # (d,)
        s = (rec.model.item_embeddings()[1:] @ h).double().numpy()  # (C,)
    if exclude:
        s[np.array(known, dtype=np.int64) - 1] = -np.inf
    order = np.argsort(-s, kind="stable")[:k]
    order = order[np.isfinite(s[order])]
    return [rec.vocab.items[i] for i in order], s[order]


def histories(rec: Recommender, n: int, seed: int = 0) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 3 * MAXLEN, n)
    return [list(rng.choice(rec.vocab.items, size=int(m))) for m in lengths]


def test_raw_ids_round_trip_and_match_naive_scoring(rec: Recommender) -> None:
    hs = histories(rec, 25)
    for exclude in (True, False):
        results = rec.recommend(hs, k=7, exclude_history=exclude)
        assert len(results) == len(hs)
        for h, r in zip(hs, results, strict=True):
            items, scores = naive(rec, h, 7, exclude)
            assert r.source == "model" and r.unknown == []
            assert all(i.startswith("sku-") for i in r.items)
            assert r.items == items
            np.testing.assert_allclose(r.scores, scores, rtol=1e-5, atol=1e-5)
            assert r.scores == sorted(r.scores, reverse=True)
            assert r.history_used == min(len(h), MAXLEN)


def test_history_items_are_excluded_only_when_asked(rec: Recommender) -> None:
    hs = histories(rec, 30, seed=1)
    masked = rec.recommend(hs, k=20)
    assert all(not set(r.items) & set(h) for h, r in zip(hs, masked, strict=True))
    kept = rec.recommend(hs, k=20, exclude_history=False)
    assert any(set(r.items) & set(h) for h, r in zip(hs, kept, strict=True))


def test_history_older_than_maxlen_still_excluded_but_not_encoded(rec: Recommender) -> None:
    old, recent = list(rec.vocab.items[:20]), list(rec.vocab.items[30 : 30 + MAXLEN])
    r_long = rec.recommend_one(old + recent, k=rec.n_items)
    r_recent = rec.recommend_one(recent, k=rec.n_items, exclude_history=False)
    assert r_long.history_used == MAXLEN
    assert not set(r_long.items) & set(old + recent)
    # same hidden state: the long result is the recent-only ranking with the history removed
    assert r_long.items == [i for i in r_recent.items if i not in set(old + recent)]
    assert len(r_long.items) == rec.n_items - 20 - MAXLEN


def test_unknown_ids_are_dropped_and_reported_per_history(rec: Recommender) -> None:
    a, b = rec.vocab.items[0], rec.vocab.items[1]
    results = rec.recommend([[a, "nope", b, "nope", "x"], [b, 5], [a]], k=5)
    assert results[0].unknown == ["nope", "x"] and results[0].history_used == 2
    assert results[1].unknown == ["5"] and results[1].history_used == 1
    assert results[2].unknown == []
    assert results[0].items == rec.recommend_one([a, b], k=5).items


def test_empty_or_unknown_history_gets_the_popularity_fallback(
    rec: Recommender, run_dir: Path
) -> None:
    counts = np.load(run_dir / runs.BEST / ITEM_COUNTS)
    order = np.argsort(-counts[1:], kind="stable")[:8] + 1
    expected = [rec.vocab.items[i - 1] for i in order]
    empty, unknown, real = rec.recommend([[], ["zzz", "yyy"], [rec.vocab.items[3]]], k=8)
    for r in (empty, unknown):
        assert r.source == "popularity" and r.history_used == 0
        assert r.items == expected
        assert r.scores == [float(counts[i]) for i in order]
    assert unknown.unknown == ["zzz", "yyy"]
    assert real.source == "model"


def test_batch_results_do_not_depend_on_batch_companions(rec: Recommender) -> None:
    """To the bit (the service's micro-batching relies on it), for every batch size."""
    hs = histories(rec, 12, seed=2)
    alone = [rec.recommend_one(h, k=5) for h in hs]
    for size in (2, 3, 5, 12):
        together = [
            r for i in range(0, len(hs), size) for r in rec.recommend(hs[i : i + size], k=5)
        ]
        assert together == alone


@pytest.mark.parametrize("threads", [1, 2])
def test_one_row_is_scored_like_a_row_of_a_block(threads: int) -> None:
    """Few rows would take other BLAS kernels, whose sums round differently (MKL: 1 row on
    one machine, any count not a multiple of 4 on an AMD EPYC): every count and offset is
    checked."""
    gen = torch.Generator().manual_seed(0)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for d, c in ((16, 60), (64, 12101)):
            table_t = torch.randn(d, c, generator=gen)
            hidden = 3 * torch.randn(40, d, generator=gen)
            block = score_rows(hidden, table_t)
            assert torch.equal(block, hidden @ table_t)  # a multiple of 4 rows: as it is
            for i in range(hidden.shape[0]):
                assert torch.equal(score_rows(hidden[i : i + 1], table_t)[0], block[i])
            for p in range(2, 18):
                for start in (0, 3, 40 - p):
                    rows = slice(start, start + p)
                    assert torch.equal(score_rows(hidden[rows], table_t), block[rows]), (p, start)
    finally:
        torch.set_num_threads(before)


def test_score_blocks_give_the_same_results(rec: Recommender) -> None:
    small = Recommender(
        rec.model, rec.vocab, maxlen=rec.maxlen, item_counts=None, score_budget=rec.n_items * 3
    )
    hs = histories(rec, 10, seed=3)
    assert [r.items for r in small.recommend(hs, k=6)] == [r.items for r in rec.recommend(hs, k=6)]


@pytest.mark.parametrize("k", [0, -1, 61, 2.5, True, "3", None])
def test_bad_k_is_refused(rec: Recommender, k: object) -> None:
    with pytest.raises(SeqrecError, match="k must be an integer from 1"):
        rec.recommend([["sku-10"]], k=k)  # type: ignore[arg-type]


def test_k_equal_to_catalogue_and_bad_histories(rec: Recommender) -> None:
    r = rec.recommend_one([], k=rec.n_items)
    assert len(r.items) == rec.n_items and len(set(r.items)) == rec.n_items
    with pytest.raises(SeqrecError, match="each history must be a list"):
        rec.recommend(["sku-10"], k=3)  # type: ignore[list-item]
    with pytest.raises(SeqrecError, match="must be a list of lists"):
        rec.recommend("sku-10", k=3)  # type: ignore[arg-type]
    assert rec.recommend([], k=3) == []


def test_pad_keeps_the_most_recent_known_items(rec: Recommender) -> None:
    index = rec.vocab.item_index()
    h = [*rec.vocab.items[:15], "unknown"]
    x = rec.pad([h, [], ["unknown"]])
    assert x.shape == (3, MAXLEN) and x.dtype == np.int64
    assert x[0].tolist() == [index[r] for r in h[5:15]]
    assert x[1].tolist() == [0] * MAXLEN and x[2].tolist() == [0] * MAXLEN


def test_counts_recomputed_from_the_dataset_or_unavailable(run_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    (copy / runs.BEST / ITEM_COUNTS).unlink()
    rec = Recommender.from_run(copy)  # the dataset file (log.tsv) is still there
    assert rec.info["popularity_counts"].startswith("dataset")
    expected = Recommender.from_run(run_dir).recommend_one([], k=5).items
    assert rec.recommend_one([], k=5).items == expected
    (run_dir.parent.parent / "log.tsv").rename(tmp_path / "moved.tsv")
    try:
        rec = Recommender.from_run(copy)
    finally:
        (tmp_path / "moved.tsv").rename(run_dir.parent.parent / "log.tsv")
    r = rec.recommend_one(["nope"], k=5)
    assert r.source == "unavailable" and r.items == [] and r.unknown == ["nope"]


def test_broken_run_folders_give_clear_errors(run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(SeqrecError, match="not a run folder"):
        Recommender.from_run(tmp_path)
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    (copy / runs.BEST / "vocab.json").unlink()
    with pytest.raises(SeqrecError, match=r"vocab\.json is missing"):
        Recommender.from_run(copy)


def test_model_info(rec: Recommender) -> None:
    info = rec.info
    assert info["n_items"] == 60 and info["maxlen"] == MAXLEN and info["model"]["dim"] == 16
    assert info["loss"]["name"] == "ce" and "ndcg@10" in info["test"]
    assert info["trained_finished"] is not None


# ---------------------------------------------------------------------------- titles


def test_titles_from_an_explicit_file(run_dir: Path, tmp_path: Path) -> None:
    items = Recommender.from_run(run_dir).vocab.items
    path = tmp_path / "items.txt"
    body = "".join(f"{raw}|Title of {raw} caf\xe9|x|y\n" for raw in items[:30])
    path.write_bytes(body.encode("iso-8859-1"))
    rec = Recommender.from_run(run_dir, titles_path=path)
    r = rec.recommend_one([], k=rec.n_items)
    titled = {i: t for i, t in zip(r.items, r.titles or [], strict=True) if t is not None}
    assert set(titled) == set(items[:30])
    assert all(t == f"Title of {i} café" for i, t in titled.items())
    assert rec.info["titles_note"] == "30 of 60 items have a title"


def test_read_titles_both_formats_and_bad_lines(tmp_path: Path) -> None:
    dat = tmp_path / "movies.dat"
    dat.write_bytes(
        "1::Toy Story (1995)::Animation\n\n2::Am\xe9lie (2001)::Comedy\n".encode("iso-8859-1")
    )
    assert read_titles(dat) == {"1": "Toy Story (1995)", "2": "Amélie (2001)"}
    item = tmp_path / "u.item"
    item.write_text("1|Toy Story (1995)|01-Jan-1995||url|0|1\n")
    assert read_titles(item) == {"1": "Toy Story (1995)"}
    bad = tmp_path / "bad.dat"
    bad.write_text("1::A::x\n2::\n")
    with pytest.raises(DataError, match=r"bad.dat:2: expected 'id::title"):
        read_titles(bad)
    dup = tmp_path / "dup.dat"
    dup.write_text("1::A::x\n1::B::y\n")
    with pytest.raises(DataError, match=r"dup\.dat:2: item id '1' appears twice"):
        read_titles(dup)
    with pytest.raises(DataError, match="cannot tell the metadata format"):
        (tmp_path / "x.txt").write_text("1 A\n")
        read_titles(tmp_path / "x.txt")


def test_ml1m_titles_are_never_joined(tmp_path: Path) -> None:
    (tmp_path / "ml-1m").mkdir()
    (tmp_path / "ml-1m" / "movies.dat").write_text("1::Toy Story (1995)::Animation\n")
    t = titles_for_dataset("ml-1m", tmp_path, items=("1",))
    assert t.titles == {} and t.note == UNJOINABLE["ml-1m"]


def test_real_ml100k_titles_join_and_ml1m_ids_are_remapped(real_data_dir: str) -> None:
    t = titles_for_dataset("ml-100k", real_data_dir, items=tuple(str(i) for i in range(1, 1683)))
    assert len(t.titles) == 1682 and t.titles["1"] == "Toy Story (1995)"
    # The finding behind UNJOINABLE: ml-1m.txt ids are assigned in order of first appearance.
    with open(Path(real_data_dir) / "ml-1m" / "ml-1m.txt") as f:
        first = [f.readline().split() for _ in range(79)]
    assert [int(i) for u, i in first] == list(range(1, 80)) and {u for u, _ in first} == {"1"}


# ---------------------------------------------------------------------------- the command


def test_recommend_command(
    run_dir: Path,
    rec: Recommender,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`seqrec recommend RUN --history "..." -k K [--json]`: raw ids in and out, history
    excluded by default, unknown ids reported, several --history for several users."""
    import json
    import sys

    from seqrec.cli import main

    def run(*args: str) -> tuple[str, str]:
        monkeypatch.setattr(sys, "argv", ["seqrec", "recommend", str(run_dir), *args])
        with pytest.raises(SystemExit) as done:  # typer exits, 0 on success
            main()
        assert done.value.code == 0
        return capsys.readouterr()

    h = list(rec.vocab.items[:3])
    out, _ = run("--history", " ".join(h), "-k", "5", "--json")
    got = json.loads(out)
    assert got["items"] == rec.recommend_one(h, k=5).items and not set(got["items"]) & set(h)
    out, _ = run("--history", ",".join(h), "-k", "5", "--keep-history", "--json")
    assert json.loads(out)["items"] == rec.recommend_one(h, k=5, exclude_history=False).items
    out, err = run("--history", f"{h[0]} ghost", "--history", "", "-k", "2")
    lines = out.splitlines()
    assert lines[0] == f"history 1: {h[0]} ghost" and lines[3] == "history 2: (empty)"
    assert lines[1].split()[1] == rec.recommend_one([h[0]], k=2).items[0]
    assert "unknown ids (dropped): ghost" in err and "most popular" in err
