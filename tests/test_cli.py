"""The command line as a user meets it: one-line errors, --json output, nothing half-written."""

from __future__ import annotations

import gzip
import json
import sys

import pytest

from cli_runner import run_cli
from seqrec.cli import main

TINY = [
    "--set",
    "data.synthetic_users=300",
    "--set",
    "data.synthetic_items=80",
    "--dim",
    "16",
    "--layers",
    "1",
    "--maxlen",
    "10",
    "--epochs",
    "2",
    "--batch-size",
    "64",
]


def test_help_teaches(monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, "train", "--help")
    assert code == 0 and "--loss" in out and "--positions" in out and "Examples" in out


def _commands() -> list[tuple[str, ...]]:
    """Every command path of the CLI, e.g. ("train",), ("data", "list")."""
    import typer

    from seqrec.cli import app

    out: list[tuple[str, ...]] = []

    def walk(cmd: object, path: tuple[str, ...]) -> None:  # typer's own click Command
        if hasattr(cmd, "commands"):  # a group
            for name, sub in cmd.commands.items():
                walk(sub, (*path, name))
        else:
            out.append(path)

    walk(typer.main.get_command(app), ())
    return out


def _command(path: tuple[str, ...]):
    """The click command at ``path`` (e.g. ("data", "list")) of the CLI."""
    import typer

    from seqrec.cli import app

    cmd = typer.main.get_command(app)
    for name in path:
        cmd = cmd.commands[name]
    return cmd


@pytest.mark.parametrize("path", _commands(), ids=" ".join)
def test_help_shows_bracketed_text(monkeypatch, capsys, path):
    """Help renders as rich markup, where an unescaped [word] is a style tag and vanishes
    (`--config` once read "TOML file with      sections"); every [...] in the source shows."""
    import re

    cmd = _command(path)
    monkeypatch.setenv("COLUMNS", "250")
    code, out, _ = run_cli(monkeypatch, capsys, *path, "--help")
    assert code == 0
    shown = " ".join(out.replace("│", " ").split())
    texts = [cmd.help or ""] + [getattr(p, "help", None) or "" for p in cmd.params]
    for text in texts:
        for token in re.findall(r"\\?\[[^\]\s]+\]", text):  # escaped (\[) or not
            token = token.removeprefix("\\")
            assert token in shown, f"seqrec {' '.join(path)} --help lost {token!r}"


def test_reflow_help_joins_prose_and_keeps_examples():
    from seqrec.cli import reflow_help

    doc = """First line
    goes on.

    Prose that a terminal
    should wrap itself.

    Examples:
      seqrec a --x
      seqrec b
    """
    assert reflow_help(doc) == (
        "First line goes on.\n\nProse that a terminal should wrap itself.\n\n"
        "Examples:\n  seqrec a --x\n  seqrec b"
    )


@pytest.mark.parametrize("path", _commands(), ids=" ".join)
def test_help_prose_is_reflowed_and_examples_are_lines(path):
    """typer keeps a docstring's single line breaks, so hard-wrapped prose came out ragged at
    80 columns; every command's help has one line per prose paragraph, and any "Example" is
    followed by indented command lines."""
    cmd = _command(path)
    for paragraph in (cmd.help or "").split("\n\n"):
        lines = paragraph.split("\n")
        if not any(line.startswith(" ") for line in lines):
            assert len(lines) == 1, f"seqrec {' '.join(path)}: a hard-wrapped paragraph {lines}"
        if paragraph.startswith("Example"):
            assert all(line.startswith("  ") for line in lines[1:])
            assert len(lines) > 1, f"seqrec {' '.join(path)}: examples on the heading's line"


