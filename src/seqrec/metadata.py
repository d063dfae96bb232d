"""Item titles from a dataset's metadata file, keyed by the raw item ids of a run's vocabulary.

Two MovieLens formats are read (both ISO-8859-1):

``movies.dat`` (ML-1M)  ``id::title::genres``
``u.item``     (ML-100K) ``id|title|release date|video date|IMDb url|19 genre flags``

Whether titles can be *joined* to a run's items depends on whether the interaction file keeps
the metadata's ids. What we found by inspecting the files in ``../shared/data``:

* **ML-100K**: ``u.data`` uses the original GroupLens ids (1..1682), the same ids as ``u.item``,
  so titles join (every one of the 1,682 items has one).
* **ML-1M (SasRec's ml-1m.txt)**: the ids are *remapped*. They are dense, 1..3416 (GroupLens
  ML-1M has 3,706 rated movies with ids up to 3952), and they were assigned in order of first
  appearance: user 1's 79 interactions are items 1, 2, ..., 79 in that order, and user 2's
  sequence continues 80, 81, ... reusing earlier ids for movies already seen. The original ids
  are not in the file, so ``movies.dat`` (original ids) **cannot** be joined: id 1 there is
  *Toy Story*, id 1 in ml-1m.txt is whatever user 1 rated first. We give no titles rather than
  wrong ones. (Rebuilding the map would need GroupLens ``ratings.dat`` and SASRec's exact
  preprocessing script; we do not guess it.)

Any other dataset gets titles only from an explicit file (:func:`read_titles`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from seqrec.errors import DataError

ENCODING = "iso-8859-1"  # both GroupLens metadata files

# Datasets whose metadata ids are NOT the ids of the interaction file, with the reason.
UNJOINABLE: dict[str, str] = {
    "ml-1m": (
        "ml-1m.txt (SASRec's MovieLens-1M) uses remapped item ids 1..3416 assigned in order of "
        "first appearance, while movies.dat uses the original MovieLens ids; the mapping is not "
        "in the data, so titles cannot be joined"
    ),
}


@dataclass(frozen=True)
class Titles:
    """Raw item id -> title, and where they came from (``source``) or why there are none."""

    titles: dict[str, str]
    source: str | None
    note: str = ""

    def get(self, raw_id: str) -> str | None:
        return self.titles.get(raw_id)


def _detect_sep(first_line: str, path: Path) -> str:
    if "::" in first_line:
        return "::"
    if "|" in first_line:
        return "|"
    raise DataError(
        "cannot tell the metadata format: expected 'id::title::genres' (movies.dat) or "
        "'id|title|...' (u.item)",
        path=path,
        line=1,
    )


def read_titles(path: str | Path) -> dict[str, str]:
    """Read ``movies.dat`` (``id::title::genres``) or ``u.item`` (``id|title|...``) into a dict
    raw id (str) -> title. ISO-8859-1; blank lines skipped; a line without a title or a repeated
    id raises DataError naming the line."""
    path = Path(path)
    try:
        text = path.read_bytes().decode(ENCODING)
    except OSError as exc:
        raise DataError(f"cannot read the metadata file ({exc.strerror})", path=path) from None
    lines = text.splitlines()
    first = next((ln for ln in lines if ln.strip()), None)
    if first is None:
        raise DataError("the metadata file is empty", path=path)
    sep = _detect_sep(first, path)
    out: dict[str, str] = {}
    for number, line in enumerate(lines, start=1):  # metadata is read once, not a hot path
        if not line.strip():
            continue
        fields = line.split(sep, 2)
        if len(fields) < 2 or not fields[0].strip() or not fields[1].strip():
            raise DataError(
                f"expected 'id{sep}title{sep}...', got {line[:60]!r}", path=path, line=number
            )
        raw_id = fields[0].strip()
        if raw_id in out:
            raise DataError(f"item id {raw_id!r} appears twice", path=path, line=number)
        out[raw_id] = fields[1].strip()
    return out


def titles_for_dataset(
    dataset: str, data_dir: str | Path | None = None, *, items: tuple[str, ...] | None = None
) -> Titles:
    """Titles for a named dataset's items if its metadata file is present and joinable.

    ``items``: restrict to these raw ids (a run's vocabulary). Never downloads. Returns a
    :class:`Titles` with an empty dict and a ``note`` saying why when there are none.
    """
    from seqrec.data.datasets import DATASETS, metadata_path

    key = dataset.lower()
    if key in UNJOINABLE:
        return Titles({}, None, UNJOINABLE[key])
    spec = DATASETS.get(key)
    if spec is None or spec.metadata is None:
        return Titles({}, None, f"dataset '{dataset}' has no registered item metadata")
    path = metadata_path(key, data_dir)
    if path is None:
        return Titles(
            {}, None, f"{Path(spec.metadata).name} not found (set SEQREC_DATA_DIR or --data-dir)"
        )
    return restrict(Titles(read_titles(path), str(path)), items)


def titles_from_file(path: str | Path, *, items: tuple[str, ...] | None = None) -> Titles:
    """Titles from an explicit metadata file (the user asserts its ids are the run's raw ids)."""
    return restrict(Titles(read_titles(path), str(path)), items)


def restrict(titles: Titles, items: tuple[str, ...] | None) -> Titles:
    """Keep only the titles of ``items``; the note says how many items have one."""
    if items is None:
        return titles
    kept = {raw: titles.titles[raw] for raw in items if raw in titles.titles}
    note = f"{len(kept)} of {len(items)} items have a title"
    return Titles(kept, titles.source, note)
