"""The `seqrec` command line: train, evaluate, sweep, report, recommend, serve, export, data.

Every command that prints results takes ``--json``. Errors are one line on stderr, exit code 2.
"""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from seqrec import cli_deploy
from seqrec.config import RunConfig, load_toml, merge, validate
from seqrec.errors import SeqrecError
from seqrec.text import counted

app = typer.Typer(
    name="seqrec",
    help=(
        "Train, evaluate and compare sequential recommenders under one honest full-ranking "
        "evaluation. The training loss is one flag: --loss ce|bce|bpr|... with --positions all|last.\n\n"
        "Quick start: `seqrec train` trains SASRec with full-softmax CE on a built-in synthetic "
        "dataset in about a minute and compares it with a popularity baseline."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(
    help="Look at datasets: named ones (see `seqrec data list`) or your own files.",
    no_args_is_help=True,
)
app.add_typer(data_app, name="data")
app.command("recommend")(cli_deploy.recommend)
app.command("serve")(cli_deploy.serve)
app.command("export")(cli_deploy.export)


def _print_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2))


def _fmt_metrics(metrics: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:.4f}" for k, v in metrics.items())


def _flag_overrides(**flags: Any) -> dict[str, Any]:
    """Map CLI flags (None = not given) onto the nested config layout."""
    where = {
        "dataset": "data",
        "data_dir": "data",
        "format": "data",
        "sep": "data",
        "user_col": "data",
        "item_col": "data",
        "time_col": "data",
        "split": "data",
        "model": ("model", "name"),
        "dim": "model",
        "layers": "model",
        "heads": "model",
        "dropout": "model",
        "maxlen": "model",
        "loss": ("loss", "name"),
        "positions": "loss",
        "negatives": "loss",
        "pool": "loss",
        "alpha": "loss",
        "nce_c": "loss",
        "gbce_t": "loss",
        "logq": "loss",
        "bpr_max_reg": "loss",
        "popularity_power": "loss",
        "ce_impl": "loss",
        "ce_chunk_size": "loss",
        "rece_buckets": "loss",
        "rece_chunks": "loss",
        "rece_extra_chunks": "loss",
        "rece_rounds": "loss",
        "rece_alpha": "loss",
        "diagnostics": "train",
        "epochs": "train",
        "batch_size": "train",
        "lr": "train",
        "weight_decay": "train",
        "patience": "train",
        "eval_every": "train",
        "seed": "train",
        "threads": "train",
        "out_dir": None,
        "name": None,
    }
    out: dict[str, Any] = {}
    for flag, value in flags.items():
        if value is None:
            continue
        target = where[flag]
        if target is None:
            out[flag] = value
            continue
        section, key = target if isinstance(target, tuple) else (target, flag)
        out.setdefault(section, {})[key] = value
    return out


