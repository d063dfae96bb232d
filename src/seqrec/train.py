"""The training loop: Adam, evaluation every N epochs, early stopping on valid NDCG@10,
best checkpoint, final test at the best epoch. Seeded and deterministic on CPU.

Which positions train is chosen here, not in the loss (DESIGN §2):
``positions="all"`` trains every non-padding position of every sequence (with ``ce`` this is
"CCE" in Li et al. 2023 and "CE" in Xu et al. 2024); ``positions="last"`` trains only the last
position of each training sequence (Li et al.'s "CE").
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from seqrec import runs
from seqrec.config import RunConfig, validate
from seqrec.data.batching import (
    PACKED_PIECE_ROWS,
    PIECE_ROWS,
    Piece,
    n_train_batches,
    sorted_history,
    train_batches,
)
from seqrec.data.datasets import PreparedDataset, load_dataset
from seqrec.data.sequences import Split
from seqrec.data.split import make_split
from seqrec.diagnostics import validation_diagnostics
from seqrec.errors import TrainingError
from seqrec.evaluate import evaluate, standard_errors
from seqrec.io import atomic_write
from seqrec.losses import build_loss
from seqrec.losses.base import History, SequenceLoss
from seqrec.models import build_model
from seqrec.models.base import SequentialRecommender
from seqrec.models.popularity import PopularityModel


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    results: dict[str, Any]


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))


def select_positions(
    hidden: torch.Tensor, targets: torch.Tensor, positions: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pick the training positions.

    hidden: (B, L, d); targets: (B, L) with 0 at padding.
    Returns h (N, d), t (N,), row (N,) — the batch row of every selected position.
    """
    if positions == "last":
        keep = torch.zeros_like(targets, dtype=torch.bool)
        keep[:, -1] = targets[:, -1] > 0  # left padding: the last column is the last target
    else:
        keep = targets > 0  # (B, L)
    row, col = keep.nonzero(as_tuple=True)  # (N,), (N,)
    return hidden[row, col], targets[row, col], row


