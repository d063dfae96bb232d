"""Reports from hand-written run folders: aggregation, paired t-tests, tables, Markdown/LaTeX, plots."""

from __future__ import annotations

import csv
import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from scipy import stats

from cli_runner import run_cli
from seqrec.errors import ConfigError, SeqrecError
from seqrec.experiments.papers import paper_rows
from seqrec.experiments.plots import mean_curve, plot_study
from seqrec.experiments.report import (
    collect_runs,
    git_ignore_rule,
    latex_escape,
    paired_ttest,
    seed_spread,
    summarize,
    write_report,
)

from .fakes import fake_run, metrics, tiny_config

# test NDCG@10 by (dataset, loss, seed)
NDCG = {
    ("small", "ce", 1): 0.30,
    ("small", "ce", 2): 0.36,
    ("small", "bce", 1): 0.20,
    ("small", "bce", 2): 0.22,
    ("large", "ce", 1): 0.10,
    ("large", "ce", 2): 0.14,
    ("large", "bce", 1): 0.12,
    ("large", "bce", 2): 0.13,
}


def make_study_runs(root: Path, seeds=(1, 2), baseline: str | None = "bce") -> Path:
    """A sweep's out_dir by hand: 2 datasets x 2 losses x seeds, with a sweep.json manifest."""
    entries = []
    for (ds, loss, seed), ndcg in NDCG.items():
        if seed not in seeds:
            continue
        name = f"{ds}-sasrec-{loss}-all-seed{seed}"
        cfg = tiny_config(loss={"name": loss}, train={"seed": seed}, name=name, out_dir=str(root))
        curve = [
            {
                "epoch": e,
                "loss": 3.0 / e,
                "wall_seconds": 1.5 * e,
                "valid": {"ndcg@10": ndcg * e / 3},
            }
            for e in (1, 2, 3)
        ]
        fake_run(root / name, cfg, metrics(ndcg), epochs=curve, best_epoch=3)
        positions = {"offsets": [1, 2, 3], "n": [9, 9, 8], "metrics": {"ndcg@10": [ndcg] * 3}}
        (root / name / "positions.json").write_text(json.dumps(positions), encoding="utf-8")
        entries.append(
            {
                "name": name,
                "dataset": ds,
                "method": f"sasrec-{loss}-all",
                "model": "sasrec",
                "loss": loss,
                "positions": "all",
                "seed": seed,
                "factors": {},
            }
        )
    (root / "sweep.json").write_text(
        json.dumps({"study": "handmade", "baseline": baseline, "runs": entries}), encoding="utf-8"
    )
    return root


def by_key(summaries):
    return {(s.dataset, s.method): s for s in summaries}


def test_paired_ttest_matches_a_hand_computation():
    # two pairs: df = 1, the t distribution is Cauchy, so p = 1 - (2/pi) * atan(|t|)
    x, base = [0.30, 0.36], [0.20, 0.22]
    d = np.array(x) - np.array(base)  # 0.10, 0.14
    t = d.mean() / (d.std(ddof=1) / math.sqrt(2))  # 0.12 / (0.028284 / 1.41421) = 6.0
    assert t == pytest.approx(6.0)
    res = paired_ttest(x, base)
    assert res.n == 2 and res.statistic == pytest.approx(6.0)
    assert res.pvalue == pytest.approx(1 - 2 / math.pi * math.atan(6.0))
    # three pairs against scipy directly
    x3, b3 = [0.3, 0.5, 0.4], [0.1, 0.2, 0.4]
    assert paired_ttest(x3, b3).pvalue == pytest.approx(stats.ttest_rel(x3, b3).pvalue)


def test_paired_ttest_says_when_no_test_is_possible():
    one = paired_ttest([0.3], [0.2])
    assert one.pvalue is None and one.n == 1 and "at least 2" in (one.reason or "")
    same = paired_ttest([0.3, 0.4], [0.2, 0.3])  # identical differences: no variance
    assert same.pvalue is None and "identical differences" in (same.reason or "")
    with pytest.raises(SeqrecError):
        paired_ttest([0.1, 0.2], [0.1])