def test_train_json_and_evaluate_agree(monkeypatch, capsys, tmp_path):
    code, out, _ = run_cli(
        monkeypatch, capsys, "train", *TINY, "--out-dir", str(tmp_path), "--name", "r", "--json"
    )
    assert code == 0, out
    res = json.loads(out)
    assert set(res) >= {"valid", "test", "best_epoch", "train_seconds", "run_dir"}
    code, out, _ = run_cli(
        monkeypatch, capsys, "evaluate", str(tmp_path / "r"), "--json", "--batch-size", "7"
    )
    assert code == 0
    again = json.loads(out)
    assert again["ndcg@10"] == pytest.approx(res["test"]["ndcg@10"], abs=1e-12)
    assert again["hr@10"] == pytest.approx(res["test"]["hr@10"], abs=1e-12)
    assert again["se"]["ndcg@10"] == pytest.approx(res["test_se"]["ndcg@10"], abs=1e-12)
    assert again["history"] == "mask" and 0.0 <= again["repeat_target_share"] < 1.0
    code, out, _ = run_cli(monkeypatch, capsys, "evaluate", str(tmp_path / "r"))
    assert code == 0 and "standard error over users" in out
    by_protocol = {}
    for flags in (
        ["--keep-history"],
        ["--history-protocol", "keep"],
        ["--history-protocol", "zero"],
    ):
        code, out, _ = run_cli(
            monkeypatch, capsys, "evaluate", str(tmp_path / "r"), "--json", *flags
        )
        assert code == 0, out
        by_protocol[" ".join(flags)] = json.loads(out)
    keep = by_protocol["--keep-history"]
    assert keep["history"] == "keep" and by_protocol["--history-protocol zero"]["history"] == "zero"
    assert by_protocol["--history-protocol keep"]["ndcg@10"] == keep["ndcg@10"]
    code, _out, err = run_cli(
        monkeypatch, capsys, "evaluate", str(tmp_path / "r"), "--history-protocol", "masked"
    )
    assert code != 0 and "did you mean 'mask'" in err
    code, _out, err = run_cli(
        monkeypatch,
        capsys,
        "evaluate",
        str(tmp_path / "r"),
        "--keep-history",
        "--history-protocol",
        "zero",
    )
    assert code != 0 and "disagree" in err


def test_config_file_and_flags_win(monkeypatch, capsys, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        "[train]\nepochs = 1\nseed = 5\n[model]\ndim = 8\nlayers = 1\nmaxlen = 10\n"
        "[data]\nsynthetic_users = 200\nsynthetic_items = 50\n"
    )
    code, _out, err = run_cli(
        monkeypatch,
        capsys,
        "train",
        "--config",
        str(cfg),
        "--dim",
        "16",
        "--out-dir",
        str(tmp_path),
        "--name",
        "r",
        "--quiet",
    )
    assert code == 0, err
    text = (tmp_path / "r" / "config.toml").read_text()
    assert "dim = 16" in text and "seed = 5" in text and "epochs = 1" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--lrr", "0.1"], "--lr"),
        (["train", "--loss", "cee"], "did you mean 'ce'"),
        (["train", "--maxlen", "1"], "maxlen must be at least 2"),
        (["train", "--set", "train.epoch=3"], "did you mean 'epochs'"),
        (["train", "--set", "nonsense"], "section.key=value"),
        (["evaluate", "/nonexistent/run"], "not a run folder"),
    ],
)
def test_bad_options_say_how_to_fix(monkeypatch, capsys, tmp_path, args, message):
    code, _out, err = run_cli(
        monkeypatch, capsys, *args, *(["--out-dir", str(tmp_path)] if args[0] == "train" else [])
    )
    assert code != 0
    assert message in err
    assert "Traceback" not in err
    assert not any(tmp_path.iterdir()), "a failed command must not leave a run folder"


def _bad_files(tmp_path):
    bad_token = tmp_path / "bad_token.txt"
    bad_token.write_text("1 2 3 4\n2 5 x 6\n")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    truncated = tmp_path / "trunc.txt.gz"
    payload = "".join(
        f"{u} {u + 1} {u * 7 % 13 + 1} {u * 3 % 11 + 1}\n" for u in range(1, 3000)
    ).encode()
    truncated.write_bytes(gzip.compress(payload)[:2000])
    missing_col = tmp_path / "log.csv"
    missing_col.write_text("user,item\n1,2\n1,3\n")
    return [
        ([str(bad_token)], "bad_token.txt:2"),
        ([str(empty)], "empty"),
        ([str(truncated)], "trunc.txt.gz"),
        ([str(missing_col), "--format", "log", "--time-col", "ts"], "ts"),
    ]