def encode_batch(
    model: SequentialRecommender, pieces: list[Piece], positions: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Encode a training batch piece by piece and gather its training positions.

    Returns h (N, d), t (N,) and row (N,), the index of each position's sequence in the batch
    (pieces in order). Each piece goes through ``model.encode_real``, which returns only the
    real (non-padding) positions (SASRec computes nothing for padding). A row's hidden states
    do not depend on the other rows or on padding, so this equals encoding the whole batch at
    maxlen width and calling :func:`select_positions` (tested), with far less work.
    """
    hs, ts, rows = [], [], []
    offset = 0
    for piece in pieces:
        inputs = torch.from_numpy(piece.inputs)  # (b, L)
        width = inputs.shape[1]
        hidden, index = model.encode_real(inputs)  # (T, d), (T,) flat cells b * L + j
        if positions == "last":  # left padding: a row's last target is in its last column
            last = (index % width == width - 1).nonzero().squeeze(1)  # (b',)
            hidden, index = hidden[last], index[last]
        targets = torch.from_numpy(piece.targets).reshape(-1)[index]  # (T,)
        if not bool((targets > 0).all()):  # inputs and targets share their padding
            raise TrainingError("encode_batch: a real input position has no target (bug)")
        hs.append(hidden)
        ts.append(targets)
        rows.append(index // width + offset)
        offset += len(piece.rows)
    if len(pieces) == 1:
        return hs[0], ts[0], rows[0]
    return torch.cat(hs), torch.cat(ts), torch.cat(rows)


def make_adam(model: torch.nn.Module, cfg: RunConfig) -> torch.optim.Adam:
    """Adam with the run's settings, as torch's fused kernel where this build has it (one pass
    over each parameter instead of a dozen small ops: 0.31 -> 0.09 s per Beauty epoch here).
    The fused update is the same algorithm; its rounding differs in the last bits."""
    kwargs: dict[str, Any] = dict(
        lr=cfg.train.lr, betas=(0.9, cfg.train.adam_beta2), weight_decay=cfg.train.weight_decay
    )
    try:
        return torch.optim.Adam(model.parameters(), fused=True, **kwargs)
    except (RuntimeError, TypeError, ValueError):  # a build without the fused CPU kernel
        return torch.optim.Adam(model.parameters(), **kwargs)


def item_counts(split: Split) -> np.ndarray:
    """int64[C + 1]: how often each item occurs in training (row 0 = padding = 0)."""
    return np.bincount(split.train.items, minlength=split.train.n_items + 1).astype(np.int64)


def train_one_epoch(
    model: SequentialRecommender,
    loss_fn: SequenceLoss,
    optimizer: torch.optim.Optimizer,
    split: Split,
    cfg: RunConfig,
    rng: np.random.Generator,
    generator: torch.Generator,
    epoch: int,
    progress: bool,
) -> float:
    """One pass over the training sequences; returns the mean loss per position."""
    model.train()
    need_history = cfg.loss.pool == "not-history"
    total, count = 0.0, 0
    batches = train_batches(
        split.train,
        maxlen=cfg.model.maxlen,
        batch_size=cfg.train.batch_size,
        rng=rng,
        piece_rows=PACKED_PIECE_ROWS if model.packs_padding else PIECE_ROWS,
    )
    n_batches = n_train_batches(split.train, batch_size=cfg.train.batch_size)
    bar = tqdm(
        batches,
        total=n_batches,
        desc=f"epoch {epoch}",
        unit="batch",
        leave=False,
        disable=not progress,
    )
    for pieces in bar:
        h, t, row = encode_batch(model, pieces, cfg.loss.positions)  # (N, d), (N,), (N,)
        if len(t) == 0:
            continue
        history = None
        if need_history:
            rows = np.concatenate([piece.rows for piece in pieces])  # (B,), in row order
            history = History(items=torch.from_numpy(sorted_history(split.train, rows)), row=row)
        loss = loss_fn(h, t, model.item_embeddings(), history=history, generator=generator)
        if not torch.isfinite(loss):
            raise TrainingError(
                f"the {cfg.loss.name} loss became {loss.item()} at epoch {epoch} after {count} positions; "
                f"try a smaller learning rate (now {cfg.train.lr}), more weight decay, or a different loss."
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        n = len(t)
        total += loss.item() * n
        count += n
        if progress:
            bar.set_postfix(loss=f"{total / count:.4f}")
    return total / max(count, 1)


def _say(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


@dataclass
class LoopState:
    """Everything the loop needs to continue exactly where it stopped (saved after every epoch)."""

    epoch: int = 0
    best_ndcg: float = -math.inf
    best_epoch: int = 0
    since_best: int = 0
    train_seconds: float = 0.0
    wall_seconds: float = 0.0


def save_state(
    run_dir: Path,
    state: LoopState,
    model: SequentialRecommender,
    optimizer: torch.optim.Optimizer,
    rng: np.random.Generator,
    generator: torch.Generator,
) -> None:
    """Write last/state.pt atomically: weights, optimizer, every RNG, loop counters."""
    blob = {
        "loop": asdict(state),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "numpy_rng": rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
        "sampler_rng": generator.get_state(),
    }
    atomic_write(run_dir / runs.LAST_STATE, lambda tmp: torch.save(blob, tmp))


def load_state(
    run_dir: Path,
    model: SequentialRecommender,
    optimizer: torch.optim.Optimizer,
    rng: np.random.Generator,
    generator: torch.Generator,
) -> LoopState:
    path = run_dir / runs.LAST_STATE
    if not path.exists():
        return LoopState()  # killed before the first epoch ended: start over in the same folder
    try:
        blob = torch.load(path, weights_only=False)
    except Exception as exc:  # a state file is written atomically, so this is real damage
        raise TrainingError(f"{path}: cannot read the saved training state ({exc})") from None
    model.load_state_dict(blob["model"])
    optimizer.load_state_dict(blob["optimizer"])
    rng.bit_generator.state = blob["numpy_rng"]
    torch.set_rng_state(blob["torch_rng"])
    generator.set_state(blob["sampler_rng"])
    return LoopState(**blob["loop"])


def fit(
    cfg: RunConfig,
    *,
    progress: bool | None = None,
    quiet: bool = False,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    resume_dir: Path | None = None,
) -> TrainResult:
    """Train one run end to end and return its folder and results.

    Data and config are validated before the run folder is created, so bad input leaves nothing.
    With ``resume_dir`` the run continues from its last completed epoch (``cfg`` must be that
    run's config); the final metrics equal those of an uninterrupted run with the same seed.
    """
    cfg = validate(cfg)
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.train.threads or os.cpu_count() or 1)
    try:
        return _fit(cfg, progress=progress, quiet=quiet, on_epoch=on_epoch, resume_dir=resume_dir)
    finally:
        torch.set_num_threads(threads)


def _fit(
    cfg: RunConfig,
    *,
    progress: bool | None,
    quiet: bool,
    on_epoch: Callable[[dict[str, Any]], None] | None,
    resume_dir: Path | None,
) -> TrainResult:
    if progress is None:
        progress = not quiet and sys.stderr.isatty()
    seed_everything(cfg.train.seed)

    prepared: PreparedDataset = load_dataset(cfg.data)
    split = make_split(prepared.sequences, cfg.data)
    n_items = prepared.sequences.n_items
    counts = item_counts(split)
    if len(split.valid) == 0 or len(split.test) == 0:
        raise TrainingError(
            f"dataset {cfg.data.dataset} has no users with enough interactions for a "
            f"{cfg.data.split} split (valid {len(split.valid)}, test {len(split.test)} examples)"
        )

    model = build_model(cfg.model, n_items)
    loss_fn = build_loss(cfg.loss, n_items, item_counts=counts)
    optimizer = make_adam(model, cfg)
    rng = np.random.default_rng(cfg.train.seed)
    generator = torch.Generator().manual_seed(cfg.train.seed + 1)

    if resume_dir is None:
        run_dir = runs.create_run_dir(cfg)
        runs.start_run(run_dir, cfg)
        state = LoopState()
    else:
        run_dir = Path(resume_dir)
        state = load_state(run_dir, model, optimizer, rng, generator)
        _adopt_config(run_dir, cfg, state.epoch, quiet)
        runs.truncate_metrics(run_dir, state.epoch)
        if state.epoch == 0:
            runs.start_run(run_dir, cfg)
        else:
            runs.note_resume(run_dir, state.epoch)
    _say(
        f"run {run_dir}: {prepared.name} ({split.train.n_users} users, {n_items} items), "
        f"{cfg.model.name} + {cfg.loss.name} at {cfg.loss.positions} positions"
        + (f", resumed after epoch {state.epoch}" if resume_dir is not None else ""),
        quiet,
    )
    eval_kw = dict(
        maxlen=cfg.model.maxlen,
        ks=cfg.eval.ks,
        history=cfg.eval.history,
        batch_size=cfg.eval.batch_size,
    )

    start = time.perf_counter() - state.wall_seconds
    stopped_early = state.since_best >= cfg.train.patience
    for epoch in range(state.epoch + 1, cfg.train.epochs + 1):
        if stopped_early:
            break
        t0 = time.perf_counter()
        try:
            mean_loss = train_one_epoch(
                model, loss_fn, optimizer, split, cfg, rng, generator, epoch, progress
            )
        except TrainingError as exc:
            raise TrainingError(f"{exc} {_kept_after_failure(run_dir, state, model)}") from None
        epoch_seconds = time.perf_counter() - t0
        state.train_seconds += epoch_seconds
        record: dict[str, Any] = {"epoch": epoch, "loss": mean_loss, "epoch_seconds": epoch_seconds}
        if cfg.train.diagnostics:  # exact valid CE next to the training loss, Xu et al. bound
            record["diagnostics"] = validation_diagnostics(
                model, split.valid, maxlen=cfg.model.maxlen, batch_size=cfg.eval.batch_size
            )
        improved = False
        if epoch % cfg.train.eval_every == 0 or epoch == cfg.train.epochs:
            t1 = time.perf_counter()
            valid = evaluate(model, split.valid, **eval_kw).metrics
            record["valid"] = valid
            record["eval_seconds"] = time.perf_counter() - t1
            if valid["ndcg@10"] > state.best_ndcg:
                state.best_ndcg, state.best_epoch, state.since_best = valid["ndcg@10"], epoch, 0
                improved = True
                runs.save_checkpoint(
                    run_dir / runs.BEST,
                    model,
                    cfg.model,
                    prepared.vocab,
                    {"epoch": epoch, "valid": valid},
                )
            else:
                state.since_best += 1
        state.epoch = epoch
        state.wall_seconds = time.perf_counter() - start
        record["wall_seconds"] = state.wall_seconds
        # order matters for resume: the log line first, then the state that says "epoch done"
        runs.log_epoch(run_dir, record)
        save_state(run_dir, state, model, optimizer, rng, generator)
        if on_epoch is not None:
            on_epoch(record)
        valid_txt = (
            f" valid ndcg@10 {record['valid']['ndcg@10']:.4f}{' *' if improved else ''}"
            if "valid" in record
            else ""
        )
        _say(f"epoch {epoch:4d} loss {mean_loss:.4f}{valid_txt} ({epoch_seconds:.1f}s)", quiet)
        if state.since_best >= cfg.train.patience:
            _say(f"early stop: no better valid NDCG@10 for {state.since_best} evaluations", quiet)
            stopped_early = True

    best_model, _ = runs.load_checkpoint(run_dir / runs.BEST)
    valid = evaluate(best_model, split.valid, **eval_kw).metrics
    test_result = evaluate(best_model, split.test, per_example=True, **eval_kw)
    test = test_result.metrics
    pop = evaluate(PopularityModel(torch.from_numpy(counts)), split.test, **eval_kw).metrics
    results = {
        "valid": valid,
        "test": test,
        "test_se": standard_errors(test_result),
        "best_epoch": state.best_epoch,
        "epochs_run": state.epoch,
        "train_seconds": state.train_seconds,
        "wall_seconds": time.perf_counter() - start,
        "baselines": {"popularity": {"test": pop}},
        "dataset": {
            "name": prepared.name,
            "users": split.train.n_users,
            "items": n_items,
            "valid_examples": len(split.valid),
            "test_examples": len(split.test),
        },
    }
    runs.save_item_counts(run_dir / runs.BEST, counts)
    runs.write_json(run_dir / runs.RESULTS, results)
    _say(
        f"best epoch {state.best_epoch}: test ndcg@10 {test['ndcg@10']:.4f} "
        f"hr@10 {test['hr@10']:.4f} (popularity: ndcg@10 {pop['ndcg@10']:.4f} "
        f"hr@10 {pop['hr@10']:.4f}); results in {run_dir}",
        quiet,
    )
    return TrainResult(run_dir=run_dir, results=results)


# ---- issue 6: what a non-finite loss leaves behind (said in the error's one line) ----


def _kept_after_failure(run_dir: Path, state: LoopState, model: SequentialRecommender) -> str:
    """Which weights went bad, and which checkpoint is still good, for a non-finite loss."""
    bad = [n for n, p in model.named_parameters() if not torch.isfinite(p).all()]
    cause = (
        f"Non-finite weights: {', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''} (an update diverged)."
        if bad
        else "All weights are still finite (the loss itself overflowed)."
    )
    if state.best_epoch > 0:
        kept = (
            f"The best checkpoint {run_dir / runs.BEST} (epoch {state.best_epoch}, valid "
            f"ndcg@10 {state.best_ndcg:.4f}) is kept and loadable; no {runs.RESULTS} was written."
        )
    else:
        kept = f"It failed before the first evaluation, so {run_dir} has no checkpoint."
    return f"{cause} {kept}"


def _adopt_config(run_dir: Path, cfg: RunConfig, epoch: int, quiet: bool) -> None:
    """Continuing ``run_dir`` as ``cfg``: nothing to do if that is its config; if ``cfg`` only
    lets it train longer (:func:`seqrec.runs.extension_problem`) the folder becomes that run
    (:func:`seqrec.runs.adopt_extension`); anything else is refused before a byte changes."""
    if not (run_dir / runs.CONFIG).exists():
        return  # killed before its config was written: the run starts over and writes it
    saved = runs.load_run_config(run_dir)
    if not runs.config_diff(saved, cfg):
        return
    problem = runs.extension_problem(saved, cfg)
    if problem is None and epoch == 0 and (run_dir / runs.RESULTS).exists():
        problem = f"it has no saved training state ({runs.LAST_STATE}) to continue from"
    if problem is not None:
        raise TrainingError(f"cannot continue {run_dir} as the run asked for: {problem}")
    kept = runs.adopt_extension(run_dir, cfg, epoch)
    _say(
        f"{run_dir}: trained further after epoch {epoch} ({'; '.join(runs.config_diff(saved, cfg))}"
        f"); what it had before is in {kept}",
        quiet,
    )


def resume(
    run_dir: Path,
    *,
    epochs: int | None = None,
    patience: int | None = None,
    progress: bool | None = None,
    quiet: bool = False,
) -> TrainResult:
    """Continue a killed run from its last completed epoch (same folder, same config), or train
    a run further: with a larger ``epochs`` and/or ``patience`` a finished run (or a killed
    one) continues from its saved state and ends exactly as a run started with those settings
    would (:func:`seqrec.runs.extension_problem` says why this is exact and when it is
    refused). Its earlier config and results are kept in ``extensions/from-epoch-<N>/``.
    Refused while a sweep is training the run (it holds the run's lock,
    :func:`seqrec.runs.claim`)."""
    run_dir = Path(run_dir)
    cfg = runs.load_run_config(run_dir)
    if epochs is not None or patience is not None:
        longer = replace(
            cfg.train,
            epochs=cfg.train.epochs if epochs is None else epochs,
            patience=cfg.train.patience if patience is None else patience,
        )
        wanted = validate(replace(cfg, train=longer))
        problem = runs.extension_problem(cfg, wanted)
        if problem is not None:
            raise TrainingError(f"cannot train {run_dir} further: {problem}")
        changed = bool(runs.config_diff(cfg, wanted))
        cfg = wanted
    else:
        changed = False
    if (run_dir / runs.RESULTS).exists() and not changed:
        raise TrainingError(
            f"run {run_dir} is already finished (it has {runs.RESULTS}); to train it further, "
            f"give a larger --epochs (now {cfg.train.epochs}) or --patience (now "
            f"{cfg.train.patience})"
        )
    with runs.claim(run_dir.parent, run_dir.name) as mine:
        if not mine:
            raise TrainingError(
                f"run {run_dir} is being trained by a sweep (it holds "
                f"{run_dir.parent / runs.LOCKS / (run_dir.name + '.lock')}); let that sweep "
                "finish it, or stop it and resume then"
            )
        return fit(cfg, progress=progress, quiet=quiet, resume_dir=run_dir)
