"""Plots of a study's training curves (matplotlib, Agg backend; PNG and SVG).

Input is the per-epoch log of every run (``metrics.jsonl`` records, see :mod:`seqrec.runs`),
grouped ``curves[dataset][method] = [records of seed 1, records of seed 2, ...]``. Seeds are
aligned by epoch: a point is the mean over the seeds that reached that epoch, the band ± one
sample standard deviation. One panel per dataset, one colour per method (the same in every
figure).

* ``valid_ndcg_vs_time``: validation NDCG@10 against wall-clock seconds since training started
  (Li et al. 2023, Fig. 2: how fast each loss gets how good);
* ``train_loss``: mean training loss per position against epochs (log scale; the losses are on
  different scales, the shapes are what compare);
* ``valid_ndcg_vs_epoch``: validation NDCG@10 against epochs (shows e.g. NCE's early plateau,
  Xu et al. 2024, Fig. 3);
* ``ndcg_by_position``: NDCG@10 of the best checkpoint at every position of the users'
  sequences, counted from the end (-1 = the test item, -2 = the validation item, further left
  the training items; Li et al. 2023, Fig. 3), from each run's ``positions.json``
  (:mod:`seqrec.experiments.positions`). Drawn only when some run has one.

Li et al. plot *test* NDCG@10 during training; seqrec logs only validation metrics per epoch
(the test set is looked at once, at the best validation epoch), so ``valid_ndcg_vs_time`` is the
honest version of their Fig. 2.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display needed; must precede any pyplot import elsewhere

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FormatStrFormatter, MaxNLocator

Curves = Mapping[str, Mapping[str, Sequence[Sequence[Mapping[str, Any]]]]]
Getter = Callable[[Mapping[str, Any]], float | None]

FORMATS = ("png", "svg")
MIN_WIDTH = 8.0  # inches: a one-dataset figure is as wide as its title and legend need


def _valid_ndcg10(record: Mapping[str, Any]) -> float | None:
    value = (
        record.get("valid", {}).get("ndcg@10") if isinstance(record.get("valid"), dict) else None
    )
    return None if value is None else float(value)


def _field(name: str) -> Getter:
    def get(record: Mapping[str, Any]) -> float | None:
        value = record.get(name)
        return None if value is None else float(value)

    return get


def mean_curve(
    seeds: Sequence[Sequence[Mapping[str, Any]]], x: Getter, y: Getter
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Align the seeds' records by ``epoch`` and average.

    Returns ``(x_mean, y_mean, y_std, n)`` over the epochs where at least one seed has both x
    and y; ``y_std`` is the sample std (ddof = 1), 0 where only one seed contributes.
    """
    by_epoch: dict[int, list[tuple[float, float]]] = {}
    for records in seeds:
        for r in records:
            xv, yv = x(r), y(r)
            if xv is None or yv is None or not (math.isfinite(xv) and math.isfinite(yv)):
                continue
            by_epoch.setdefault(int(r["epoch"]), []).append((xv, yv))
    epochs = sorted(by_epoch)
    xs = np.array([np.mean([p[0] for p in by_epoch[e]]) for e in epochs], dtype=float)
    ys = np.array([np.mean([p[1] for p in by_epoch[e]]) for e in epochs], dtype=float)
    sd = np.array(
        [
            np.std([p[1] for p in by_epoch[e]], ddof=1) if len(by_epoch[e]) > 1 else 0.0
            for e in epochs
        ],
        dtype=float,
    )
    n = np.array([len(by_epoch[e]) for e in epochs], dtype=int)
    return xs, ys, sd, n


def _colours(curves: Curves) -> dict[str, Any]:
    methods: list[str] = []
    for per_method in curves.values():
        methods += [m for m in per_method if m not in methods]
    cmap = matplotlib.colormaps["tab10" if len(methods) <= 10 else "tab20"]
    return {m: cmap(i % cmap.N) for i, m in enumerate(methods)}