def _parse_sets(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair or "." not in pair.split("=", 1)[0]:
            raise SeqrecError(
                f"--set expects section.key=value (e.g. --set loss.negatives=100), got '{pair}'"
            )
        key, value = pair.split("=", 1)
        section, name = key.split(".", 1)
        out.setdefault(section, {})[name] = value
    return out


HistoryProtocolOption = Annotated[
    str | None,
    typer.Option(
        "--history-protocol",
        help="The user's own history in the ranking: mask (removed, never the target), keep, "
        "or zero (scored 0, the target too: S3-Rec's code). Default: the config's "
        "eval.history (mask unless set). Matters only on data with repeat consumption.",
        show_default=False,
    ),
]
KeepHistoryOption = Annotated[
    bool, typer.Option("--keep-history", help="Short for --history-protocol keep.")
]


def _history_option(history: str | None, keep_history: bool) -> str | None:
    """The --history-protocol asked for (``--keep-history`` is short for ``keep``), or None
    when neither was given."""
    from seqrec.config import HISTORY_PROTOCOLS, suggest

    if history is not None and history not in HISTORY_PROTOCOLS:
        raise SeqrecError(
            f"--history-protocol must be one of {', '.join(HISTORY_PROTOCOLS)}; got '{history}'"
            f"{suggest(history, HISTORY_PROTOCOLS)}"
        )
    if keep_history:
        if history not in (None, "keep"):
            raise SeqrecError(f"--keep-history and --history-protocol {history} disagree; give one")
        return "keep"
    return history


def _deep_update(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            base[k].update(v)
        else:
            base[k] = v
    return base


@app.command()
def train(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help=(  # \[ escapes rich markup, which would take [data] for a style tag
                "TOML file with \\[data] \\[model] \\[loss] \\[train] \\[eval] sections; "
                "flags override it."
            ),
        ),
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option(
            help="Named dataset (beauty, ml-1m, ... see `seqrec data list`), a file path, or 'synthetic'."
        ),
    ] = None,
    data_dir: Annotated[
        str | None, typer.Option(help="Folder of named datasets (default: $SEQREC_DATA_DIR).")
    ] = None,
    format: Annotated[
        str | None, typer.Option(help="File format for a path: auto, user-lines, pairs, log.")
    ] = None,
    sep: Annotated[str | None, typer.Option(help="Column separator of a log file.")] = None,
    user_col: Annotated[
        str | None, typer.Option(help="User column of a log (name or 0-based position).")
    ] = None,
    item_col: Annotated[
        str | None, typer.Option(help="Item column of a log (name or 0-based position).")
    ] = None,
    time_col: Annotated[
        str | None, typer.Option(help="Timestamp column of a log (name or 0-based position).")
    ] = None,
    split: Annotated[str | None, typer.Option(help="leave-one-out or temporal.")] = None,
    model: Annotated[str | None, typer.Option(help="sasrec or gru4rec.")] = None,
    dim: Annotated[int | None, typer.Option(help="Hidden size d.")] = None,
    layers: Annotated[int | None, typer.Option(help="Transformer blocks / GRU layers.")] = None,
    heads: Annotated[int | None, typer.Option(help="Attention heads (SASRec).")] = None,
    dropout: Annotated[float | None, typer.Option(help="Dropout rate.")] = None,
    maxlen: Annotated[int | None, typer.Option(help="Longest history the model sees.")] = None,
    loss: Annotated[
        str | None,
        typer.Option(
            help="Training loss: ce (exact full softmax), ce-naive, bce, bpr, top1, bpr-max, "
            "top1-max, gbce, nce, neg, sampled-softmax, sce, rece (README: Losses)."
        ),
    ] = None,
    positions: Annotated[
        str | None, typer.Option(help="Which positions train: all (CE here = CCE) or last.")
    ] = None,
    negatives: Annotated[
        int | None, typer.Option(help="Sampled negatives per position (sampled losses).")
    ] = None,
    pool: Annotated[
        str | None,
        typer.Option(
            help="Negative pool: all, not-target, not-history, in-batch, popularity, shared."
        ),
    ] = None,
    alpha: Annotated[
        float | None, typer.Option(help="sce: scale α of the sampled normaliser (100).")
    ] = None,
    nce_c: Annotated[
        float | None, typer.Option(help="nce: log-normaliser c; logits shift log(C/K) - c (10).")
    ] = None,
    gbce_t: Annotated[
        float | None, typer.Option(help="gbce: calibration t in [0, 1] (0.75).")
    ] = None,
    logq: Annotated[
        bool | None,
        typer.Option(
            "--logq/--no-logq",
            help="sampled-softmax: subtract log(K q(item)) from the negatives (logQ correction).",
        ),
    ] = None,
    bpr_max_reg: Annotated[
        float | None, typer.Option(help="bpr-max: score regularisation λ (0).")
    ] = None,
    popularity_power: Annotated[
        float | None, typer.Option(help="popularity pool: q(item) ∝ count^power (1).")
    ] = None,
    ce_impl: Annotated[
        str | None,
        typer.Option(
            help="ce: auto (= fused), fused (own, gradients in the forward pass, fastest), "
            "torch (F.linear_cross_entropy) or chunked (item chunks, least memory)."
        ),
    ] = None,
    ce_chunk_size: Annotated[
        int | None, typer.Option(help="ce with --ce-impl chunked: items per chunk (2048).")
    ] = None,
    rece_buckets: Annotated[
        int | None,
        typer.Option(help="rece: LSH buckets (default: the paper's ⌊√(4(2e+1)min(C,N))⌋)."),
    ] = None,
    rece_chunks: Annotated[
        int | None, typer.Option(help="rece: chunks of the sorted lists (default: buckets).")
    ] = None,
    rece_extra_chunks: Annotated[
        int | None, typer.Option(help="rece: neighbouring item chunks on each side e (1).")
    ] = None,
    rece_rounds: Annotated[
        int | None, typer.Option(help="rece: hashing rounds with fresh directions (1).")
    ] = None,
    rece_alpha: Annotated[
        float | None,
        typer.Option(
            help="rece: weight alpha on the candidates' exp, as SCE's (1 = the paper; not in "
            "Gusak et al.: a variant for small candidate sets)."
        ),
    ] = None,
    diagnostics: Annotated[
        bool,
        typer.Option(
            "--diagnostics",
            help="Log per epoch the exact validation CE and the Xu et al. -log NDCG <= CE bound.",
        ),
    ] = False,
    epochs: Annotated[int | None, typer.Option(help="Maximum epochs.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Sequences per batch.")] = None,
    lr: Annotated[float | None, typer.Option(help="Adam learning rate.")] = None,
    weight_decay: Annotated[float | None, typer.Option(help="Adam weight decay (L2).")] = None,
    patience: Annotated[
        int | None, typer.Option(help="Evaluations without a better valid NDCG@10 before stopping.")
    ] = None,
    eval_every: Annotated[
        int | None, typer.Option(help="Evaluate on valid every N epochs.")
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(help="Random seed (same seed, data and config give the same numbers on CPU)."),
    ] = None,
    threads: Annotated[int | None, typer.Option(help="Torch threads (default: all cores).")] = None,
    history: HistoryProtocolOption = None,
    keep_history: KeepHistoryOption = False,
    out_dir: Annotated[
        str | None, typer.Option(help="Where run folders go (default: runs).")
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(help="Run folder name (default: dataset-model-loss-positions-time)."),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Any config key: --set section.key=value (repeatable)."),
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(
            help="Continue a killed run from its last completed epoch (options come from its "
            "config.toml), or train a run further: with a larger --epochs/--patience a finished "
            "run continues from its last epoch and ends as a run started with them would."
        ),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print results.json to stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
) -> None:
    """Train a model; the run folder gets config, per-epoch metrics, best checkpoint and results.

    The first example trains SASRec with full-softmax CE on built-in synthetic data in about a
    minute; the last two continue a run after a crash or a kill, and train a finished run
    further (to epoch 300, stopping only after 60 evaluations without a better NDCG@10).

    Examples:
      seqrec train
      seqrec train --dataset beauty --loss bce --negatives 1
      seqrec train --loss sce --negatives 256 --alpha 100 --diagnostics
      seqrec train --loss rece --rece-extra-chunks 2 --rece-rounds 2
      seqrec train --config benchmarks/configs/beauty-sasrec-ce.toml --seed 2
      seqrec train --set model.block=bert --set model.init=normal
      seqrec train --resume runs/beauty-sasrec-ce-all-20261122-101500
      seqrec train --resume runs/beauty-sasrec-ce-all-20261122-101500 --epochs 300 --patience 60
    """
    from seqrec.train import fit
    from seqrec.train import resume as resume_run

    overrides: dict[str, Any] = load_toml(config) if config is not None else {}
    flags = _flag_overrides(
        dataset=dataset,
        data_dir=data_dir,
        format=format,
        sep=sep,
        user_col=user_col,
        item_col=item_col,
        time_col=time_col,
        split=split,
        model=model,
        dim=dim,
        layers=layers,
        heads=heads,
        dropout=dropout,
        maxlen=maxlen,
        loss=loss,
        positions=positions,
        negatives=negatives,
        pool=pool,
        alpha=alpha,
        nce_c=nce_c,
        gbce_t=gbce_t,
        logq=logq,
        bpr_max_reg=bpr_max_reg,
        popularity_power=popularity_power,
        ce_impl=ce_impl,
        ce_chunk_size=ce_chunk_size,
        rece_buckets=rece_buckets,
        rece_chunks=rece_chunks,
        rece_extra_chunks=rece_extra_chunks,
        rece_rounds=rece_rounds,
        rece_alpha=rece_alpha,
        diagnostics=diagnostics or None,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        patience=patience,
        eval_every=eval_every,
        seed=seed,
        threads=threads,
        out_dir=out_dir,
        name=name,
    )
    protocol = _history_option(history, keep_history)
    if protocol is not None:
        flags.setdefault("eval", {})["history"] = protocol
    _deep_update(overrides, flags)
    _deep_update(overrides, _parse_sets(set_ or []))
    if resume is not None:
        longer = overrides.get("train", {})
        if set(overrides) - {"train"} or set(longer) - {"epochs", "patience"}:
            raise SeqrecError(
                "--resume continues a run with its own config.toml; the only options it takes "
                "are a larger --epochs and --patience, to train the run further"
            )
        from seqrec import runs

        if (Path(resume) / runs.CONFIG).exists():
            runs.remove_stale_temps(resume)  # left by a killed write; never read
        result = resume_run(
            resume,
            epochs=longer.get("epochs"),
            patience=longer.get("patience"),
            quiet=quiet or json_out,
        )
    else:
        cfg = validate(merge(RunConfig(), overrides))
        result = fit(cfg, quiet=quiet or json_out)
    if json_out:
        _print_json({"run_dir": str(result.run_dir), **result.results})
    else:
        res = result.results
        typer.echo(f"test   {_fmt_metrics(res['test'])}")
        typer.echo(
            f"popularity baseline test ndcg@10 {res['baselines']['popularity']['test']['ndcg@10']:.4f}"
        )


@app.command()
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="A run folder made by `seqrec train`.")],
    split: Annotated[str, typer.Option(help="valid or test.")] = "test",
    history: HistoryProtocolOption = None,
    keep_history: KeepHistoryOption = False,
    data_dir: Annotated[
        str | None,
        typer.Option(help="Folder of named datasets (default: the run's, then $SEQREC_DATA_DIR)."),
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Users per scoring block (results do not depend on it).")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print metrics as JSON.")] = False,
) -> None:
    """Evaluate a run's best checkpoint by full ranking over the whole catalogue."""
    from dataclasses import replace

    from seqrec import runs
    from seqrec.data.datasets import load_dataset
    from seqrec.data.split import make_split
    from seqrec.evaluate import evaluate as run_eval
    from seqrec.evaluate import standard_errors

    if split not in ("valid", "test"):
        raise SeqrecError(f"--split must be valid or test, got '{split}'")
    cfg = runs.load_run_config(run_dir)
    protocol = _history_option(history, keep_history) or cfg.eval.history
    if data_dir is not None:
        cfg = replace(cfg, data=replace(cfg.data, data_dir=data_dir))
    model, _meta = runs.load_checkpoint(Path(run_dir) / runs.BEST)
    prepared = load_dataset(cfg.data)
    if prepared.sequences.n_items != model.n_items:
        raise SeqrecError(
            f"the run's model has {model.n_items} items but the dataset now has {prepared.sequences.n_items}; "
            "was the data file changed since training?"
        )
    data_split = make_split(prepared.sequences, cfg.data)
    eval_set = data_split.test if split == "test" else data_split.valid
    result = run_eval(
        model,
        eval_set,
        maxlen=cfg.model.maxlen,
        ks=cfg.eval.ks,
        history=protocol,
        batch_size=batch_size or cfg.eval.batch_size,
        per_example=True,
    )
    se = standard_errors(result)
    repeats = float(eval_set.repeat_targets().mean())
    if json_out:
        _print_json(
            {
                "split": split,
                "examples": result.n_examples,
                **result.metrics,
                "se": se,
                "history": protocol,
                "repeat_target_share": repeats,
            }
        )
    else:
        typer.echo(f"{split} ({result.n_examples} examples)  {_fmt_metrics(result.metrics)}")
        typer.echo(f"standard error over users  {_fmt_metrics(se)}")
        if repeats > 0:
            how = {
                "mask": "masked (never the target), which favours those repeats; "
                "--history-protocol keep ranks with the history kept",
                "keep": "kept in the ranking",
                "zero": "scored 0, those targets too",
            }[protocol]
            typer.echo(
                f"note: {repeats:.1%} of the targets are already in their user's history; the "
                f"history was {how}. Compare with published numbers only under the same protocol."
            )