def test_summaries_mean_std_relative_change_and_pvalue_by_hand(tmp_path):
    records, notes, info = collect_runs(make_study_runs(tmp_path / "runs"))
    assert len(records) == 8 and not notes and info["baseline"] == "bce"
    summaries, used, _ = summarize(records, "bce")
    assert used == ["hr@5", "hr@10", "hr@20", "ndcg@5", "ndcg@10", "ndcg@20", "mrr"]
    s = by_key(summaries)
    ce = s[("small", "sasrec-ce-all")]
    assert ce.seeds == (1, 2)
    assert ce.mean["ndcg@10"] == pytest.approx(0.33)
    assert ce.std["ndcg@10"] == pytest.approx(math.sqrt(2 * 0.03**2))  # sample std, n - 1 = 1
    assert ce.baseline == "sasrec-bce-all" and not ce.is_baseline
    assert ce.rel["ndcg@10"] == pytest.approx(100 * (0.33 - 0.21) / 0.21)
    assert ce.tests["ndcg@10"].pvalue == pytest.approx(1 - 2 / math.pi * math.atan(6.0))
    base = s[("small", "sasrec-bce-all")]
    assert base.is_baseline and base.baseline is None and not base.tests
    # order: datasets as found, baseline first within each
    assert next(x.method for x in summaries if x.dataset == "small") == "sasrec-bce-all"


def test_without_baseline_there_are_no_tests(tmp_path):
    records, _, _ = collect_runs(make_study_runs(tmp_path / "runs", baseline=None))
    summaries, _, notes = summarize(records, None)
    assert all(not x.tests and x.baseline is None for x in summaries) and not notes
    summaries, _, notes = summarize(records, "gbce")
    assert any("no method matches the baseline 'gbce'" in n for n in notes)


def test_baseline_is_matched_to_the_most_similar_method(tmp_path):
    root = tmp_path / "runs"
    for model in ("sasrec", "gru4rec"):
        for loss, v in (("ce", 0.3), ("bce", 0.2)):
            for seed in (1, 2):
                cfg = tiny_config(model={"name": model}, loss={"name": loss}, train={"seed": seed})
                fake_run(root / f"{model}-{loss}-{seed}", cfg, metrics(v + 0.01 * seed))
    records, notes, _ = collect_runs(root)  # no manifest: labels from config.toml
    assert not notes
    s = by_key(summarize(records, "bce")[0])
    assert s[("synthetic", "gru4rec-ce-all")].baseline == "gru4rec-bce-all"
    assert s[("synthetic", "sasrec-ce-all")].baseline == "sasrec-bce-all"


def test_labels_without_manifest_include_the_settings_that_differ(tmp_path):
    root = tmp_path / "runs"
    for lr in (0.001, 0.003):
        cfg = tiny_config(train={"lr": lr, "seed": 5})
        fake_run(root / f"lr{lr}", cfg, metrics(0.2))
    records, _, _ = collect_runs(root)
    assert sorted(r.method for r in records) == ["sasrec-ce-all-lr0.001", "sasrec-ce-all-lr0.003"]
    assert {r.dataset for r in records} == {"synthetic"} and {r.seed for r in records} == {5}


def test_labels_name_only_the_loss_settings_each_loss_reads(tmp_path):
    """NCE with c = 0 and c = 10 beside CE (which has no c and no negatives): the NCE runs are
    told apart by c and K, the CE run is not labelled with settings it never read."""
    root = tmp_path / "runs"
    for name, loss in (
        ("ce", {"name": "ce"}),
        ("nce0", {"name": "nce", "nce_c": 0.0, "negatives": 50}),
        ("nce10", {"name": "nce", "nce_c": 10.0, "negatives": 50}),
    ):
        fake_run(root / name, tiny_config(loss=loss), metrics(0.2))
    records, _, _ = collect_runs(root)
    assert sorted(r.method for r in records) == [
        "sasrec-ce-all",
        "sasrec-nce-all-nce_c0-negatives50",
        "sasrec-nce-all-nce_c10-negatives50",
    ]