def test_bad_data_files_give_one_line_and_no_run_folder(monkeypatch, capsys, tmp_path):
    out_dir = tmp_path / "runs"
    for args, message in _bad_files(tmp_path):
        code, _, err = run_cli(
            monkeypatch, capsys, "train", "--dataset", *args, "--out-dir", str(out_dir)
        )
        assert code == 2, (args, err)
        assert message in err, (args, err)
        assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
        assert not out_dir.exists()


def test_empty_after_filtering(monkeypatch, capsys, tmp_path):
    f = tmp_path / "seqs.txt"
    f.write_text("1 1 2 3\n2 4 5\n")
    code, _, err = run_cli(
        monkeypatch,
        capsys,
        "train",
        "--dataset",
        str(f),
        "--set",
        "data.min_user_interactions=10",
        "--out-dir",
        str(tmp_path / "runs"),
    )
    assert (
        code == 2 and "min_user_interactions" in err.replace("min-user", "min_user")
    ) or "10" in err
    assert not (tmp_path / "runs").exists()


def test_data_stats_real(monkeypatch, capsys, real_data_dir):
    code, out, err = run_cli(
        monkeypatch, capsys, "data", "stats", "beauty", "--data-dir", real_data_dir, "--json"
    )
    assert code == 0, err
    stats = json.loads(out)
    assert (stats["users"], stats["items"], stats["interactions"]) == (22363, 12101, 198502)
    assert stats["avg_length"] == pytest.approx(198502 / 22363)


def test_missing_named_dataset_says_where(monkeypatch, capsys, tmp_path):
    code, _, err = run_cli(
        monkeypatch, capsys, "data", "stats", "sports", "--data-dir", str(tmp_path)
    )
    assert code == 2 and "Sports_and_Outdoors.txt" in err and str(tmp_path) in err


def test_every_loss_option_reaches_the_config(monkeypatch, capsys, tmp_path):
    """Each loss's options have a flag; they land in the validated config given to fit."""
    import seqrec.train

    seen = []

    class _StopError(Exception):
        pass

    def fake_fit(cfg, **_kw):
        seen.append(cfg)
        raise _StopError

    monkeypatch.setattr(seqrec.train, "fit", fake_fit)
    flags = [
        ["--loss", "sce", "--alpha", "50", "--negatives", "64", "--pool", "shared"],
        ["--loss", "nce", "--nce-c", "3"],
        ["--loss", "gbce", "--gbce-t", "0.5"],
        [
            "--loss",
            "sampled-softmax",
            "--logq",
            "--pool",
            "popularity",
            "--popularity-power",
            "0.75",
        ],
        ["--loss", "bpr-max", "--bpr-max-reg", "1.5", "--pool", "in-batch"],
        ["--loss", "ce", "--ce-impl", "chunked", "--ce-chunk-size", "512", "--diagnostics"],
        [
            *("--loss", "rece", "--rece-buckets", "64", "--rece-chunks", "32"),
            *("--rece-extra-chunks", "2", "--rece-rounds", "4", "--positions", "last"),
            *("--rece-alpha", "10"),
        ],
    ]
    for args in flags:
        with pytest.raises(_StopError):
            monkeypatch.setattr(sys, "argv", ["seqrec", "train", *args])
            main()
    lo = [c.loss for c in seen]
    assert (lo[0].name, lo[0].alpha, lo[0].negatives, lo[0].pool) == ("sce", 50.0, 64, "shared")
    assert lo[1].nce_c == 3.0 and lo[2].gbce_t == 0.5
    assert lo[3].logq is True and lo[3].popularity_power == 0.75
    assert lo[4].bpr_max_reg == 1.5 and lo[4].pool == "in-batch"
    assert (lo[5].ce_impl, lo[5].ce_chunk_size, seen[5].train.diagnostics) == ("chunked", 512, True)
    assert (lo[6].rece_buckets, lo[6].rece_chunks, lo[6].rece_extra_chunks) == (64, 32, 2)
    assert (lo[6].rece_rounds, lo[6].positions, seen[0].train.diagnostics) == (4, "last", False)
    assert lo[6].rece_alpha == 10.0 and lo[0].rece_alpha == 1.0
    code, _out, err = run_cli(monkeypatch, capsys, "train", "--loss", "rece", "--rece-rounds", "0")
    assert code == 2 and "loss.rece_rounds must be >= 1" in err