@app.command()
def sweep(
    study: Annotated[
        Path, typer.Argument(help="Study file: a grid of runs in TOML (see benchmarks/studies/).")
    ],
    out_dir: Annotated[
        Path | None, typer.Option(help="Put the run folders here instead of the study's out_dir.")
    ] = None,
    data_dir: Annotated[
        str | None,
        typer.Option(help="Folder of named datasets for every run (default: $SEQREC_DATA_DIR)."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List the runs and whether each is done; run nothing.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    only: Annotated[
        list[str] | None,
        typer.Option(
            help="Run only the runs whose KEY is one of the VALUEs: KEY=VALUE[,VALUE...], "
            "repeatable (all must hold). KEY: dataset, method, model, loss, positions, seed, "
            "name, or a grid axis such as loss.name.",
        ),
    ] = None,
    jobs: Annotated[
        int,
        typer.Option(
            "--jobs",
            "-j",
            min=1,
            help="Runs trained at once, each in its own process with cores/JOBS torch threads "
            "(unless the study sets train.threads). Small models often use several cores "
            "poorly, so parallel runs can finish a study sooner: measure on your machine "
            "(benchmarks/sweep_jobs.py).",
        ),
    ] = 1,
) -> None:
    """Run a study: datasets x models x losses x hyperparameters x seeds, one folder per run.

    Resumable: finished runs (those with results.json) are never repeated, and a run that was
    killed mid-way continues from its last completed epoch. Kill it any time and rerun the same
    command to finish the rest. Raise train.epochs or train.patience in the study and its
    finished runs are trained further from their saved state (--dry-run says "extend"), ending
    exactly as runs started with the new settings; any other change to a finished run's
    settings stops the sweep. Sweeps of the same study can share one out_dir: each run is
    locked while it trains, and the others skip it. Then: `seqrec report OUT_DIR`.

    Examples:
      seqrec sweep benchmarks/studies/quickstart.toml
      seqrec sweep benchmarks/studies/li2023.toml --jobs 2
      seqrec sweep benchmarks/studies/xu2024.toml --only dataset=beauty --only seed=1 --dry-run
    """
    from seqrec.experiments.study import load_study
    from seqrec.experiments.sweep import run_state, run_sweep, select_runs

    if dry_run:
        plan = load_study(study)
        root = out_dir if out_dir is not None else plan.out_dir
        planned = select_runs(plan.runs(), only or [])
        states = [run_state(r, root / r.name) for r in planned]
        for r, (state, why) in zip(planned, states, strict=True):
            typer.echo(f"{state:<6} {r.name}" + (f": {why}" if why else ""))
        done = sum(state == "done" for state, _ in states)
        stale = sum(state == "stale" for state, _ in states)
        longer = sum(state == "extend" for state, _ in states)
        typer.echo(
            f"{counted(len(planned), 'run')} in {root}: {done} done, {len(planned) - done} to run"
            + (f" ({longer} of them finished runs to train further)" if longer else "")
        )
        if stale:
            typer.echo(
                f"{stale} finished run(s) were made with another config: the sweep will stop on "
                "them; remove those folders (or use another --out-dir) to redo them"
            )
        return
    dirs = run_sweep(
        study, quiet=quiet, out_dir=out_dir, data_dir=data_dir, only=only or [], jobs=jobs
    )
    root = dirs[0].parent if dirs else out_dir
    typer.echo(f"{counted(len(dirs), 'finished run')} in {root}; next: seqrec report {root}")


@app.command()
def report(
    runs_dir: Annotated[
        list[Path],
        typer.Argument(
            help="A sweep's out_dir (or any folder of run folders), or several to pool: the "
            "first given wins where two hold the same dataset, method and seed."
        ),
    ],
    out_dir: Annotated[
        Path | None, typer.Option(help="Where to write (default: the first RUNS_DIR/report).")
    ] = None,
    baseline: Annotated[
        str | None,
        typer.Option(help="Loss name or method label to compare against (default: the study's)."),
    ] = None,
    reference: Annotated[
        str | None,
        typer.Option(
            help="Published numbers to put beside ours: li2023, xu2024 or none "
            "(default: the study's)."
        ),
    ] = None,
    plots: Annotated[
        bool, typer.Option("--plots/--no-plots", help="Draw the figures (PNG and SVG).")
    ] = True,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the written files as JSON.")
    ] = False,
    explain: Annotated[
        Path | None,
        typer.Option(
            help="Markdown file explaining the gaps to the paper and the findings; it goes "
            "into the report as 'Gaps and findings'."
        ),
    ] = None,
    records: Annotated[
        bool,
        typer.Option(
            "--records/--no-records",
            help="Keep each run's record (config, per-epoch log, results; no weights, a few kB) "
            "in OUT_DIR/runs/, from which the report can be redrawn and pooled with newer runs "
            "after the run folders are gone.",
        ),
    ] = True,
) -> None:
    """Tables, a Markdown/LaTeX report and plots of a study's runs (see RUNS_DIR/report/).

    Per dataset and method: mean ± std over seeds of HR/NDCG@5,10,20 and MRR, best per column
    in bold, relative change and paired t-test p-values against the baseline, and (with a
    reference) the paper's numbers beside ours with gaps above 5% flagged. With xu2024 also the
    authors' own runs, read from the logs they published: their seeds' spread beside ours, and
    their validation curve dashed in the validation-against-epochs plot.

    The report folder keeps every run's record in runs/ (no weights), so a report committed
    with a paper can be redrawn, and pooled with later runs, without the run folders.

    Examples:
      seqrec report runs/quickstart --baseline bce
      seqrec report runs/xu2024 --reference xu2024 --explain gaps.md
      seqrec report runs/xu2024-more results/xu2024/runs --out-dir results/xu2024
    """
    from seqrec.experiments.report import git_ignore_rule, write_report

    written = write_report(
        runs_dir,
        out_dir=out_dir,
        baseline=baseline,
        reference=reference,
        plots=plots,
        explain=explain,
        records=records,
    )
    if json_out:
        _print_json({k: str(v) for k, v in written.items()})
        return
    typer.echo(f"report: {written['report.md']}")
    typer.echo(f"tables: {written['runs.csv']}, {written['summary.csv']}, {written['report.tex']}")
    figures = sorted({v.parent for k, v in written.items() if k.endswith(".png")})
    for folder in figures:
        typer.echo(f"plots:  {folder}/")
    if "runs" in written:
        typer.echo(f"runs:   {written['runs']}/ (each run's record, no weights)")
        rule = git_ignore_rule(written["runs"])
        # a report that git ignores as a whole (e.g. runs/quickstart/report) is scratch output
        if rule is not None and git_ignore_rule(written["report.md"]) is None:
            typer.echo(
                f"warning: git ignores {written['runs']}/ (rule {rule}), so a commit of this "
                "report leaves out the records it is redrawn from; anchor the pattern to the "
                f"top folder ('/runs/') or `git add -f {written['runs']}`",
                err=True,
            )


@data_app.command("stats")
def data_stats(
    dataset: Annotated[
        str, typer.Argument(help="A named dataset (see `seqrec data list`) or a file path.")
    ],
    data_dir: Annotated[
        str | None, typer.Option(help="Folder of named datasets (default: $SEQREC_DATA_DIR).")
    ] = None,
    format: Annotated[
        str, typer.Option(help="File format for a path: auto, user-lines, pairs, log.")
    ] = "auto",
    sep: Annotated[str | None, typer.Option(help="Column separator of a log file.")] = None,
    user_col: Annotated[str, typer.Option(help="User column of a log.")] = "user",
    item_col: Annotated[str, typer.Option(help="Item column of a log.")] = "item",
    time_col: Annotated[str | None, typer.Option(help="Timestamp column of a log.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Users, items, interactions and sequence lengths of a dataset."""
    from seqrec.config import DataConfig
    from seqrec.data.datasets import load_dataset
    from seqrec.data.stats import dataset_stats

    cfg = validate(
        merge(
            RunConfig(),
            {
                "data": {
                    "dataset": dataset,
                    "data_dir": data_dir,
                    "format": format,
                    "sep": sep,
                    "user_col": user_col,
                    "item_col": item_col,
                    "time_col": time_col,
                }
            },
        )
    ).data
    assert isinstance(cfg, DataConfig)
    prepared = load_dataset(cfg)
    stats = dataset_stats(prepared.sequences)
    if json_out:
        _print_json(stats)
    else:
        typer.echo(f"{prepared.name}")
        for k, v in stats.items():
            typer.echo(f"  {k:>16}: {v:,.2f}" if isinstance(v, float) else f"  {k:>16}: {v:,}")


@data_app.command("list")
def data_list(
    json_out: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """The named datasets, their files and sources."""
    from seqrec.data.datasets import DATASETS

    rows = [
        {
            "name": n,
            "file": str(s.relpath),
            "format": s.format,
            "source": s.url or "no public download (see its note)",
        }
        for n, s in DATASETS.items()
    ]
    if json_out:
        _print_json(rows)
        return
    for r in rows:
        typer.echo(f"{r['name']:<16} {r['file']:<40} {r['format']:<11} {r['source']}")


def reflow_help(doc: str) -> str:
    """A docstring as help text: each prose paragraph on one line, so the terminal wraps it at
    its own width (typer keeps single line breaks, which at 80 columns gave ragged lines);
    paragraphs with indented lines (examples) keep their lines."""
    paragraphs = []
    for paragraph in inspect.cleandoc(doc).split("\n\n"):
        lines = paragraph.split("\n")
        if any(line.startswith(" ") for line in lines):
            paragraphs.append(paragraph)
        else:
            paragraphs.append(" ".join(line.strip() for line in lines))
    return "\n\n".join(paragraphs)


def _reflow_command_help(group: typer.Typer) -> None:
    """Give every command of ``group`` (and its sub-groups) its reflowed docstring as help."""
    for info in group.registered_commands:
        if info.help is None and info.callback is not None and info.callback.__doc__:
            info.help = reflow_help(info.callback.__doc__)
    for sub in group.registered_groups:
        if sub.typer_instance is not None:
            _reflow_command_help(sub.typer_instance)


_reflow_command_help(app)


def main() -> None:
    """Console entry point: usage errors as the parser reports them, seqrec errors as one line."""
    try:
        app()  # standalone mode: handles --help, usage errors ("No such option ... Did you mean")
    except SeqrecError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except OSError as exc:  # the environment, not seqrec: disk full, permissions, ...
        where = f"{exc.filename}: " if exc.filename else ""
        typer.echo(f"error: {where}{exc.strerror or exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
