"""Published numbers that studies reproduce, so a report can put them beside ours.

A study names its source with ``reference = "li2023"`` (or ``"xu2024"``); the report then matches
every (dataset, model, loss, positions) of the study with the paper's row for the same
``data.dataset``, ``model.name``, ``loss.name`` and ``loss.positions``, shows the paper's value
next to our mean over seeds and the gap ``100 * (ours - paper) / paper`` %, and flags a gap
larger than :data:`GAP_FLAG_PCT` (either sign).

Sources (all full ranking over the whole catalogue, leave-one-out, test at the best validation
epoch):

* ``li2023``: Li et al. 2023, "Cumulative Cross-Entropy", Table 2 (GRU4Rec and SASRec; S3-Rec is
  not implemented here). Their "BCE" trains every position with one sampled negative, "CE" the
  last position only, "CCE" full-softmax CE at every position: here ``bce``/all, ``ce``/last,
  ``ce``/all.
* ``xu2024``: Xu et al. 2024 (arXiv 2402.06216), SASRec, 5-seed means; their "CE" is ``ce`` at
  every position. NDCG@10 and HR@10 of the paper's table where DESIGN.md section 4 records them;
  everything else (BPR, NCE on ML-1M and Yelp, the @5 metrics) is the mean of the authors' own
  runs, read from the logs they published with their code (``data/xu2024_authors.json``, written
  by ``benchmarks/xu2024_authors_logs.py``). Those logs also give every row the authors' per-seed
  test values (:attr:`PaperRow.runs`) and one validation curve (:attr:`PaperRow.curve`), so a
  report can say whether our number lies within their seeds' spread and plot their curve beside
  ours. The table and the logs' means agree within 1e-4 except ML-1M CE (table
  0.1812 / 0.3131, logs 0.1820 / 0.3140) and Beauty NCE NDCG@10 (0.0573, logs 0.0571).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from seqrec.config import RunConfig

GAP_FLAG_PCT = 5.0  # |ours - paper| / paper above this is flagged in the report

#: source -> short citation shown in reports
SOURCES = {
    "li2023": "Li et al. 2023 (CCE), Table 2",
    "xu2024": "Xu et al. 2024 (arXiv 2402.06216), 5-seed means (table; the rest from their logs)",
}


@dataclass(frozen=True)
class PaperRow:
    """One published configuration: the values of ``metrics`` (test, full ranking)."""

    source: str
    dataset: str  # data.dataset as seqrec names it
    model: str
    loss: str
    positions: str
    metrics: Mapping[str, float]
    #: the authors' own runs where their logs are known: metric -> test value of every seed
    runs: Mapping[str, tuple[float, ...]] = field(default_factory=lambda: MappingProxyType({}))
    #: one of those runs' validation records (``epoch``, ``ndcg@10``, ...; ``train_loss``)
    curve: tuple[Mapping[str, float], ...] = ()
    #: the settings the authors' runs logged (their names and spelling, e.g. ``dropout_rate``)
    settings: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.dataset, self.model, self.loss, self.positions)


# Li et al. 2023, Table 2: rows HR@5 HR@10 HR@20 NDCG@5 NDCG@10 NDCG@20; columns GRU4Rec
# bce/ce/cce, SASRec bce/ce/cce (the "Improve." columns and S3-Rec are left out).
_LI_METRICS = ("hr@5", "hr@10", "hr@20", "ndcg@5", "ndcg@10", "ndcg@20")
_LI_COLUMNS = (
    ("gru4rec", "bce", "all"),
    ("gru4rec", "ce", "last"),
    ("gru4rec", "ce", "all"),
    ("sasrec", "bce", "all"),
    ("sasrec", "ce", "last"),
    ("sasrec", "ce", "all"),
)
_LI_TABLE2 = {
    "sports": """
        0.0100 0.0099 0.0221 0.0216 0.0168 0.0380
        0.0184 0.0163 0.0357 0.0330 0.0229 0.0541
        0.0297 0.0253 0.0548 0.0491 0.0330 0.0752
        0.0063 0.0064 0.0143 0.0147 0.0117 0.0267
        0.0090 0.0085 0.0187 0.0184 0.0137 0.0318
        0.0118 0.0107 0.0235 0.0225 0.0162 0.0371""",
    "toys": """
        0.0128 0.0097 0.0420 0.0430 0.0385 0.0736
        0.0236 0.0153 0.0597 0.0613 0.0485 0.0989
        0.0401 0.0229 0.0834 0.0862 0.0616 0.1299
        0.0081 0.0065 0.0297 0.0288 0.0291 0.0533
        0.0116 0.0083 0.0354 0.0347 0.0323 0.0615
        0.0157 0.0102 0.0414 0.0410 0.0356 0.0693""",
    "yelp": """
        0.0128 0.0094 0.0211 0.0166 0.0101 0.0232
        0.0220 0.0164 0.0367 0.0273 0.0174 0.0379
        0.0378 0.0273 0.0603 0.0499 0.0275 0.0623
        0.0080 0.0055 0.0134 0.0106 0.0064 0.0151
        0.0109 0.0078 0.0184 0.0140 0.0087 0.0198
        0.0149 0.0105 0.0244 0.0184 0.0112 0.0259""",
    "beauty": """
        0.0161 0.0223 0.0489 0.0358 0.0401 0.0694
        0.0266 0.0343 0.0695 0.0573 0.0537 0.0932
        0.0447 0.0514 0.0998 0.0878 0.0719 0.1286
        0.0100 0.0147 0.0342 0.0235 0.0291 0.0492
        0.0133 0.0185 0.0408 0.0305 0.0355 0.0568
        0.0179 0.0228 0.0484 0.0381 0.0381 0.0657""",
    "lastfm": """
        0.0248 0.0211 0.0339 0.0266 0.0083 0.0450
        0.0468 0.0312 0.0459 0.0404 0.0156 0.0587
        0.0624 0.0495 0.0606 0.0550 0.0284 0.0862
        0.0161 0.0138 0.0222 0.0179 0.0049 0.0310
        0.0232 0.0171 0.0262 0.0223 0.0073 0.0354
        0.0272 0.0218 0.0299 0.0259 0.0105 0.0423""",
}

# Xu et al. 2024 (DESIGN.md section 4): (dataset, loss) -> (NDCG@10, HR@10), SASRec, all positions
_XU = {
    ("ml-1m", "ce"): (0.1812, 0.3131),
    ("ml-1m", "sce"): (0.1862, 0.3186),
    ("ml-1m", "bce"): (0.1329, 0.2492),
    ("beauty", "ce"): (0.0597, 0.0986),
    ("beauty", "sce"): (0.0587, 0.0968),
    ("beauty", "nce"): (0.0573, 0.0961),
    ("beauty", "bce"): (0.0353, 0.0671),
    ("yelp", "ce"): (0.0415, 0.0696),
    ("yelp", "sce"): (0.0410, 0.0693),
    ("yelp", "bce"): (0.0281, 0.0501),
}


#: the authors' logged FreeRec settings -> (our config field, their value in our terms)
_FREEREC_SETTINGS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "epochs": ("train.epochs", int),
    "dropout_rate": ("model.dropout", float),
    "lr": ("train.lr", float),
    "batch_size": ("train.batch_size", int),
    "maxlen": ("model.maxlen", int),
    "weight_decay": ("train.weight_decay", float),
    "num_negs": ("loss.negatives", int),
    "neg_pool": ("loss.pool", lambda v: {"unseen": "not-history"}.get(v, v)),
    "c": ("loss.nce_c", float),
    "alpha": ("loss.alpha", float),
}


def settings_diff(row: PaperRow, cfg: RunConfig) -> list[str]:
    """``"model.dropout 0.6 (theirs 0.3)"`` for every setting the authors' runs logged that
    ``cfg`` sets otherwise; ``loss.*`` settings only where ``cfg``'s loss reads them (CE draws
    no negatives, so their ``num_negs`` is not compared). Empty without logged settings."""
    from seqrec.losses import loss_settings

    reads = loss_settings(cfg.loss.name)
    out = []
    for name, (ours_key, convert) in _FREEREC_SETTINGS.items():
        raw = row.settings.get(name)
        if raw is None or raw == "None":
            continue
        section, key = ours_key.split(".")
        if section == "loss" and key not in reads:
            continue
        theirs, ours = convert(raw), getattr(getattr(cfg, section), key)
        if ours != theirs:
            out.append(f"{ours_key} {ours} (theirs {theirs})")
    return out


#: metrics of the authors' logs that mean what ours mean (their MRR@k stops at k: not our MRR)
_LOG_METRICS = ("hr@5", "hr@10", "ndcg@5", "ndcg@10")


def authors_runs(source: str) -> dict[str, Any]:
    """The parsed logs of ``source``'s authors (``{"source": ..., "cells": ...}``), or ``{}``."""
    path = resources.files("seqrec.experiments") / "data" / f"{source}_authors.json"
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def _xu_rows() -> list[PaperRow]:
    cells = authors_runs("xu2024").get("cells", {})
    keys = sorted(set(_XU) | {(c["dataset"], c["loss"]) for c in cells.values()})
    rows = []
    for dataset, loss in keys:
        cell = cells.get(f"{dataset}/{loss}")
        metrics: dict[str, float] = {}
        runs: dict[str, tuple[float, ...]] = {}
        curve: tuple[Mapping[str, float], ...] = ()
        settings: Mapping[str, str] = MappingProxyType({})
        if cell is not None:
            settings = MappingProxyType(dict(cell["settings"]))
            for k in _LOG_METRICS:
                values = tuple(r["test"][k] for r in cell["runs"] if k in r["test"])
                if len(values) == len(cell["runs"]):
                    runs[k] = values
                    metrics[k] = cell["test"][k]["mean"]
            with_curve = [r for r in cell["runs"] if r.get("curve")]
            if with_curve:
                curve = tuple(MappingProxyType(dict(p)) for p in with_curve[0]["curve"])
        if (dataset, loss) in _XU:  # the published table wins where it has a number
            metrics["ndcg@10"], metrics["hr@10"] = _XU[(dataset, loss)]
        rows.append(
            PaperRow(
                "xu2024",
                dataset,
                "sasrec",
                loss,
                "all",
                MappingProxyType(metrics),
                MappingProxyType(runs),
                curve,
                settings,
            )
        )
    return rows