def test_broken_and_unfinished_folders_are_skipped_with_a_note(tmp_path):
    root = make_study_runs(tmp_path / "runs")
    (root / "unfinished").mkdir()
    (root / "unfinished" / "config.toml").write_text("")
    (root / "broken").mkdir()
    (root / "broken" / "results.json").write_text("{}")  # no config.toml
    (root / ".incomplete" / "x").mkdir(parents=True)
    (root / ".incomplete" / "x" / "results.json").write_text("{}")
    (root / "started").mkdir()
    (root / "started" / "metrics.jsonl").write_text('{"epoch": 1}\n{"epoch": 2}\n')
    (root / ".incomplete" / "x" / "metrics.jsonl").write_text('{"epoch": 1}\n')  # hidden
    records, notes, _ = collect_runs(root)
    assert len(records) == 8
    assert len(notes) == 2
    assert "not finished, left out: started (epoch 2 logged" in notes[0]
    assert "broken" in notes[1]


def test_write_report_outputs(tmp_path):
    root = make_study_runs(tmp_path / "runs")
    out = write_report(root)
    for name in (
        "report.md",
        "report.tex",
        "runs.csv",
        "runs.parquet",
        "summary.csv",
        "valid_ndcg_vs_time.png",
        "valid_ndcg_vs_time.svg",
        "train_loss.png",
        "train_loss.svg",
        "valid_ndcg_vs_epoch.png",
        "valid_ndcg_vs_epoch.svg",
        "ndcg_by_position.png",
        "ndcg_by_position.svg",
    ):
        assert out[name].is_file() and out[name].stat().st_size > 0, name
    assert out["report.md"].parent == root / "report"
    assert out["valid_ndcg_vs_time.png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    rows = list(csv.DictReader(out["runs.csv"].open()))
    assert len(rows) == 8 and float(rows[0]["test_ndcg@10"]) in NDCG.values()
    table = pq.read_table(out["runs.parquet"])
    assert table.num_rows == 8 and "test_mrr" in table.column_names
    summary = {(r["dataset"], r["method"]): r for r in csv.DictReader(out["summary.csv"].open())}
    assert float(summary[("small", "sasrec-ce-all")]["ndcg@10_mean"]) == pytest.approx(0.33)
    assert summary[("small", "sasrec-bce-all")]["ndcg@10_p"] == ""

    md = out["report.md"].read_text()
    assert "# Study handmade" in md
    assert md.index("## small") < md.index("## large")  # the study's order, not alphabetical
    # best per column in bold: on "small" CE wins (0.33 ± 0.0424), on "large" CE (0.12) vs
    # BCE (0.125): BCE wins
    assert "**0.3300 ± 0.0424**" in md
    assert "**0.1250 ± 0.0071**" in md
    assert "+57.1% (p=0." in md  # (0.33 - 0.21) / 0.21
    assert " | 3 | 1 |\n" in md  # best epoch 3 of every seed, 1 s of training: no stray ".0"
    assert "![valid_ndcg_vs_time](plots/valid_ndcg_vs_time.png)" in md
    # every dataset says how its runs ranked the user's history (all default here)
    assert md.count("User's history in the ranking: masked (`mask`") == 2
    tex = out["report.tex"].read_text()
    assert "\\textbf{0.3300 $\\pm$ 0.0424}" in tex and "\\begin{tabular}" in tex
    assert "sasrec-ce-all" in tex


def _summary_numbers(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.open()))


def _runs_numbers(path: Path) -> dict[str, dict[str, str]]:
    """runs.csv by run name, without the column that says where the run folder was."""
    return {
        r["name"]: {k: v for k, v in r.items() if k != "run_dir"}
        for r in csv.DictReader(path.open())
    }