def _panel(
    ax: Axes,
    per_method: Mapping[str, Sequence[Sequence[Mapping[str, Any]]]],
    x: Getter,
    y: Getter,
    colours: Mapping[str, Any],
) -> int:
    drawn = 0
    for method, seeds in per_method.items():
        xs, ys, sd, _n = mean_curve(seeds, x, y)
        if len(xs) == 0:
            continue
        c = colours[method]
        label = f"{method} (n={len(seeds)})"
        ax.plot(xs, ys, color=c, marker="o", markersize=3, linewidth=1.6, label=label)
        if len(seeds) > 1:
            ax.fill_between(xs, ys - sd, ys + sd, color=c, alpha=0.18, linewidth=0)
        drawn += 1
    ax.grid(True, alpha=0.3)
    return drawn


REFERENCE_LABEL = "dashed: the authors' published run"


def _reference_panel(
    ax: Axes,
    per_method: Mapping[str, Sequence[Mapping[str, Any]]],
    x: Getter,
    y: Getter,
    colours: Mapping[str, Any],
) -> bool:
    """Each method's published curve (one run's records), dashed in the method's colour."""
    drawn = False
    for method, records in per_method.items():
        pts = [(x(r), y(r)) for r in records]
        pts = [(a, b) for a, b in pts if a is not None and b is not None]
        if not pts or method not in colours:
            continue
        xs, ys = zip(*sorted(pts), strict=True)
        ax.plot(xs, ys, color=colours[method], linestyle="--", linewidth=1.1, alpha=0.85)
        drawn = True
    return drawn


def plot_curves(
    curves: Curves,
    out_stem: str | Path,
    *,
    x: Getter,
    y: Getter,
    xlabel: str,
    ylabel: str,
    title: str,
    logy: bool = False,
    vlines: Sequence[tuple[float, str]] = (),
    integer_x: bool = False,
    references: Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]] | None = None,
) -> list[Path]:
    """One figure, one panel per dataset; saved as ``out_stem.png`` and ``out_stem.svg``.

    ``vlines``: (x, label) reference lines drawn dashed in every panel; ``integer_x``: only
    whole-number ticks on the x axis (epochs, positions); ``references[dataset][method]``: a
    published run's records (same ``x``/``y`` getters), drawn dashed in the method's colour.
    """
    datasets = list(curves)
    n = max(len(datasets), 1)
    # one panel alone still needs room for the title and a legend of up to 4 columns
    fig = Figure(figsize=(max(4.6 * n, MIN_WIDTH), 3.8), layout="constrained")
    axes = fig.subplots(1, n, squeeze=False)[0]
    colours = _colours(curves)
    handles: dict[str, Any] = {}
    for ax, dataset in zip(axes, datasets, strict=False):
        drawn = _panel(ax, curves[dataset], x, y, colours)
        if references and _reference_panel(ax, references.get(dataset, {}), x, y, colours):
            handles.setdefault(
                REFERENCE_LABEL, Line2D([], [], color="0.3", linestyle="--", linewidth=1.1)
            )
        ax.set_title(dataset, fontsize=11)
        ax.set_xlabel(xlabel)
        if logy and drawn and ax.dataLim.ymin > 0:  # log only makes sense for positive values
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))  # 4, not 4 x 10^0
            ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
        if not drawn:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        right = max((xv for xv, _ in vlines), default=None)
        for xv, text in vlines:  # label left of the line, the rightmost one right of it
            ax.axvline(xv, color="0.45", linestyle="--", linewidth=0.9)
            ax.text(
                xv,
                0.03,
                f" {text} ",
                transform=ax.get_xaxis_transform(),
                rotation=90,
                ha="left" if xv == right else "right",
                va="bottom",
                fontsize=8,
                color="0.35",
            )
        if integer_x:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(lab.rsplit(" (n=", 1)[0], h)
    axes[0].set_ylabel(ylabel)
    if handles:
        fig.legend(
            list(handles.values()),
            list(handles),
            loc="outside lower center",
            ncol=min(len(handles), 4),
            fontsize=9,
            frameon=False,
        )
    fig.suptitle(title, fontsize=12)
    out_stem = Path(out_stem)
    out_stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in FORMATS:
        path = out_stem.with_suffix(f".{fmt}")
        # the same figure gives the same file (no date, fixed SVG ids): a redrawn report's
        # unchanged plots do not show up as changed in version control
        with matplotlib.rc_context({"svg.hashsalt": "seqrec"}):
            fig.savefig(path, dpi=150, bbox_inches="tight", metadata={"Date": None})
        paths.append(path)
        fig.set_layout_engine("none")  # keep the layout just computed: the next format reuses it
    return paths


