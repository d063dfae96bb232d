"""A cache of prepared datasets, keyed by the source file's content and every option.

An entry is ``<key>.npz`` (offsets, items, n_items, timestamps) plus ``<key>.vocab.json`` in
``$SEQREC_CACHE_DIR`` (default ``~/.cache/seqrec``). The key is the sha256 of a JSON document
holding the file's sha256 (read in 1 MiB blocks), the cache format version and all reader and
preprocessing options, so editing the file or changing an option gives a new entry. Both files
are written atomically (vocabulary first, npz last: the npz marks a complete entry). An entry
that cannot be read or does not match itself is ignored (with a warning) and rebuilt. Set
``SEQREC_CACHE_DIR`` to an empty string to turn the cache off.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from seqrec.data.sequences import Sequences, Vocabulary
from seqrec.io import atomic_write

CACHE_VERSION = 1
_BLOCK = 1 << 20


def cache_dir() -> Path | None:
    """The cache folder, or None when caching is turned off (``SEQREC_CACHE_DIR=""``)."""
    env = os.environ.get("SEQREC_CACHE_DIR")
    if env is not None:
        return Path(env).expanduser() if env.strip() else None
    return Path.home() / ".cache" / "seqrec"


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            h.update(block)
    return h.hexdigest()


def cache_key(content_sha256: str, options: dict[str, Any]) -> str:
    """Key of an entry: sha256 of the content hash, the cache version and sorted options."""
    doc = json.dumps(
        {"version": CACHE_VERSION, "sha256": content_sha256, "options": options},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(doc.encode()).hexdigest()[:32]


def _paths(folder: Path, key: str) -> tuple[Path, Path]:
    return folder / f"{key}.npz", folder / f"{key}.vocab.json"


def load_entry(folder: Path, key: str) -> tuple[Sequences, Vocabulary] | None:
    """The cached entry, or None if it is missing or unusable (corrupt entries are warned about)."""
    npz_path, vocab_path = _paths(folder, key)
    if not npz_path.exists():
        return None
    try:
        with np.load(npz_path, allow_pickle=False) as z:
            offsets = z["offsets"].astype(np.int64)
            items = z["items"].astype(np.int64)
            n_items = int(z["n_items"])
            timestamps = z["timestamps"] if "timestamps" in z.files else None
        vocab = Vocabulary.load(vocab_path)
        ok = (
            offsets.ndim == 1
            and len(offsets) >= 1
            and offsets[0] == 0
            and offsets[-1] == len(items)
            and bool(np.all(np.diff(offsets) >= 0))
            and len(vocab.users) == len(offsets) - 1
            and len(vocab.items) == n_items
            and (len(items) == 0 or (items.min() >= 1 and items.max() <= n_items))
            and (timestamps is None or len(timestamps) == len(items))
        )
        if not ok:
            raise ValueError("inconsistent arrays")
    except Exception as exc:  # any damage means: rebuild
        warnings.warn(
            f"ignoring a damaged cache entry {npz_path} ({type(exc).__name__}: {exc}); rebuilding",
            stacklevel=2,
        )
        return None
    return Sequences(offsets=offsets, items=items, n_items=n_items, timestamps=timestamps), vocab


def store_entry(folder: Path, key: str, seqs: Sequences, vocab: Vocabulary) -> None:
    """Write an entry atomically (vocabulary first, then the npz that marks it complete)."""
    npz_path, vocab_path = _paths(folder, key)
    folder.mkdir(parents=True, exist_ok=True)
    vocab.save(vocab_path)
    arrays: dict[str, np.ndarray] = {
        "offsets": seqs.offsets,
        "items": seqs.items,
        "n_items": np.asarray(seqs.n_items, dtype=np.int64),
    }
    if seqs.timestamps is not None:
        arrays["timestamps"] = seqs.timestamps

    def _write(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to a name
            np.savez(f, **arrays)

    atomic_write(npz_path, _write)


def cached_prepare(
    path: str | Path,
    options: dict[str, Any],
    build: Callable[[], tuple[Sequences, Vocabulary]],
) -> tuple[Sequences, Vocabulary]:
    """``build()``'s result for this file content and options, from the cache when possible.

    A cache folder that cannot be written only costs a warning: the data is still returned.
    """
    folder = cache_dir()
    if folder is None:
        return build()
    key = cache_key(file_sha256(path), options)
    hit = load_entry(folder, key)
    if hit is not None:
        return hit
    seqs, vocab = build()
    try:
        store_entry(folder, key, seqs, vocab)
    except OSError as exc:
        warnings.warn(f"cannot write the dataset cache in {folder}: {exc}", stacklevel=2)
    return seqs, vocab
