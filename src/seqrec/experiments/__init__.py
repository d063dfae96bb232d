"""Fair comparisons as a product: study grids, resumable sweeps, significance-tested reports, plots.

* :func:`load_study` / :class:`Study` — a TOML grid of runs (:mod:`seqrec.experiments.study`);
* :func:`run_sweep` — run it resumably (:mod:`seqrec.experiments.sweep`);
* :func:`write_report` — tables, Markdown/LaTeX report and plots (:mod:`seqrec.experiments.report`),
  beside published numbers (:mod:`seqrec.experiments.papers`);
* per-position metrics of a trained run (:mod:`seqrec.experiments.positions`).

Heavy imports (torch, matplotlib, scipy) happen only when a function is called.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from seqrec.experiments.study import PlannedRun, Study, load_study, parse_study


def run_sweep(study_path: str | Path, *, quiet: bool = False, **kwargs: Any) -> list[Path]:
    """Run a study's unfinished runs; see :func:`seqrec.experiments.sweep.run_sweep`."""
    from seqrec.experiments.sweep import run_sweep as _run

    return _run(study_path, quiet=quiet, **kwargs)


def write_report(runs_dir: str | Path | Sequence[str | Path], **kwargs: Any) -> dict[str, Path]:
    """Collect runs (one folder or several) and write the report, the plots and the runs'
    records; keyword options as :func:`seqrec.experiments.report.write_report`."""
    from seqrec.experiments.report import write_report as _write

    return _write(runs_dir, **kwargs)


__all__ = ["PlannedRun", "Study", "load_study", "parse_study", "run_sweep", "write_report"]
