"""RecBole side of benchmarks/speed_vs_recbole.py; runs inside the throwaway RecBole venv.

Not part of seqrec and never imported by it: ``speed_vs_recbole.py`` starts it as
``<recbole-venv>/bin/python _recbole_runner.py SPEC.json`` in a fresh process. SPEC.json says
what to do (all keys are written by ``speed_vs_recbole.py``):

- ``mode = "check"``: load and split the exported data exactly as the timed run does, then write
  ``check_out`` (JSON): the counts and a sha256 digest of every train / valid / test example,
  for the parent to compare with seqrec's split. Nothing is trained.
- ``mode = "train"``: train SASRec for up to ``epochs`` epochs with RecBole's own
  ``Trainer._train_epoch`` and evaluate on the validation users after every epoch with
  ``Trainer.evaluate`` (the calls ``Trainer.fit`` makes, minus checkpoint saving), appending
  one JSON line per event to ``progress``: a "ready" line when training starts, then one line
  per epoch with ``epoch_seconds``, ``eval_seconds`` and the valid metrics. Every line carries
  ``t``: seconds since ``launch_time`` (the parent's clock when it started this process).

RecBole 1.2.1 quirks handled here (none of RecBole's files is changed):

- RecBole's full-ranking evaluation of *sequential* models masks nothing (its
  ``FullSortEvalDataLoader.collate_fn`` returns ``history_index=None`` for them), while seqrec
  removes the user's history from the ranking. The validation loader's ``collate_fn`` is
  wrapped to return the user's whole history (every item before the target, as seqrec), minus
  the target itself, which seqrec never masks either; RecBole's trainer then sets those scores to
  -inf as it does for general models.
- ``torch.load`` defaults to ``weights_only=True`` since torch 2.6 and RecBole's checkpoints
  hold a pickled Config: ``torch.load`` is wrapped to default to ``weights_only=False`` (only
  RecBole's own files are ever loaded).
- Importing any RecBole sequential model imports the whole ``sequential_recommender`` package,
  whose ``sine.py`` calls ``torch.autograd.set_detect_anomaly(True)`` at import time: every
  RecBole 1.2.1 sequential model, SASRec included, trains with autograd's anomaly detection on
  (a debugging mode that more than doubled the time of a training step here). With
  ``anomaly_detection = false`` in SPEC.json (the benchmark's default) the runner turns it off
  again after the import; ``true`` keeps RecBole's shipped behaviour.
- RecBole's ``Config`` parses ``sys.argv`` for ``--key=value`` overrides: the runner clears
  its arguments after reading SPEC.json.
- RecBole 1.2.1 aliases ``np.float_`` and friends, removed in numpy 2: the venv pins numpy<2;
  and it fills missing values with ``df[col].fillna(..., inplace=True)``, a silent no-op under
  pandas 3's copy-on-write: the venv pins pandas<3.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch


def _patch_torch_load() -> None:
    """Default ``weights_only=False`` as torch < 2.6 did (RecBole pickles its Config)."""
    original = torch.load

    @functools.wraps(original)
    def load(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("weights_only", False)
        return original(*args, **kwargs)

    torch.load = load


def _user_sequences(dataset: Any) -> tuple[np.ndarray, np.ndarray]:
    """CSR (offsets int64[U + 1], items int64[nnz]) of every user's items in time order, in
    RecBole's internal ids, from the dataset's interactions before augmentation and split."""
    feat = dataset.inter_feat  # a pandas DataFrame until build()
    users = np.asarray(feat[dataset.uid_field], dtype=np.int64)
    items = np.asarray(feat[dataset.iid_field], dtype=np.int64)
    times = np.asarray(feat[dataset.time_field], dtype=np.float64)
    order = np.lexsort((times, users))
    users, items = users[order], items[order]
    offsets = np.zeros(dataset.user_num + 1, dtype=np.int64)
    np.cumsum(np.bincount(users, minlength=dataset.user_num), out=offsets[1:])
    return offsets, items


def _mask_history(loader: Any, offsets: np.ndarray, items: np.ndarray, after: int) -> None:
    """Make a full-sort loader return, for each example, every item its user had before the
    target (the whole history, not only the last MAX_ITEM_LIST_LENGTH items), minus the target.

    ``after``: how many of the user's items follow the history (2 for the leave-one-out valid
    set: the valid and test targets; 1 for the test set). Each user is in a set at most once.
    """
    original = loader.collate_fn
    uid_field, iid_field = loader.uid_field, loader.iid_field

    def collate_fn(index: Any) -> Any:
        interaction, history, positive_u, positive_i = original(index)
        if history is not None:  # RecBole masked something itself: leave it alone
            return interaction, history, positive_u, positive_i
        users = interaction[uid_field].numpy().astype(np.int64)  # (b,)
        targets = interaction[iid_field].numpy().astype(np.int64)  # (b,)
        starts = offsets[users]
        n_before = offsets[users + 1] - starts - after  # (b,) history lengths
        if np.any(items[starts + n_before] != targets):
            raise RuntimeError("a target is not where the leave-one-out split puts it")
        row = np.repeat(np.arange(len(users)), n_before)  # (h,)
        within = np.arange(int(n_before.sum())) - np.repeat(
            np.cumsum(n_before) - n_before, n_before
        )
        cols = items[np.repeat(starts, n_before) + within]  # (h,) history items
        keep = cols != targets[row]  # the target is never masked (as seqrec)
        history = (torch.from_numpy(row[keep]), torch.from_numpy(cols[keep]))
        return interaction, history, positive_u, positive_i

    loader.collate_fn = collate_fn


def _digest(lines: list[str]) -> str:
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def _examples_digest(dataset: Any) -> tuple[int, str]:
    """(count, sha256) of one split's examples as "user target history..." lines in raw tokens,
    sorted by user then history length (the parent computes the same from seqrec's split)."""
    feat = dataset.inter_feat
    uid, iid = dataset.uid_field, dataset.iid_field
    users = dataset.id2token(uid, feat[uid].numpy())
    targets = dataset.id2token(iid, feat[iid].numpy())
    lengths = feat[dataset.item_list_length_field].numpy()
    hist_ids = feat[dataset.item_id_list_field].numpy()
    hist = dataset.id2token(iid, hist_ids)
    lines = []
    for u, t, n, h in zip(users, targets, lengths, hist, strict=True):
        lines.append((int(u), int(n), f"{u} {t} {' '.join(h[:n])}\n"))
    lines.sort()
    return len(lines), _digest([line for _, _, line in lines])


def _metric_name(key: str) -> str:
    """RecBole's "hit@10" is seqrec's "hr@10"; other names agree ("ndcg@10")."""
    key = key.lower()
    return "hr" + key[3:] if key.startswith("hit@") else key


def main() -> None:
    """Run the mode SPEC.json (argv[1]) asks for."""
    spec = json.loads(Path(sys.argv[1]).read_text())
    del sys.argv[1:]  # RecBole's Config reads --key=value overrides from the command line
    launch = float(spec["launch_time"])
    threads = int(spec["threads"])
    torch.set_num_threads(threads)
    _patch_torch_load()
    import recbole
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.sequential_recommender import SASRec
    from recbole.trainer import Trainer
    from recbole.utils import init_logger, init_seed

    # the import above ran recbole/model/sequential_recommender/sine.py, which switched on
    # autograd's anomaly detection for the whole process (see the module docstring)
    shipped_anomaly = torch.is_anomaly_enabled()
    torch.autograd.set_detect_anomaly(bool(spec.get("anomaly_detection", False)))

    config = Config(model="SASRec", dataset=spec["dataset"], config_dict=spec["config"])
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    torch.set_num_threads(threads)  # after RecBole's own setup, whatever it did

    dataset = create_dataset(config)
    counts = {
        "users": int(dataset.user_num - 1),  # RecBole counts its [PAD] user and item
        "items": int(dataset.item_num - 1),
        "interactions": int(dataset.inter_num),
    }
    offsets, seq_items = _user_sequences(dataset)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    counts["train_examples"] = len(train_data.dataset)
    counts["valid_examples"] = len(valid_data.dataset)
    counts["test_examples"] = len(test_data.dataset)

    if spec["mode"] == "check":
        out = {
            "recbole": recbole.__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "counts": counts,
            "digests": {
                name: _examples_digest(loader.dataset)
                for name, loader in (
                    ("train", train_data),
                    ("valid", valid_data),
                    ("test", test_data),
                )
            },
        }
        Path(spec["check_out"]).write_text(json.dumps(out, indent=2) + "\n")
        return

    _mask_history(valid_data, offsets, seq_items, after=2)
    model = SASRec(config, train_data.dataset).to(config["device"])
    trainer = Trainer(config, model)
    trainer.eval_collector.data_collect(train_data)  # as Trainer.fit does first
    progress = Path(spec["progress"])

    def emit(record: dict[str, Any]) -> None:
        record["t"] = time.time() - launch
        with progress.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())

    emit(
        {
            "event": "ready",
            "counts": counts,
            "parameters": sum(p.numel() for p in model.parameters()),
            "torch_threads": torch.get_num_threads(),
            "anomaly_detection_on_import": shipped_anomaly,
            "anomaly_detection": torch.is_anomaly_enabled(),
            "recbole": recbole.__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
        }
    )
    for epoch in range(int(spec["epochs"])):
        t0 = time.perf_counter()
        loss = trainer._train_epoch(train_data, epoch, show_progress=False)
        t1 = time.perf_counter()
        result = trainer.evaluate(valid_data, load_best_model=False, show_progress=False)
        t2 = time.perf_counter()
        emit(
            {
                "event": "epoch",
                "epoch": epoch + 1,
                "loss": float(loss) / max(len(train_data), 1),  # RecBole sums batch means
                "epoch_seconds": t1 - t0,
                "eval_seconds": t2 - t1,
                "valid": {_metric_name(k): float(v) for k, v in result.items()},
            }
        )


if __name__ == "__main__":
    main()