def test_report_keeps_the_runs_records_and_is_redrawn_from_them_alone(tmp_path):
    import shutil

    root = make_study_runs(tmp_path / "runs")
    (root / "small-sasrec-ce-all-seed1" / "best").mkdir()  # weights: never copied
    (root / "small-sasrec-ce-all-seed1" / "best" / "model.safetensors").write_bytes(b"w" * 99)
    first = write_report(root, out_dir=tmp_path / "rep", plots=False)
    kept = first["runs"]
    assert kept == tmp_path / "rep" / "runs"
    names = sorted(p.name for p in kept.iterdir() if p.is_dir())
    assert names == sorted(p.name for p in root.iterdir() if p.is_dir())
    for name in names:
        files = {p.name for p in (kept / name).iterdir()}
        assert files == {"config.toml", "metrics.jsonl", "results.json", "positions.json"}
    planned = json.loads((kept / "sweep.json").read_text())
    assert planned["study"] == "handmade" and len(planned["runs"]) == 8
    assert "`runs/`" in first["report.md"].read_text()

    shutil.rmtree(root)  # the run folders are gone: the report folder alone redraws it
    again = write_report(kept, out_dir=tmp_path / "rep2", plots=False)
    assert _summary_numbers(again["summary.csv"]) == _summary_numbers(first["summary.csv"])
    assert _runs_numbers(again["runs.csv"]) == _runs_numbers(first["runs.csv"])
    assert "# Study handmade" in again["report.md"].read_text()  # the manifest came along


def test_several_runs_dirs_are_pooled_and_the_first_given_wins(tmp_path):
    whole = write_report(make_study_runs(tmp_path / "all"), plots=False, records=False)
    assert "runs" not in whole
    seed1 = make_study_runs(tmp_path / "seed1", seeds=(1,))
    seed2 = make_study_runs(tmp_path / "seed2", seeds=(2,))
    # seed2 also holds a different run of (small, ce, seed 1): the first folder given wins
    cfg = tiny_config(loss={"name": "ce"}, train={"seed": 1}, name="dup", out_dir=str(seed2))
    fake_run(seed2 / "small-sasrec-ce-all-seed1", cfg, metrics(0.99))
    entries = json.loads((seed2 / "sweep.json").read_text())
    entries["runs"].append({**entries["runs"][0], "name": "small-sasrec-ce-all-seed1", "seed": 1})
    (seed2 / "sweep.json").write_text(json.dumps(entries))

    pooled = write_report([seed1, seed2], out_dir=tmp_path / "pooled", plots=False)
    assert _summary_numbers(pooled["summary.csv"]) == _summary_numbers(whole["summary.csv"])
    md = pooled["report.md"].read_text()
    assert "runs from `" + str(seed1) + "`, `" + str(seed2) + "`" in md
    assert f"skipped {seed2 / 'small-sasrec-ce-all-seed1'}: same dataset, method and seed" in md
    assert "fewer seeds" not in md  # both seeds of every cell are there between the two
    kept = pooled["runs"]
    assert len([p for p in kept.iterdir() if p.is_dir()]) == 8
    ndcg = {r["name"]: float(r["test_ndcg@10"]) for r in csv.DictReader(pooled["runs.csv"].open())}
    assert ndcg["small-sasrec-ce-all-seed1"] == pytest.approx(0.30)


def test_a_report_is_redrawn_in_place_from_its_records_and_newer_runs(tmp_path):
    old = make_study_runs(tmp_path / "old", seeds=(1,))
    out = tmp_path / "results"
    write_report(old, out_dir=out, plots=False)
    new = make_study_runs(tmp_path / "new", seeds=(2,))
    written = write_report([new, old, out / "runs"], out_dir=out, plots=False)
    assert len(list(csv.DictReader(written["runs.csv"].open()))) == 8
    assert "skipped" not in written["report.md"].read_text()  # records of the same runs: silent
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []  # no leftovers
    assert len([p for p in (out / "runs").iterdir() if p.is_dir()]) == 8
    # and once more from the records alone: the same 8 runs
    again = write_report(out / "runs", out_dir=out, plots=False)
    assert len(list(csv.DictReader(again["runs.csv"].open()))) == 8


