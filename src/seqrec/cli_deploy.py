"""The commands that turn a trained run into something people use: ``recommend``, ``serve``,
``export``.

They are registered on the main app by :mod:`seqrec.cli`; the work is done by
:mod:`seqrec.recommend`, :mod:`seqrec.serve` and :mod:`seqrec.export`. Errors are
:class:`~seqrec.errors.SeqrecError` (one line on stderr, exit code 2).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

import typer

from seqrec.errors import SeqrecError

EXPORT_FORMATS = ("onnx",)
PARITY_ROWS = 256  # histories checked against PyTorch after an export
PARITY_TOL = 1e-4
MAX_SERVE_BATCH = 4096  # bound of `seqrec serve --max-batch`


def _run_dir(path: Path) -> Path:
    if not path.exists():
        raise SeqrecError(f"run folder {path} does not exist; give a folder made by `seqrec train`")
    if not path.is_dir():
        raise SeqrecError(f"{path} is a file; give a run folder made by `seqrec train`")
    return path


def parse_history(text: str) -> list[str]:
    """Raw ids from ``--history``: separated by spaces and/or commas; '' is an empty history."""
    return [tok for tok in re.split(r"[\s,]+", text.strip()) if tok]


def _table(result: Any, *, show_titles: bool) -> list[str]:
    lines = []
    for rank, (item, score) in enumerate(zip(result.items, result.scores, strict=True), start=1):
        title = ""
        if show_titles and result.titles is not None:
            title = "  " + (result.titles[rank - 1] or "")
        lines.append(f"{rank:>4}  {item:<16} {score:>12.4f}{title}")
    return lines


def recommend(
    run_dir: Annotated[Path, typer.Argument(help="A run folder made by `seqrec train`.")],
    history: Annotated[
        list[str] | None,
        typer.Option(
            "--history",
            "-H",
            help="Raw item ids, oldest first, separated by spaces or commas (quote them). "
            "Repeat for several users. '' is an empty history (popularity fallback).",
        ),
    ] = None,
    k: Annotated[int, typer.Option("-k", "--k", help="How many items to recommend.")] = 10,
    keep_history: Annotated[
        bool,
        typer.Option(
            "--keep-history", help="Allow items already in the history (default: excluded)."
        ),
    ] = False,
    titles: Annotated[
        Path | None,
        typer.Option(
            help="Metadata file with titles for the run's raw ids (movies.dat or u.item format); "
            "default: the dataset's own when its ids match."
        ),
    ] = None,
    data_dir: Annotated[
        str | None,
        typer.Option(help="Folder of named datasets (default: the run's, then $SEQREC_DATA_DIR)."),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Top-k next items for a history of raw item ids (the ids of your data file).

    Unknown ids are dropped and reported; an empty or all-unknown history gets the most popular
    training items.

    Examples:
      seqrec recommend runs/ml-100k-sasrec-ce-all-... --history "1 50 181" -k 5
      seqrec recommend RUN --history "B0001,B0042" --history "" --json
    """
    from seqrec.recommend import Recommender

    if history is None:
        raise SeqrecError(
            "give a history: --history 'id id ...' (raw item ids, oldest first; '' for none)"
        )
    histories = [parse_history(h) for h in history]
    rec = Recommender.from_run(_run_dir(run_dir), data_dir=data_dir, titles_path=titles)
    results = rec.recommend(histories, k=k, exclude_history=not keep_history)
    if json_out:
        payload = [r.to_dict() for r in results]
        typer.echo(json.dumps(payload[0] if len(payload) == 1 else payload, indent=2))
        return
    for n, (h, r) in enumerate(zip(histories, results, strict=True)):
        if len(results) > 1:
            typer.echo(f"history {n + 1}: {' '.join(h) or '(empty)'}")
        if r.unknown:
            typer.echo(f"unknown ids (dropped): {' '.join(r.unknown)}", err=True)
        if r.source == "popularity":
            typer.echo("no known item in the history: the most popular training items", err=True)
        elif r.source == "unavailable":
            typer.echo(
                "no known item in the history and no popularity counts in the run: nothing to "
                "recommend",
                err=True,
            )
        for line in _table(r, show_titles=rec.titles is not None):
            typer.echo(line)


