"""The committed study reports carry the run records they are redrawn from.

Until stop 18 this project's .gitignore ignored every ``runs/`` folder, so the xu2024 report's
records were written next to it but never committed: a fresh clone had the report and not what
it is redrawn from. These tests run on the repository as checked out (CI: a fresh clone).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from seqrec.experiments.report import RECORDS, write_report

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
KEEPS = "Each run's record"  # the sentence a report with records has
REPORTS = sorted(
    p.parent for p in RESULTS.glob("*/report.md") if KEEPS in p.read_text(encoding="utf-8")
)


def test_some_committed_report_keeps_records():
    assert any(r.name == "xu2024" for r in REPORTS)


@pytest.mark.parametrize("report", REPORTS, ids=[r.name for r in REPORTS])
def test_committed_report_has_a_record_of_every_run(report: Path):
    text = (report / "report.md").read_text(encoding="utf-8")
    n_runs = int(re.search(r"^(\d+) runs? from", text, re.M).group(1))
    records = sorted((report / RECORDS).glob("*/results.json"))
    assert len(records) == n_runs, f"{report}: {n_runs} runs reported, {len(records)} records"


@pytest.mark.parametrize("report", REPORTS, ids=[r.name for r in REPORTS])
def test_committed_report_redraws_from_its_records(report: Path, tmp_path: Path):
    """Its records alone give the committed summary, number for number."""
    written = write_report(report / RECORDS, out_dir=tmp_path, plots=False, records=False)
    again = list(csv.DictReader(written["summary.csv"].open(encoding="utf-8")))
    committed = list(csv.DictReader((report / "summary.csv").open(encoding="utf-8")))
    assert again == committed
