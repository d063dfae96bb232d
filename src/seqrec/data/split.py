"""Train / valid / test splits of prepared sequences (vectorised CSR slicing).

**leave-one-out** (SASRec, Kang & McAuley 2018; the protocol of every paper in
``shared/papers``): for a user with items ``s_1..s_n`` (n >= 3) train on ``s_1..s_{n-2}``;
validation predicts ``s_{n-1}`` from ``s_1..s_{n-2}``; test predicts ``s_n`` from
``s_1..s_{n-1}``. Users with fewer than 3 items keep all their items in train and are in no
evaluation set (as in SASRec's ``data_partition``).

**temporal**: global cut points ``t_v`` and ``t_t`` are the ``valid_quantile`` and
``test_quantile`` quantiles of all timestamps. Train keeps every interaction with time
``< t_v``. A user's validation example is their first item with time in ``[t_v, t_t)``, its
inputs everything before it in the sequence; the test example is their first item with time
``>= t_t``, its inputs everything before it (so it includes the user's validation-period items).
Examples with an empty input history are dropped (a model needs at least one item).
"""

from __future__ import annotations

import numpy as np

from seqrec.config import DataConfig
from seqrec.data.sequences import EvalSet, Sequences, Split
from seqrec.errors import ConfigError, DataError


def _positions(seqs: Sequences) -> tuple[np.ndarray, np.ndarray]:
    """(row of every interaction, its 0-based position in the row)."""
    lengths = seqs.lengths()
    row = np.repeat(np.arange(seqs.n_users, dtype=np.int64), lengths)
    pos = np.arange(seqs.n_interactions, dtype=np.int64) - seqs.offsets[row]
    return row, pos


def select(seqs: Sequences, keep: np.ndarray) -> Sequences:
    """Keep the interactions where ``keep`` (bool[nnz]) is True; every row stays (maybe empty)."""
    row, _ = _positions(seqs)
    offsets = np.zeros(seqs.n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(row[keep], minlength=seqs.n_users), out=offsets[1:])
    return Sequences(
        offsets=offsets,
        items=seqs.items[keep],
        n_items=seqs.n_items,
        timestamps=None if seqs.timestamps is None else seqs.timestamps[keep],
    )


def prefixes(seqs: Sequences, rows: np.ndarray, lengths: np.ndarray) -> Sequences:
    """A new Sequences whose row ``j`` is the first ``lengths[j]`` items of row ``rows[j]``."""
    rows = np.asarray(rows, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    within = np.arange(offsets[-1], dtype=np.int64) - np.repeat(offsets[:-1], lengths)
    src = np.repeat(seqs.offsets[rows], lengths) + within
    return Sequences(
        offsets=offsets,
        items=seqs.items[src],
        n_items=seqs.n_items,
        timestamps=None if seqs.timestamps is None else seqs.timestamps[src],
    )


def _eval_set(seqs: Sequences, users: np.ndarray, target_pos: np.ndarray) -> EvalSet:
    """Examples predicting item ``target_pos[j]`` of row ``users[j]`` from the items before it."""
    users = np.asarray(users, dtype=np.int64)
    target_pos = np.asarray(target_pos, dtype=np.int64)
    return EvalSet(
        inputs=prefixes(seqs, users, target_pos),
        targets=seqs.items[seqs.offsets[users] + target_pos].astype(np.int64),
        users=users,
    )


def leave_one_out(seqs: Sequences) -> Split:
    """Leave-one-out split (definition in the module docstring)."""
    lengths = seqs.lengths()
    row, pos = _positions(seqs)
    n = lengths[row]
    train = select(seqs, (n < 3) | (pos < n - 2))
    users = np.flatnonzero(lengths >= 3).astype(np.int64)
    valid = _eval_set(seqs, users, lengths[users] - 2)
    test = _eval_set(seqs, users, lengths[users] - 1)
    return Split(train=train, valid=valid, test=test, protocol="leave-one-out")


def _first_per_user(
    row: np.ndarray, pos: np.ndarray, mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each user with a True in ``mask``: (user, position of its first True)."""
    idx = np.flatnonzero(mask)
    users, first = np.unique(row[idx], return_index=True)
    return users.astype(np.int64), pos[idx[first]]


def temporal_split(
    seqs: Sequences, *, valid_quantile: float = 0.8, test_quantile: float = 0.9
) -> Split:
    """Global-time split (definition in the module docstring)."""
    if seqs.timestamps is None:
        raise DataError(
            "the temporal split needs timestamps, but this dataset only has an order; "
            "use --split leave-one-out, or a log file with a time column (--time-col)"
        )
    if not 0 < valid_quantile < test_quantile < 1:
        raise ConfigError(
            "temporal split needs 0 < valid_quantile < test_quantile < 1, "
            f"got {valid_quantile} and {test_quantile}"
        )
    ts = np.asarray(seqs.timestamps)
    if len(ts) == 0:
        raise DataError("the dataset has no interactions to split")
    t_valid, t_test = np.quantile(ts, [valid_quantile, test_quantile])
    row, pos = _positions(seqs)
    train = select(seqs, ts < t_valid)
    vu, vp = _first_per_user(row, pos, (ts >= t_valid) & (ts < t_test))
    tu, tp = _first_per_user(row, pos, ts >= t_test)
    valid = _eval_set(seqs, vu[vp > 0], vp[vp > 0])
    test = _eval_set(seqs, tu[tp > 0], tp[tp > 0])
    return Split(train=train, valid=valid, test=test, protocol="temporal")


def make_split(seqs: Sequences, cfg: DataConfig) -> Split:
    """The split ``cfg.split`` names ("leave-one-out" or "temporal")."""
    if cfg.split == "leave-one-out":
        return leave_one_out(seqs)
    if cfg.split == "temporal":
        return temporal_split(
            seqs, valid_quantile=cfg.valid_quantile, test_quantile=cfg.test_quantile
        )
    raise ConfigError(f"data.split must be leave-one-out or temporal, got '{cfg.split}'")
