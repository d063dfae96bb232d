"""The sweep --jobs benchmark: its study variants differ from the quickstart only in threads."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

import sweep_jobs  # noqa: E402
from seqrec.experiments.study import load_study  # noqa: E402
from seqrec.experiments.sweep import config_diff  # noqa: E402


def test_variants_differ_only_in_threads(tmp_path: Path) -> None:
    original = {r.name: r.config for r in load_study(sweep_jobs.STUDY).runs()}
    for threads, want in (("1", 1), (None, None)):
        variant = load_study(sweep_jobs.variant_study(tmp_path, threads)).runs()
        assert [r.name for r in variant] == list(original)
        for r in variant:
            assert r.config.train.threads == want
            assert config_diff(r.config, original[r.name]) == []  # threads is a free setting
