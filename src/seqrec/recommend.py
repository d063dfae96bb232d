"""Recommendations from a trained run: raw item ids in, top-k raw item ids (with scores and
titles) out.

For a batch of histories (raw ids, oldest first) :meth:`Recommender.recommend`

1. maps raw ids to item indices in one vectorised pass; ids not in the run's vocabulary are
   dropped and reported per history (``Result.unknown``);
2. keeps the last ``maxlen`` known items of every history (the most recent), left-pads them to
   width ``maxlen`` and encodes the whole batch at once;
3. scores every item ``i in 1..C`` by ``s_i = h . E_i`` with ``h`` the hidden state at the last
   position (as :mod:`seqrec.evaluate` does), in row blocks of at most ``score_budget // C`` rows,
   padded to a multiple of 4 rows so that every row is summed alike (see :func:`score_rows`);
4. with ``exclude_history`` sets the score of every known item of the *whole* history (not only
   the last ``maxlen``) to ``-inf`` by indexing just those cells, and takes ``torch.topk``;
   excluded items are never returned, so a history covering almost the whole catalogue may get
   fewer than ``k`` items.

A history's results never depend on the other histories of its call, to the bit: the width is
always ``maxlen`` and one row is scored like a block of rows (tested), so the service may gather
concurrent requests into one call (:mod:`seqrec.serve`) without changing any answer.

A history that is empty, or has no known id, cannot be encoded: it gets the **popularity
fallback**, the ``k`` items most often seen in the run's training data (ties by item index),
with ``Result.source == "popularity"`` and the training counts as scores. The counts come from
``best/item_counts.npy`` (written by the trainer), else from re-reading the run's dataset; if
neither is possible such histories get no items and ``source == "unavailable"``.

Naive equivalent for one history ``x`` (known item indices, oldest first)::

    h = model.encode(left_pad(x[-maxlen:], maxlen))[0, -1]     # (d,)
    s = E[1:] @ h                                             # (C,)
    s[x - 1] = -inf                                           # exclude_history
    top = argsort(-s)[:k] + 1                                 # item indices -> vocab.items[i - 1]
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from itertools import chain, repeat
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqrec import runs
from seqrec.data.batching import left_pad
from seqrec.data.sequences import Sequences, Vocabulary
from seqrec.errors import SeqrecError
from seqrec.metadata import Titles, titles_for_dataset, titles_from_file
from seqrec.models.base import SequentialRecommender

log = logging.getLogger("seqrec.recommend")

ITEM_COUNTS = "item_counts.npy"  # in best/: int64[C + 1] training counts, row 0 = padding
SCORE_BUDGET: int = 32 * 2**20  # max floats in one (rows x C) score block

SOURCES = ("model", "popularity", "unavailable")


@dataclass(frozen=True)
class Result:
    """The recommendations for one history.

    items: raw ids, best first (at most k). scores: their scores (model scores
        ``h . E_i``, or training counts for the popularity fallback).
    titles: the items' titles (None per item without one), or None if the run has no titles.
    unknown: raw ids of the history that are not in the run's vocabulary (dropped; in order of
        first occurrence, each once).
    history_used: how many known items the model saw (at most maxlen).
    source: "model", "popularity" (empty or all-unknown history) or "unavailable" (no
        popularity counts for such a history).
    """

    items: list[str]
    scores: list[float]
    titles: list[str | None] | None
    unknown: list[str] = field(default_factory=list)
    history_used: int = 0
    source: str = "model"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Encoded:
    """A batch of histories mapped to item indices.

    index: item indices of all histories concatenated (0 where the raw id is unknown).
    offsets: int64[B + 1] CSR offsets of ``index``.
    known: Sequences of the known items of every history (CSR, order kept).
    unknown: per history, its unknown raw ids (first occurrence, each once).
    """

    index: np.ndarray
    offsets: np.ndarray
    known: Sequences
    unknown: list[list[str]]


class Recommender:
    """Top-k recommendations from a trained model (see the module docstring for the method).

    Args:
        model: a trained :class:`SequentialRecommender` (put in eval mode here).
        vocab: the run's vocabulary (``vocab.items[i - 1]`` is the raw id of item i).
        maxlen: how many of the most recent items the model sees.
        item_counts: int[C + 1] training counts by item index (the popularity fallback), or None.
        titles: raw id -> title (only for items that have one), or None.
        info: facts about the run shown by the service's ``GET /model``.
        score_budget: max floats in one (rows x C) score block.
    """

    def __init__(
        self,
        model: SequentialRecommender,
        vocab: Vocabulary,
        *,
        maxlen: int,
        item_counts: np.ndarray | None = None,
        titles: dict[str, str] | None = None,
        info: dict[str, Any] | None = None,
        score_budget: int = SCORE_BUDGET,
    ) -> None:
        if vocab.n_items != model.n_items:
            raise SeqrecError(
                f"the vocabulary has {vocab.n_items} items but the model has {model.n_items}; "
                "use the vocab.json saved with this checkpoint"
            )
        if isinstance(maxlen, bool) or not isinstance(maxlen, int) or maxlen < 1:
            raise SeqrecError(f"maxlen must be a positive integer, got {maxlen!r}")
        self.model = model.eval()
        self.vocab = vocab
        self.maxlen = maxlen
        self.n_items = model.n_items
        self.score_budget = max(1, int(score_budget))
        self._index = vocab.item_index()
        self._raw = np.array(vocab.items, dtype=object)  # (C,), raw id of item index i at i - 1
        with torch.inference_mode():
            table = model.item_embeddings().detach()  # (C + 1, d)
        self._table_t = table[1:].T.contiguous().clone()  # (d, C), padding row dropped
        self.titles = titles
        self.info = dict(info or {})
        self._pop_items: np.ndarray | None = None
        self._pop_scores: np.ndarray | None = None
        if item_counts is not None:
            counts = np.asarray(item_counts, dtype=np.float64)
            if counts.shape != (self.n_items + 1,):
                raise SeqrecError(
                    f"item_counts must have C + 1 = {self.n_items + 1} entries (item index 0..C), "
                    f"got shape {counts.shape}"
                )
            order = np.argsort(-counts[1:], kind="stable")  # most popular first, ties by index
            self._pop_items = order + 1  # (C,) item indices
            self._pop_scores = counts[1:][order]  # (C,)

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_run(
        cls,
        run_dir: str | Path,
        *,
        data_dir: str | Path | None = None,
        titles_path: str | Path | None = None,
    ) -> Recommender:
        """Load ``run_dir``'s best checkpoint, vocabulary, config, popularity counts and titles.

        data_dir: where the run's named dataset lives (default: the run's, then
            $SEQREC_DATA_DIR); used for titles and, without ``best/item_counts.npy``, counts.
        titles_path: a metadata file whose ids are the run's raw item ids (movies.dat or
            u.item format); default: the named dataset's own file when it can be joined.
        """
        run_dir = Path(run_dir)
        cfg = runs.load_run_config(run_dir)
        best = run_dir / runs.BEST
        model, meta = runs.load_checkpoint(best)
        vocab_path = best / "vocab.json"
        if not vocab_path.exists():
            raise SeqrecError(
                f"{vocab_path} is missing: the run cannot map raw ids to items; retrain, or copy "
                "the vocabulary saved with the checkpoint"
            )
        vocab = Vocabulary.load(vocab_path)
        data_dir = data_dir if data_dir is not None else cfg.data.data_dir
        counts, counts_source = _load_counts(best, cfg, model.n_items, data_dir)
        if titles_path is not None:
            titles = titles_from_file(titles_path, items=vocab.items)
        else:
            titles = titles_for_dataset(cfg.data.dataset, data_dir, items=vocab.items)
        if titles.note:
            log.info("titles: %s", titles.note)
        info = _run_info(run_dir, cfg, meta, model.n_items, counts_source, titles)
        return cls(
            model,
            vocab,
            maxlen=cfg.model.maxlen,
            item_counts=counts,
            titles=titles.titles or None,
            info=info,
        )

    # ------------------------------------------------------------------ encoding

    def encode_histories(self, histories: list[list[str]]) -> Encoded:
        """Map raw ids to item indices (vectorised) and split known from unknown ids."""
        if not isinstance(histories, list | tuple):
            raise SeqrecError(
                f"histories must be a list of lists of raw item ids, got {type(histories).__name__}"
            )
        for h in histories:
            if not isinstance(h, list | tuple):
                raise SeqrecError(
                    f"each history must be a list of raw item ids, got {type(h).__name__}"
                )
        B = len(histories)
        lengths = np.fromiter(map(len, histories), dtype=np.int64, count=B)  # (B,)
        offsets = np.zeros(B + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        flat = list(chain.from_iterable(histories))  # (T,) raw ids
        index = np.fromiter(
            map(self._index.get, map(str, flat), repeat(0)), dtype=np.int64, count=len(flat)
        )  # (T,), 0 = unknown
        row_of = np.repeat(np.arange(B, dtype=np.int64), lengths)  # (T,)
        unknown: list[list[str]] = [[] for _ in range(B)]
        bad = np.flatnonzero(index == 0)
        for t in bad:  # only the unknown ids (rare) are visited
            unknown[row_of[t]].append(str(flat[t]))
        if bad.size:
            unknown = [list(dict.fromkeys(u)) for u in unknown]
        keep = index > 0
        known_len = np.bincount(row_of[keep], minlength=B).astype(np.int64)  # (B,)
        known_offsets = np.zeros(B + 1, dtype=np.int64)
        np.cumsum(known_len, out=known_offsets[1:])
        known = Sequences(offsets=known_offsets, items=index[keep], n_items=self.n_items)
        return Encoded(index=index, offsets=offsets, known=known, unknown=unknown)

    def pad(self, histories: list[list[str]]) -> np.ndarray:
        """int64[B, maxlen]: the last maxlen known items of each history, left-padded with 0
        (the input of the model and of the exported ONNX graph)."""
        enc = self.encode_histories(histories)
        return left_pad(enc.known, np.arange(len(histories)), self.maxlen, trim=False)

    # ------------------------------------------------------------------ scoring

    def scores(self, items: np.ndarray) -> torch.Tensor:
        """float[B, C]: scores of items 1..C for left-padded inputs int64[B, maxlen] (no masking).
        Column j is item index j + 1."""
        with torch.inference_mode():
            hidden = self.model.encode(torch.from_numpy(np.ascontiguousarray(items)))  # (B, L, d)
            return score_rows(hidden[:, -1, :], self._table_t)  # (B, C)

    def recommend(
        self, histories: list[list[str]], k: int = 10, exclude_history: bool = True
    ) -> list[Result]:
        """Top-k raw item ids for each history (raw ids, oldest first); see the module docstring.

        Raises SeqrecError if k is not an integer in 1..C or a history is not a list.
        """
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= self.n_items:
            raise SeqrecError(
                f"k must be an integer from 1 to the catalogue size {self.n_items}, got {k!r}"
            )
        k = int(k)
        enc = self.encode_histories(histories)
        B = len(histories)
        known_len = enc.known.lengths()  # (B,)
        used = np.minimum(known_len, self.maxlen)  # (B,)
        out: list[Result | None] = [None] * B

        for b in np.flatnonzero(known_len == 0):  # popularity fallback
            out[b] = self._fallback(k, enc.unknown[b])

        rows = np.flatnonzero(known_len > 0)  # (b,) histories the model encodes
        if rows.size:
            x = left_pad(enc.known, rows, self.maxlen, trim=False)  # (b, maxlen)
            block = max(1, self.score_budget // self.n_items)
            with torch.inference_mode():
                hidden = self.model.encode(torch.from_numpy(x))[:, -1, :]  # (b, d)
                for start in range(0, len(rows), block):
                    part = rows[start : start + block]
                    s = score_rows(hidden[start : start + len(part)], self._table_t)  # (p, C)
                    if exclude_history:
                        r, c = _history_cells(enc.known, part)
                        s[torch.from_numpy(r), torch.from_numpy(c)] = -torch.inf
                    vals, idx = torch.topk(s, k, dim=1)  # (p, k) each, best first
                    if torch.isnan(vals).any():
                        raise SeqrecError(
                            "the model produced NaN scores: the checkpoint is broken (check the "
                            "run's training loss)"
                        )
                    vals_np, idx_np = vals.numpy(), idx.numpy() + 1  # item indices
                    finite = np.isfinite(vals_np)  # excluded items are -inf: never returned
                    for j, b in enumerate(part):
                        keep = finite[j]
                        out[b] = self._result(
                            idx_np[j][keep], vals_np[j][keep], enc.unknown[b], int(used[b]), "model"
                        )
        return out  # type: ignore[return-value]

    def recommend_one(
        self, history: list[str], k: int = 10, exclude_history: bool = True
    ) -> Result:
        """:meth:`recommend` for a single history."""
        return self.recommend([history], k=k, exclude_history=exclude_history)[0]

    # ------------------------------------------------------------------ helpers

    def _fallback(self, k: int, unknown: list[str]) -> Result:
        if self._pop_items is None or self._pop_scores is None:
            return Result([], [], None if self.titles is None else [], unknown, 0, "unavailable")
        return self._result(self._pop_items[:k], self._pop_scores[:k], unknown, 0, "popularity")

    def _result(
        self, items: np.ndarray, scores: np.ndarray, unknown: list[str], used: int, source: str
    ) -> Result:
        raw = self._raw[items - 1].tolist()  # (k,) raw ids
        titles = None if self.titles is None else [self.titles.get(r) for r in raw]
        return Result(
            raw, np.asarray(scores, dtype=np.float64).tolist(), titles, unknown, used, source
        )


ROW_BLOCK = 4  # score_rows multiplies blocks of a multiple of this many rows


def score_rows(hidden: torch.Tensor, table_t: torch.Tensor) -> torch.Tensor:
    """float[p, C] = hidden[p, d] @ table_t[d, C], each row to the bit as in any other block.

    BLAS libraries compute a product with few rows by other kernels, whose sums round
    differently (scores differ by ~1e-6, enough to swap near-tied items): MKL on the machine of
    earlier sessions for 1 row, on an AMD EPYC (AVX2 kernels) for every row count that is not
    a multiple of 4 (with 2 threads: 1-3, 5-7, 9-11). So the rows are padded, by repeating the last one, to a
    multiple of :data:`ROW_BLOCK`; every block then computes each row alike whatever its size
    and place (checked by the tests on the machine they run on), so a history scores the same
    alone or batched with others.
    """
    p = hidden.shape[0]
    pad = -p % ROW_BLOCK
    if pad:
        hidden = torch.cat([hidden, hidden[-1:].expand(pad, -1)])  # (p + pad, d)
    return (hidden @ table_t)[:p]  # (p, C)


def _history_cells(known: Sequences, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row-in-block, column) of every known history item of ``rows``; column = item - 1."""
    starts = known.offsets[rows]
    n = known.offsets[rows + 1] - starts  # (p,)
    total = int(n.sum())
    r = np.repeat(np.arange(len(rows), dtype=np.int64), n)  # (total,)
    src = np.repeat(starts - (np.cumsum(n) - n), n) + np.arange(total)  # (total,)
    return r, known.items[src].astype(np.int64) - 1


