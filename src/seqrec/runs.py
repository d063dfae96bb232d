"""A run is a folder: resolved config, per-epoch metrics, checkpoints, results, environment.

Layout::

    RUN_DIR/
      config.toml        resolved configuration (what was actually run)
      environment.json   versions, code commit, CPU, threads, command line; each resumption's under "resumed"
      metrics.jsonl      one JSON line per epoch: loss, valid metrics, epoch and wall seconds
      best/              model.safetensors + model.json + vocab.json of the best valid epoch
      results.json       final valid/test metrics of the best epoch, baselines, timings
      last_state.pt      weights, optimizer, RNGs and loop counters after the last epoch
      extensions/        what a run had before it was trained further (see adopt_extension)

Every file except the JSON-lines log is written atomically (temp file + rename).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from seqrec.config import ModelConfig, RunConfig, load_toml, merge, to_toml, validate
from seqrec.data.sequences import Vocabulary
from seqrec.errors import SeqrecError
from seqrec.io import append_line, atomic_write, atomic_write_text
from seqrec.models import build_model
from seqrec.models.base import SequentialRecommender

CONFIG = "config.toml"
METRICS = "metrics.jsonl"
RESULTS = "results.json"
ENVIRONMENT = "environment.json"
BEST = "best"
LAST_STATE = "last_state.pt"
EXTENSIONS = "extensions"
POSITIONS = "positions.json"  # per-position test metrics (seqrec.experiments.positions)
MANIFEST = "sweep.json"  # in a sweep's runs folder: its plan (seqrec.experiments.sweep)
LOCKS = ".locks"  # in a runs folder: one lock file per run being trained (see claim)

try:
    import fcntl
except ImportError:  # Windows: no flock; one sweep per out_dir there
    fcntl = None  # type: ignore[assignment]
CAN_LOCK = fcntl is not None


@contextmanager
def claim(out_dir: Path, name: str) -> Iterator[bool]:
    """Hold the run's lock for the block: yields True if this process has it, False if another
    sweep is working on the run. The lock is an exclusive non-blocking ``flock`` on
    ``out_dir/.locks/<name>.lock``, released on exit and by the kernel if the process dies.
    Without ``fcntl`` (Windows) every claim succeeds."""
    if fcntl is None:
        yield True
        return
    path = Path(out_dir) / LOCKS / f"{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def default_run_name(cfg: RunConfig) -> str:
    dataset = Path(cfg.data.dataset).stem if os.sep in cfg.data.dataset else cfg.data.dataset
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{dataset}-{cfg.model.name}-{cfg.loss.name}-{cfg.loss.positions}-{stamp}"


def create_run_dir(cfg: RunConfig) -> Path:
    """Make a new, empty run folder (never reuses one that has files in it)."""
    run_dir = Path(cfg.out_dir) / (cfg.name or default_run_name(cfg))
    if run_dir.exists() and any(run_dir.iterdir()):
        raise SeqrecError(
            f"run folder {run_dir} already exists and is not empty; choose another --name "
            "or remove it"
        )
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SeqrecError(
            f"cannot create the run folder {run_dir} ({exc.strerror}); choose another --out-dir"
        ) from None
    return run_dir


def cpu_model() -> str:
    """The CPU's model name ("AMD EPYC", from /proc/cpuinfo on Linux), else what the platform
    says (often "" on Linux, hence /proc first). Runs on different CPUs round differently."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def git(folder: str | Path, *args: str) -> subprocess.CompletedProcess[str] | None:
    """``git -C folder ARGS`` with its output captured as text, or None when git is missing,
    cannot start or takes over 30 s. Its return code is the caller's to read."""
    try:
        return subprocess.run(
            ["git", "-C", str(folder), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None


def source_commit() -> str | None:
    """The git commit of the seqrec code that is running, when it runs from a git checkout
    (e.g. ``pip install -e``), with "+dirty" if tracked files differ from it; None for an
    installed package. The package version alone does not tell two commits apart."""
    here = Path(__file__).resolve()
    # this very file must be tracked: a site-packages copy inside some other repository's
    # folder (a venv in a checkout) is not that repository's code
    tracked = git(here.parent, "ls-files", "--error-unmatch", here.name)
    if tracked is None or tracked.returncode != 0:
        return None
    head = git(here.parent, "rev-parse", "--short", "HEAD")
    dirty = git(here.parent, "status", "--porcelain", "--untracked-files=no", ".")
    if head is None or dirty is None or head.returncode != 0:
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def environment() -> dict[str, Any]:
    import numpy as np

    import seqrec

    return {
        "seqrec": seqrec.__version__,
        "source": source_commit(),
        "cpu": cpu_model(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "argv": sys.argv,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def start_run(run_dir: Path, cfg: RunConfig) -> None:
    atomic_write_text(run_dir / CONFIG, to_toml(cfg))
    write_json(run_dir / ENVIRONMENT, environment())


def note_resume(run_dir: Path, epoch: int) -> None:
    """Add this process's environment to the run's environment.json under ``"resumed"``, with
    the epoch it continues after: a run resumed or trained further, perhaps on another machine
    or with another torch, says so (the original environment stays as it was)."""
    path = run_dir / ENVIRONMENT
    try:
        env = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(env, dict):
            raise ValueError("not an object")
    except (OSError, ValueError):  # missing or unreadable: keep what this process knows
        env = {}
    env.setdefault("resumed", []).append({"after_epoch": epoch, **environment()})
    write_json(path, env)


def log_epoch(run_dir: Path, record: dict[str, Any]) -> None:
    append_line(run_dir / METRICS, json.dumps(record))


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """Per-epoch records; a torn last line (killed process) is skipped."""
    path = Path(run_dir) / METRICS
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def last_epoch(run_dir: Path) -> int:
    """The highest epoch in the run's metrics.jsonl (0 when none is logged)."""
    return max((int(r.get("epoch", 0)) for r in read_metrics(run_dir)), default=0)


def remove_stale_temps(run_dir: Path) -> list[Path]:
    """Delete the temp files (``.NAME.XXXX.tmp``) of atomic writes that a killed process left
    in ``run_dir`` and ``run_dir/best`` (never mistaken for real files; removed on resume).
    Returns what was removed."""
    removed = []
    for folder in (Path(run_dir), Path(run_dir) / BEST):
        if folder.is_dir():
            for tmp in folder.glob(".*.tmp"):
                tmp.unlink(missing_ok=True)
                removed.append(tmp)
    return removed


def truncate_metrics(run_dir: Path, last_epoch: int) -> None:
    """Keep only the log lines of epochs <= last_epoch (a resumed run redoes the rest)."""
    path = Path(run_dir) / METRICS
    if not path.exists():
        return
    kept = [json.dumps(r) for r in read_metrics(run_dir) if r.get("epoch", 0) <= last_epoch]
    atomic_write_text(path, "".join(line + "\n" for line in kept))


def save_item_counts(folder: Path, counts: Any) -> None:
    """Training item counts (int64[C + 1]) next to the checkpoint: the popularity fallback."""
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)

    def _write(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: np.save would append ".npy" to a path
            np.save(f, np.asarray(counts, dtype=np.int64))

    atomic_write(folder / "item_counts.npy", _write)


WEIGHTS_HASH = "weights_sha256"  # in model.json: ties it to the weights it was written with


def _sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_checkpoint(
    folder: Path,
    model: SequentialRecommender,
    model_cfg: ModelConfig,
    vocab: Vocabulary | None,
    extra: dict[str, Any],
) -> None:
    """Write model weights (safetensors), vocabulary and model config, each atomically.

    ``model.json`` is written last and records the SHA-256 of the weights, so a process killed
    between the files leaves a checkpoint that :func:`load_checkpoint` refuses (the weights of
    one epoch with the metadata of another can never pass for a good checkpoint).
    """
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    digest: dict[str, str] = {}

    def _write_weights(tmp: str) -> None:
        save_file(state, tmp)
        digest["sha256"] = _sha256(tmp)

    atomic_write(folder / "model.safetensors", _write_weights)
    if vocab is not None:
        vocab.save(folder / "vocab.json")
    meta = {"model": asdict(model_cfg), "n_items": model.n_items, **extra}
    meta[WEIGHTS_HASH] = digest["sha256"]
    write_json(folder / "model.json", meta)


def load_checkpoint(folder: Path) -> tuple[SequentialRecommender, dict[str, Any]]:
    """Load a checkpoint folder written by :func:`save_checkpoint` (model in eval mode).

    Raises SeqrecError naming the file for a missing, unreadable, mismatched or damaged one.
    """
    folder = Path(folder)
    meta_path, weights = folder / "model.json", folder / "model.safetensors"
    if not meta_path.exists() or not weights.exists():
        raise SeqrecError(
            f"no checkpoint in {folder} (expected model.json and model.safetensors); "
            "was the run finished at least one evaluation?"
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        model_cfg = ModelConfig(**meta["model"])
        n_items = int(meta["n_items"])
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise SeqrecError(
            f"{meta_path}: not a seqrec checkpoint description ({type(exc).__name__}: {exc})"
        ) from None
    expected = meta.get(WEIGHTS_HASH)
    if expected is not None and _sha256(weights) != expected:
        raise SeqrecError(
            f"{weights} does not match {meta_path} (a write was interrupted or a file was "
            "replaced); continue the run with `seqrec train --resume RUN_DIR` to rewrite it"
        )
    model = build_model(model_cfg, n_items)
    try:
        model.load_state_dict(load_file(str(weights)))
    except Exception as exc:  # safetensors and torch raise many kinds; all mean a bad file
        raise SeqrecError(
            f"{weights}: cannot load the weights ({type(exc).__name__}: {str(exc)[:200]})"
        ) from None
    model.eval()
    return model, meta


def load_run_config(run_dir: Path) -> RunConfig:
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG).exists():
        raise SeqrecError(f"{run_dir} is not a run folder: it has no {CONFIG}")
    return validate(merge(RunConfig(), load_toml(run_dir / CONFIG)))


#: settings that may differ between a run's config and the one it is continued with: where the
#: data lives, how many threads and how large the evaluation blocks are change nothing it computes
FREE_SETTINGS = frozenset({"data.data_dir", "train.threads", "eval.batch_size"})

#: settings a run can be trained further under, when they grow (see :func:`extension_problem`)
EXTENDABLE = frozenset({"train.epochs", "train.patience"})


def config_diff(a: RunConfig, b: RunConfig) -> list[str]:
    """``section.key: a != b`` for every differing setting (``out_dir``, ``name`` and
    :data:`FREE_SETTINGS` ignored)."""
    out = []
    for f in fields(RunConfig):
        if f.name in ("out_dir", "name"):
            continue
        da, db = asdict(getattr(a, f.name)), asdict(getattr(b, f.name))
        out += [
            f"{f.name}.{k}: {da[k]!r} != {db[k]!r}"
            for k in da
            if da[k] != db[k] and f"{f.name}.{k}" not in FREE_SETTINGS
        ]
    return out


def extension_problem(old: RunConfig, new: RunConfig) -> str | None:
    """Why a run made with ``old`` cannot simply be trained on to become the run ``new`` asks
    for, or None when it can (``new`` is then an *extension* of ``old``).

    ``new`` is an extension when it differs from ``old`` only in a larger (or equal)
    ``train.patience`` and ``train.epochs``. Proof that continuing is exact: patience and the
    epoch budget only decide *when the loop stops*; up to the epoch where ``old`` stopped, both
    runs do the same steps with the same RNG draws, so ``old``'s saved state (weights,
    optimizer, RNGs, best-so-far counters) is ``new``'s state at that epoch. The one exception
    is the evaluation the loop forces at the last epoch: if ``old.train.epochs`` is not a
    multiple of ``eval_every``, ``old`` evaluated (and maybe checkpointed) an epoch ``new``
    would not, so a larger epoch budget is refused then.
    """
    diff = config_diff(old, new)
    other = [d for d in diff if d.split(":")[0] not in EXTENDABLE]
    if other:
        return f"it was made with other settings ({'; '.join(other[:3])})"
    t_old, t_new = old.train, new.train
    if t_new.patience < t_old.patience:
        return (
            f"train.patience {t_new.patience} is smaller than the run's {t_old.patience}: a run "
            "with less patience may have stopped earlier, so it cannot be continued into one"
        )
    if t_new.epochs < t_old.epochs:
        return (
            f"train.epochs {t_new.epochs} is smaller than the run's {t_old.epochs}: train a new "
            "run, or evaluate the run's best checkpoint as it is"
        )
    if t_new.epochs > t_old.epochs and t_old.epochs % t_old.eval_every:
        return (
            f"its last epoch {t_old.epochs} was evaluated out of turn (eval_every "
            f"{t_old.eval_every}), which a longer run would not do"
        )
    return None


def adopt_extension(run_dir: Path, new: RunConfig, epoch: int) -> Path:
    """Make ``run_dir`` (a run that may be finished) the unfinished run ``new``, an extension of
    its config (:func:`extension_problem`), to be continued from its saved state at ``epoch``.

    What the run had is kept in ``extensions/from-epoch-<epoch>/``: its config, results and
    per-position metrics. Steps, each safe to be killed after (rerunning redoes the rest):
    copy the config, move ``positions.json``, move ``results.json`` (the run is now unfinished
    with its old config, which continuing adopts again), write the new config. Returns the
    folder the old files went to.
    """
    run_dir = Path(run_dir)
    kept = run_dir / EXTENSIONS / f"from-epoch-{epoch}"
    kept.mkdir(parents=True, exist_ok=True)
    if not (kept / CONFIG).exists():
        atomic_write_text(kept / CONFIG, (run_dir / CONFIG).read_text(encoding="utf-8"))
    for name in (POSITIONS, RESULTS):  # results last: until then the run is finished
        if (run_dir / name).exists():
            os.replace(run_dir / name, kept / name)
    atomic_write_text(run_dir / CONFIG, to_toml(new))
    return kept