def test_records_inside_a_report_folder_are_not_read_as_more_runs(tmp_path):
    root = make_study_runs(tmp_path / "runs")
    write_report(root, plots=False)  # the default out_dir, root/report, lies inside root
    assert (root / "report" / "runs" / "small-sasrec-ce-all-seed1" / "results.json").is_file()
    records, notes, _ = collect_runs(root)
    assert len(records) == 8 and not any("same dataset" in n for n in notes)
    # given as the folder itself, a report folder's records are its runs
    records, _, _ = collect_runs(root / "report")
    assert len(records) == 8


def test_report_says_which_history_protocol_each_dataset_used(tmp_path):
    from seqrec.experiments.report import history_protocols

    root = tmp_path / "runs"
    for seed, history in ((1, "zero"), (2, "zero"), (3, "keep")):
        name = f"run-seed{seed}"
        cfg = tiny_config(
            eval={"history": history}, train={"seed": seed}, name=name, out_dir=str(root)
        )
        fake_run(root / name, cfg, metrics(0.2))
    records, _notes, _ = collect_runs(root)
    assert history_protocols(records) == {
        "synthetic": "**mixed**: kept (`keep`) in 1 runs, scored 0, a repeat target included "
        "(`zero`, S3-Rec's code) in 2 runs"
    }
    written = write_report(root)
    assert "**mixed**: kept" in written["report.md"].read_text()
    tex = written["report.tex"].read_text()
    assert "mixed: user's history kept in 1 runs, user's history scored 0 (S3-Rec's code)" in tex


def test_report_names_cells_with_fewer_seeds_than_planned_and_cells_not_run(tmp_path):
    from seqrec.experiments.report import coverage_notes

    root = make_study_runs(tmp_path / "runs")
    records, _notes, _ = collect_runs(root)
    assert coverage_notes(root, records) == []  # everything the manifest plans is there
    for name in (
        "small-sasrec-ce-all-seed2",
        "large-sasrec-bce-all-seed1",
        "large-sasrec-bce-all-seed2",
    ):
        (root / name / "results.json").unlink()
    records, _notes, _ = collect_runs(root)
    want = [
        "1 cell(s) have fewer seeds than the study plans: small sasrec-ce-all: 1 of 2 (seed 1)",
        "not run yet on large: sasrec-bce-all",
    ]
    assert coverage_notes(root, records) == want
    md = write_report(root, baseline="ce")["report.md"].read_text()
    assert all(f"- {note}" in md for note in want)


def test_runs_table_carries_the_test_standard_errors_where_recorded(tmp_path):
    root = make_study_runs(tmp_path / "runs")
    first = sorted(p for p in root.iterdir() if (p / "results.json").is_file())[0]
    res = json.loads((first / "results.json").read_text())
    res["test_se"] = {k: 0.01 for k in res["test"]}
    (first / "results.json").write_text(json.dumps(res))
    out = write_report(root, plots=False)
    rows = {r["name"]: r for r in csv.DictReader(out["runs.csv"].open())}
    assert float(rows[first.name]["test_se_ndcg@10"]) == 0.01
    others = [r for n, r in rows.items() if n != first.name]
    assert others and all(r["test_se_ndcg@10"] == "" for r in others)  # older runs: none


def test_report_with_one_seed_says_no_test_possible(tmp_path):
    root = make_study_runs(tmp_path / "runs", seeds=(1,))
    out = write_report(root, out_dir=tmp_path / "rep", plots=False)
    md = out["report.md"].read_text()
    assert "p n/a" in md and "at least 2 common seeds" in md
    assert "0.3000 |" in md or "**0.3000**" in md  # no ± with a single seed
    assert not (tmp_path / "rep" / "plots").exists()


def test_empty_runs_dir_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SeqrecError, match="no finished runs"):
        write_report(tmp_path / "empty")
    with pytest.raises(SeqrecError, match="does not exist"):
        write_report(tmp_path / "nope")