def _load_counts(
    best: Path, cfg: Any, n_items: int, data_dir: str | Path | None
) -> tuple[np.ndarray | None, str | None]:
    """Training item counts int64[C + 1] and where they came from; (None, None) if unavailable."""
    path = best / ITEM_COUNTS
    if path.exists():
        try:
            counts = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            log.warning("cannot read %s (%s); recomputing counts from the dataset", path, exc)
        else:
            if counts.shape == (n_items + 1,):
                return counts.astype(np.int64), str(path)
            log.warning("%s has shape %s, expected (%d,); ignored", path, counts.shape, n_items + 1)
    try:
        from dataclasses import replace

        from seqrec.data.datasets import load_dataset
        from seqrec.data.split import make_split

        data_cfg = cfg.data if data_dir is None else replace(cfg.data, data_dir=str(data_dir))
        prepared = load_dataset(data_cfg)
        if prepared.sequences.n_items != n_items:
            raise SeqrecError(
                f"the dataset now has {prepared.sequences.n_items} items, the model {n_items}"
            )
        train = make_split(prepared.sequences, data_cfg).train
        counts = np.bincount(train.items, minlength=n_items + 1).astype(np.int64)
        return counts, f"dataset {cfg.data.dataset} (training split)"
    except (SeqrecError, OSError, ValueError) as exc:
        log.warning("no popularity counts (%s); empty histories will get no recommendations", exc)
        return None, None