def serve(
    run_dir: Annotated[Path, typer.Argument(help="A run folder made by `seqrec train`.")],
    host: Annotated[
        str, typer.Option(help="Address to listen on (default: this machine only).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.", min=1, max=65535)] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes.", min=1, max=64)] = 1,
    threads: Annotated[int, typer.Option(help="Torch threads per worker.", min=1, max=256)] = 1,
    data_dir: Annotated[
        str | None,
        typer.Option(help="Folder of named datasets (default: the run's, then $SEQREC_DATA_DIR)."),
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    max_batch: Annotated[
        int | None,
        typer.Option(
            help="Most histories of concurrent requests gathered into one model call "
            "(default 64; 1: no micro-batching).",
            min=1,
            max=MAX_SERVE_BATCH,
            show_default=False,
        ),
    ] = None,
    batch_wait_ms: Annotated[
        float | None,
        typer.Option(
            help="Longest wait of an idle model for more concurrent requests, in milliseconds. "
            "(default 1)",
            min=0.0,
            max=1000.0,
            show_default=False,
        ),
    ] = None,
) -> None:
    """Serve a run over HTTP: POST /recommend, GET /model, GET /health, schema at /openapi.json.

    Concurrent requests are answered together, in one model call (micro-batching), with
    exactly the answers they get alone.

    Example, then a request from another shell:
      seqrec serve RUN --port 8000
      curl -s localhost:8000/recommend -H 'content-type: application/json' \\
        -d '{"history": ["1", "50"], "k": 5}'
    """
    from seqrec.serve import serve as run_server

    levels = ("critical", "error", "warning", "info", "debug", "trace")
    if log_level not in levels:
        raise SeqrecError(f"--log-level must be one of {', '.join(levels)}, got '{log_level}'")
    run_server(
        _run_dir(run_dir),
        host,
        port,
        workers=workers,
        threads=threads,
        data_dir=data_dir,
        log_level=log_level,
        **{
            name: value
            for name, value in (("batch_wait_ms", batch_wait_ms), ("max_batch", max_batch))
            if value is not None
        },
    )


def export(
    run_dir: Annotated[Path, typer.Argument(help="A run folder made by `seqrec train`.")],
    format: Annotated[str, typer.Option(help="Export format: onnx.")] = "onnx",
    out: Annotated[
        Path | None, typer.Option(help="Output file (default: RUN_DIR/best/model.onnx).")
    ] = None,
    check: Annotated[
        int,
        typer.Option(
            help="Compare the export with PyTorch on this many histories (0: skip).", min=0
        ),
    ] = PARITY_ROWS,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Export the best checkpoint: items int64[B, maxlen] (left-padded) -> scores float[B, C].

    After writing, the file is checked against PyTorch on --check histories (max score
    difference <= 1e-4, same top-10); a file that fails the check is removed.
    """
    from seqrec.export import check_parity, export_onnx

    if format not in EXPORT_FORMATS:
        raise SeqrecError(f"--format must be one of {', '.join(EXPORT_FORMATS)}, got '{format}'")
    _run_dir(run_dir)
    path = export_onnx(run_dir, out)
    payload: dict[str, Any] = {"path": str(path), "bytes": path.stat().st_size}
    if check:
        from seqrec import runs

        model, _ = runs.load_checkpoint(run_dir / runs.BEST)
        cfg = runs.load_run_config(run_dir)
        parity = check_parity(model, path, _check_inputs(check, cfg.model.maxlen, model.n_items))
        payload["parity"] = parity.to_dict()
        if not parity.ok(PARITY_TOL):
            path.unlink(missing_ok=True)
            raise SeqrecError(
                f"the ONNX export does not match PyTorch (max score difference "
                f"{parity.max_abs_diff:.2e}, {parity.unexplained} top-10 lists differ); the file "
                "was removed. Please report this with the run's config.toml"
            )
    if json_out:
        typer.echo(json.dumps(payload, indent=2))
        return
    typer.echo(f"wrote {path} ({payload['bytes']:,} bytes)")
    if check:
        p = payload["parity"]
        typer.echo(
            f"parity with PyTorch on {p['n']} histories: max |score diff| {p['max_abs_diff']:.2e}, "
            f"identical top-{p['k']} {100 * p['topk_exact']:.1f}%"
        )


def _check_inputs(n: int, maxlen: int, n_items: int) -> Any:
    """int64[n, maxlen]: seeded random left-padded histories of every length 0..maxlen."""
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.integers(1, n_items + 1, size=(n, maxlen), dtype=np.int64)
    lengths = np.arange(n) % (maxlen + 1)  # (n,)
    x[np.arange(maxlen)[None, :] < (maxlen - lengths)[:, None]] = 0
    return x