def test_latex_escape():
    assert latex_escape("a_b & 5%") == r"a\_b \& 5\%"


def test_mean_curve_aligns_seeds_by_epoch():
    seeds = [
        [{"epoch": 1, "t": 1.0, "v": 0.1}, {"epoch": 2, "t": 2.0, "v": 0.3}],
        [{"epoch": 1, "t": 3.0, "v": 0.2}],  # stopped early
    ]
    xs, ys, sd, n = mean_curve(seeds, lambda r: r["t"], lambda r: r.get("v"))
    assert xs.tolist() == [2.0, 2.0] and ys == pytest.approx([0.15, 0.3])
    assert sd == pytest.approx([np.std([0.1, 0.2], ddof=1), 0.0]) and n.tolist() == [2, 1]


def test_plots_survive_missing_data(tmp_path):
    paths = plot_study({"d": {"m": [[{"epoch": 1, "loss": 1.0}]]}}, tmp_path)  # no valid metrics
    assert all(p.stat().st_size > 0 for p in paths.values()) and len(paths) == 6


def test_published_curves_are_drawn_dashed_beside_ours(tmp_path):
    from matplotlib.figure import Figure

    from seqrec.experiments.plots import _field, _reference_panel, _valid_ndcg10

    ours = {"d": {"m": [[{"epoch": 5, "valid": {"ndcg@10": 0.1}}]]}}
    theirs = [{"epoch": e, "valid": {"ndcg@10": v}} for e, v in ((0, 0.0), (5, 0.12), (10, 0.2))]
    ax = Figure().subplots()
    assert _reference_panel(
        ax, {"m": theirs, "other": theirs}, _field("epoch"), _valid_ndcg10, {"m": "C0"}
    )
    (line,) = ax.get_lines()  # only the method that is plotted gets its reference
    assert line.get_linestyle() == "--" and list(line.get_ydata()) == [0.0, 0.12, 0.2]
    assert not _reference_panel(
        ax, {"m": [{"epoch": 1}]}, _field("epoch"), _valid_ndcg10, {"m": "C0"}
    )
    paths = plot_study(ours, tmp_path, references={"d": {"m": theirs}})
    assert paths["valid_ndcg_vs_epoch.svg"].read_text().count("stroke-dasharray") >= 1
    plain = plot_study(ours, tmp_path / "plain")["valid_ndcg_vs_epoch.svg"].read_text()
    assert "the authors' published run" not in plain
    assert "the authors' published run" in paths["valid_ndcg_vs_epoch.svg"].read_text()


def test_plots_are_the_same_files_when_redrawn(tmp_path):
    """No date, fixed SVG ids: redrawing a report leaves its unchanged plots byte for byte."""
    curves = {
        "d": {
            "m": [
                [
                    {"epoch": e, "loss": 1.0 / e, "wall_seconds": e, "valid": {"ndcg@10": 0.1 * e}}
                    for e in (1, 2, 3)
                ]
            ]
        }
    }
    first = plot_study(curves, tmp_path / "a")
    again = plot_study(curves, tmp_path / "b")
    assert first.keys() == again.keys() and any(k.endswith(".svg") for k in first)
    for name, path in first.items():
        assert path.read_bytes() == again[name].read_bytes(), name


def test_seed_spread_says_where_ours_lies():
    assert seed_spread(0.0597, [0.0591, 0.0601]) == "in their range"
    assert seed_spread(0.0586, [0.0591, 0.0596, 0.0600, 0.0598, 0.0601]).startswith(
        "0.5 below their range; -2.8 sd"
    )
    assert seed_spread(0.07, [0.06, 0.06]) == "inf above their range; sd 0"