def _run_info(
    run_dir: Path,
    cfg: Any,
    meta: dict[str, Any],
    n_items: int,
    counts_source: str | None,
    titles: Titles,
) -> dict[str, Any]:
    """What ``GET /model`` shows: dataset, model and loss config, metrics, when trained."""
    results: dict[str, Any] = {}
    results_path = run_dir / runs.RESULTS
    if results_path.exists():
        try:
            results = json.loads(results_path.read_text())
        except (OSError, json.JSONDecodeError):
            results = {}
    started = None
    env_path = run_dir / runs.ENVIRONMENT
    if env_path.exists():
        try:
            started = json.loads(env_path.read_text()).get("started")
        except (OSError, json.JSONDecodeError):
            started = None
    finished = (
        time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(results_path.stat().st_mtime))
        if results_path.exists()
        else None
    )
    return {
        "run": run_dir.name,
        "dataset": cfg.data.dataset,
        "model": asdict(cfg.model),
        "loss": asdict(cfg.loss),
        "n_items": n_items,
        "maxlen": cfg.model.maxlen,
        "best_epoch": meta.get("epoch"),
        "valid": meta.get("valid"),
        "test": results.get("test"),
        "popularity_test": results.get("baselines", {}).get("popularity", {}).get("test"),
        "trained_started": started,
        "trained_finished": finished,
        "popularity_counts": counts_source,
        "titles": titles.source,
        "titles_note": titles.note,
    }
