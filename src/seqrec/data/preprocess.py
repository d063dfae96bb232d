"""Interactions -> per-user chronological sequences with compact ids (vectorised, no Python loop
per interaction).

Steps of :func:`prepare`, in order:

1. **order**: each user's interactions sorted by timestamp; ties (and files without timestamps)
   keep file order (a stable sort).
2. **dedupe** (optional): drop an interaction whose item equals the user's previous item.
3. **k-core** (optional): repeatedly drop users with fewer than ``min_user_interactions`` and
   items with fewer than ``min_item_interactions`` interactions until nothing changes (one pass
   is not enough: dropping a user can push an item under its threshold and vice versa). With
   dedupe on, dedupe is re-applied inside the loop, so the result is a fixed point of both.
4. **remap**: items -> ``1..C`` and users -> ``0..U-1`` in ascending raw-id order: numeric when
   every raw id is an integer (so already remapped files such as S3-Rec's keep their ids), else
   lexicographic.
"""

from __future__ import annotations

import numpy as np

from seqrec.data.readers import Interactions
from seqrec.data.sequences import Sequences, Vocabulary
from seqrec.errors import DataError

_INT_RE = r"^(0|-?[1-9][0-9]{0,17})$"


def _as_ids(raw: np.ndarray) -> np.ndarray:
    """int64 if every raw id is an integer (incl. integer strings, no leading zeros), else str."""
    raw = np.asarray(raw)
    if raw.dtype.kind in "iu":
        return raw.astype(np.int64)
    if raw.dtype.kind == "b":
        return raw.astype(np.int64)
    text = raw.astype(str)
    if len(text) == 0:
        return np.zeros(0, dtype=np.int64)
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = pa.array(text)
    if pc.all(pc.match_substring_regex(arr, _INT_RE)).as_py():
        return pc.cast(arr, pa.int64()).to_numpy(zero_copy_only=False)
    return text


def _order(user_codes: np.ndarray, timestamps: np.ndarray | None) -> np.ndarray:
    """Permutation grouping users (ascending code) and sorting each by time; stable."""
    if timestamps is None:
        return np.argsort(user_codes, kind="stable")
    return np.lexsort((np.arange(len(user_codes)), timestamps, user_codes))


def _dedupe_mask(users: np.ndarray, items: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Among kept rows (already grouped by user, in order): False where the item repeats the
    previous kept item of the same user."""
    idx = np.flatnonzero(keep)
    u, it = users[idx], items[idx]
    rep = np.zeros(len(idx), dtype=bool)
    rep[1:] = (u[1:] == u[:-1]) & (it[1:] == it[:-1])
    out = keep.copy()
    out[idx[rep]] = False
    return out


def k_core_mask(
    users: np.ndarray,
    items: np.ndarray,
    *,
    min_user: int,
    min_item: int,
    dedupe_consecutive: bool = False,
    keep: np.ndarray | None = None,
) -> np.ndarray:
    """bool[N]: the rows that survive iterative k-core (and dedupe) filtering, a fixed point.

    ``users``/``items`` are non-negative integer codes; with ``dedupe_consecutive`` rows must be
    grouped by user in chronological order.
    """
    keep = np.ones(len(users), dtype=bool) if keep is None else keep.copy()
    n_users = int(users.max()) + 1 if len(users) else 0
    n_items = int(items.max()) + 1 if len(items) else 0
    while True:
        before = int(keep.sum())
        if dedupe_consecutive:
            keep = _dedupe_mask(users, items, keep)
        if min_user > 0:
            cu = np.bincount(users[keep], minlength=n_users)
            keep &= cu[users] >= min_user
        if min_item > 0:
            ci = np.bincount(items[keep], minlength=n_items)
            keep &= ci[items] >= min_item
        if int(keep.sum()) == before:
            return keep


def prepare(
    inter: Interactions,
    *,
    min_user_interactions: int = 0,
    min_item_interactions: int = 0,
    dedupe_consecutive: bool = False,
) -> tuple[Sequences, Vocabulary]:
    """Order, dedupe, k-core filter and remap interactions (steps in the module docstring).

    Returns the CSR sequences (items ``1..C``, user rows ``0..U-1``, timestamps carried along)
    and the vocabulary mapping indices back to raw ids (as strings).
    Raises DataError if nothing is left.
    """
    n = len(inter.users)
    if len(inter.items) != n or (inter.timestamps is not None and len(inter.timestamps) != n):
        raise DataError("users, items and timestamps must have the same length")
    if n == 0:
        raise DataError("there are no interactions")
    ts = None if inter.timestamps is None else np.asarray(inter.timestamps)
    if ts is not None and ts.dtype.kind == "f" and np.isnan(ts).any():
        raise DataError("some timestamps are NaN; fix or drop those rows")

    user_raw, user_code = np.unique(_as_ids(inter.users), return_inverse=True)
    item_raw, item_code = np.unique(_as_ids(inter.items), return_inverse=True)
    user_code = user_code.reshape(-1).astype(np.int64)
    item_code = item_code.reshape(-1).astype(np.int64)

    order = _order(user_code, ts)
    user_code, item_code = user_code[order], item_code[order]
    ts = None if ts is None else ts[order]

    keep = k_core_mask(
        user_code,
        item_code,
        min_user=min_user_interactions,
        min_item=min_item_interactions,
        dedupe_consecutive=dedupe_consecutive,
    )
    if not keep.any():
        raise DataError(
            f"no interactions left after filtering (min_user_interactions="
            f"{min_user_interactions}, min_item_interactions={min_item_interactions}, "
            f"dedupe_consecutive={dedupe_consecutive}); lower the thresholds"
        )
    user_code, item_code = user_code[keep], item_code[keep]
    ts = None if ts is None else ts[keep]

    # remap the survivors; codes are ranks of sorted raw ids, so np.unique keeps raw-id order
    kept_users, user_row = np.unique(user_code, return_inverse=True)
    kept_items, item_idx = np.unique(item_code, return_inverse=True)
    user_row = user_row.reshape(-1)
    offsets = np.zeros(len(kept_users) + 1, dtype=np.int64)
    np.cumsum(np.bincount(user_row, minlength=len(kept_users)), out=offsets[1:])
    seqs = Sequences(
        offsets=offsets,
        items=item_idx.reshape(-1).astype(np.int64) + 1,
        n_items=len(kept_items),
        timestamps=ts,
    )
    vocab = Vocabulary(
        users=tuple(user_raw[kept_users].astype(str).tolist()),
        items=tuple(item_raw[kept_items].astype(str).tolist()),
    )
    return seqs, vocab