def make_paper_runs(root: Path, reference: str | None = "xu2024") -> Path:
    """SASRec ce and bce on 'beauty' (config only: nothing is read), 2 seeds, with a manifest
    naming the paper: ce 2% above Xu et al., bce 10% below."""
    entries = []
    for loss, paper_ndcg, paper_hr, factor in (
        ("ce", 0.0597, 0.0986, 1.02),
        ("bce", 0.0353, 0.0671, 0.90),
    ):
        for seed, wiggle in ((1, -0.0001), (2, 0.0001)):
            name = f"beauty-sasrec-{loss}-all-seed{seed}"
            cfg = tiny_config(data={"dataset": "beauty"}, loss={"name": loss}, train={"seed": seed})
            test = metrics(paper_ndcg * factor + wiggle)
            test["hr@10"] = paper_hr * factor + wiggle
            fake_run(root / name, cfg, test)
            entries.append(
                {
                    "name": name,
                    "dataset": "beauty",
                    "method": f"sasrec-{loss}-all",
                    "model": "sasrec",
                    "loss": loss,
                    "positions": "all",
                    "seed": seed,
                }
            )
    manifest = {"study": "xu", "baseline": "bce", "reference": reference, "runs": entries}
    (root / "sweep.json").write_text(json.dumps(manifest), encoding="utf-8")
    return root


def test_report_puts_the_papers_numbers_beside_ours_and_flags_gaps(tmp_path):
    root = make_paper_runs(tmp_path / "runs")
    out = write_report(root, plots=False)
    md = out["report.md"].read_text()
    assert "Beside the published numbers (Xu et al. 2024" in md
    assert "0.0609 / 0.0597 (+2.0%) |" in md  # within 5%: not flagged
    assert "0.0318 / 0.0353 (-10.0%) ⚠" in md
    # HR@5 and NDCG@5 (not in DESIGN's table) are the means of the authors' logged runs
    assert "4 of 8 numbers differ from the paper by more than 5%" in md
    summary = {r["method"]: r for r in csv.DictReader(out["summary.csv"].open())}
    assert float(summary["sasrec-bce-all"]["ndcg@10_paper"]) == 0.0353
    assert float(summary["sasrec-bce-all"]["ndcg@10_paper_gap_pct"]) == pytest.approx(-10.0)
    assert float(summary["sasrec-ce-all"]["hr@5_paper"]) == pytest.approx(0.07134)
    assert summary["sasrec-ce-all"]["hr@20_paper"] == ""  # neither the table nor the logs
    # ours beside the authors' own five seeds (Beauty CE NDCG@10: 0.0591..0.0601)
    assert "Beside the authors' own 5 runs per cell" in md
    # the fake runs' tiny settings are not the authors': the report says so, cell by cell
    assert "beauty/sasrec-ce-all trains otherwise than the authors' logged runs: train.epochs" in md
    assert "| `sasrec-ce-all` | 0.0609 vs 0.0597 ± 0.0004 [0.0591–0.0601]: 0.8 above" in md
    assert "$^\\ddagger$" in out["report.tex"].read_text()
    # the reference can be switched off or replaced from the command line
    md = write_report(root, reference="none", plots=False)["report.md"].read_text()
    assert "published numbers" not in md
    md = write_report(root, reference="li2023", plots=False)["report.md"].read_text()
    assert "0.0318 / 0.0305" in md  # Li et al.: SASRec bce on Beauty, NDCG@10 0.0305
    with pytest.raises(ConfigError, match="did you mean 'li2023'"):
        write_report(root, reference="li2022", plots=False)


def test_gap_explanations_go_into_the_report_and_missing_ones_are_counted(tmp_path):
    root = make_paper_runs(tmp_path / "runs")
    md = write_report(root, plots=False)["report.md"].read_text()
    assert "4 numbers differ from the paper by more than 5% and none is explained here" in md
    assert "## Gaps and findings" not in md
    why = tmp_path / "gaps.md"
    why.write_text("BCE is 10% low: one negative per position, *by design*.\n", encoding="utf-8")
    md = write_report(root, plots=False, explain=why)["report.md"].read_text()
    assert "## Gaps and findings\n\nBCE is 10% low: one negative per position, *by design*." in md
    assert "none is explained here" not in md
    with pytest.raises(SeqrecError, match="cannot read the explanation file"):
        write_report(root, plots=False, explain=tmp_path / "missing.md")