def position_records(positions: Any, metric: str = "ndcg@10") -> list[dict[str, Any]]:
    """A :class:`~seqrec.experiments.positions.PositionMetrics` as curve records: one per
    offset ``k``, keyed by ``epoch = k`` (so seeds align by offset) with ``x = -k``."""
    values = positions.metrics.get(metric)
    if values is None:
        return []
    return [
        {"epoch": int(k), "x": -int(k), metric: float(v)}
        for k, v in zip(positions.offsets, values, strict=True)
    ]


def plot_study(
    curves: Curves,
    out_dir: str | Path,
    *,
    positions: Mapping[str, Mapping[str, Sequence[Any]]] | None = None,
    references: Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]] | None = None,
) -> dict[str, Path]:
    """The standard figures (see the module docstring) in ``out_dir``; returns
    ``{"<figure>.png": path, "<figure>.svg": path, ...}``.

    ``positions[dataset][method]`` lists the runs' per-position metrics (one per seed); the
    per-position figure is drawn if any run has them. ``references[dataset][method]``: a
    published run's validation records (``epoch``, ``ndcg@10``), drawn dashed beside ours in
    the validation-against-epochs figure.
    """
    out_dir = Path(out_dir)
    specs = [
        (
            "valid_ndcg_vs_time",
            dict(
                x=_field("wall_seconds"),
                y=_valid_ndcg10,
                xlabel="wall-clock seconds of training",
                ylabel="validation NDCG@10",
                title="Validation NDCG@10 against training time",
            ),
        ),
        (
            "train_loss",
            dict(
                x=_field("epoch"),
                integer_x=True,
                y=_field("loss"),
                xlabel="epoch",
                ylabel="training loss (log scale)",
                title="Training loss",
                logy=True,
            ),
        ),
        (
            "valid_ndcg_vs_epoch",
            dict(
                x=_field("epoch"),
                integer_x=True,
                y=_valid_ndcg10,
                xlabel="epoch",
                ylabel="validation NDCG@10",
                title="Validation NDCG@10 against epochs",
                references=references,
            ),
        ),
    ]
    if positions and any(seeds for per in positions.values() for seeds in per.values()):
        pos_curves = {
            ds: {m: [position_records(p) for p in seeds] for m, seeds in per.items()}
            for ds, per in positions.items()
        }
        specs.append(
            (
                "ndcg_by_position",
                dict(
                    curves=pos_curves,
                    x=_field("x"),
                    y=_field("ndcg@10"),
                    xlabel="position from the end of the sequence",
                    ylabel="NDCG@10 (best checkpoint)",
                    title="NDCG@10 at every position of the sequences (-1 test, -2 valid)",
                    vlines=[(-1, "test"), (-2, "valid")],
                    integer_x=True,
                ),
            )
        )
    out: dict[str, Path] = {}
    for stem, kw in specs:
        data = kw.pop("curves", curves)
        for path in plot_curves(data, out_dir / stem, **kw):  # type: ignore[arg-type]
            out[path.name] = path
    return out