def _build() -> dict[str, tuple[PaperRow, ...]]:
    li = []
    for dataset, text in _LI_TABLE2.items():
        grid = [[float(x) for x in line.split()] for line in text.strip().splitlines()]
        for col, (model, loss, positions) in enumerate(_LI_COLUMNS):
            li.append(
                PaperRow(
                    "li2023",
                    dataset,
                    model,
                    loss,
                    positions,
                    MappingProxyType({m: grid[i][col] for i, m in enumerate(_LI_METRICS)}),
                )
            )
    return {"li2023": tuple(li), "xu2024": tuple(_xu_rows())}


PAPERS: Mapping[str, tuple[PaperRow, ...]] = MappingProxyType(_build())


def paper_rows(source: str) -> dict[tuple[str, str, str, str], PaperRow]:
    """The rows of ``source`` keyed by (dataset, model, loss, positions)."""
    if source not in PAPERS:
        from seqrec.config import suggest
        from seqrec.errors import ConfigError

        raise ConfigError(
            f"unknown paper reference '{source}'{suggest(source, list(PAPERS))}; "
            f"known: {', '.join(PAPERS)}"
        )
    return {r.key: r for r in PAPERS[source]}


def gap_pct(ours: float, paper: float) -> float:
    """Relative gap ``100 * (ours - paper) / paper`` in percent (nan if the paper value is 0)."""
    return 100.0 * (ours - paper) / paper if paper else float("nan")


__all__ = [
    "GAP_FLAG_PCT",
    "PAPERS",
    "SOURCES",
    "PaperRow",
    "authors_runs",
    "gap_pct",
    "paper_rows",
    "settings_diff",
]