def test_li2023_numbers_are_table_2():
    """Transcription check: the paper's 'Improve.' column (CCE against the better of BCE and
    CE, NDCG@10) follows from the stored numbers."""
    rows = paper_rows("li2023")
    improve = {
        ("sports", "gru4rec"): 107.78,
        ("sports", "sasrec"): 72.83,
        ("toys", "gru4rec"): 205.17,
        ("toys", "sasrec"): 77.23,
        ("yelp", "gru4rec"): 68.81,
        ("yelp", "sasrec"): 41.43,
        ("beauty", "gru4rec"): 120.54,
        ("beauty", "sasrec"): 60.00,
        ("lastfm", "gru4rec"): 12.93,
        ("lastfm", "sasrec"): 58.74,
    }
    for (ds, model), pct in improve.items():
        get = {
            (lo, p): rows[(ds, model, lo, p)].metrics["ndcg@10"]
            for lo, p in (("bce", "all"), ("ce", "last"), ("ce", "all"))
        }
        best = max(get[("bce", "all")], get[("ce", "last")])
        assert 100 * (get[("ce", "all")] / best - 1) == pytest.approx(pct, abs=0.01), (ds, model)
    assert rows[("lastfm", "gru4rec", "ce", "last")].metrics["hr@20"] == 0.0495
    assert paper_rows("xu2024")[("ml-1m", "sasrec", "sce", "all")].metrics["ndcg@10"] == 0.1862


def test_report_command_line(tmp_path, monkeypatch, capsys):
    root = make_paper_runs(tmp_path / "runs")
    code, out, err = run_cli(monkeypatch, capsys, "report", str(root), "--no-plots", "--json")
    assert code == 0, err
    assert Path(json.loads(out)["report.md"]).is_file()
    code, _, err = run_cli(monkeypatch, capsys, "report", str(tmp_path / "nope"))
    assert code == 2 and "does not exist" in err
    more = make_paper_runs(tmp_path / "more")
    out_dir = tmp_path / "pooled"
    code, out, err = run_cli(
        monkeypatch,
        capsys,
        "report",
        str(root),
        str(more),
        "--out-dir",
        str(out_dir),
        "--no-plots",
    )
    assert code == 0, err
    assert f"runs:   {out_dir / 'runs'}/" in out and (out_dir / "runs" / "sweep.json").is_file()


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_report_warns_when_git_would_leave_its_records_out(tmp_path, monkeypatch, capsys):
    """A repository that ignores every runs/ folder would commit the report without the records
    it is redrawn from (this project's own .gitignore did, stops 17-18): the command says so."""
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / ".gitignore").write_text("runs/\n")
    root = make_paper_runs(tmp_path / "made")
    args = ["report", str(root), "--out-dir", str(repo / "report"), "--no-plots"]
    code, _, err = run_cli(monkeypatch, capsys, *args)
    assert code == 0 and "warning: git ignores" in err and ".gitignore:1:runs/" in err
    (repo / ".gitignore").write_text("/runs/\n")  # only the top folder's training runs
    code, _, err = run_cli(monkeypatch, capsys, *args)
    assert code == 0 and "warning" not in err
    assert git_ignore_rule(tmp_path / "made") is None  # not in a work tree
    # a report inside the ignored top runs/ folder (the README's quickstart) is not for
    # committing: its records being ignored with it is no news
    inside = ["report", str(root), "--out-dir", str(repo / "runs" / "study" / "report")]
    code, _, err = run_cli(monkeypatch, capsys, *inside, "--no-plots")
    assert code == 0 and "warning" not in err
    assert (
        git_ignore_rule(repo / "runs" / "study" / "report" / "report.md") == ".gitignore:1:/runs/"
    )


def test_report_doctests_run() -> None:
    import doctest

    import seqrec.experiments.report as report_module

    result = doctest.testmod(report_module)
    assert result.attempted >= 2 and result.failed == 0
