"""Named datasets: an explicit registry, file lookup/download with checksums, and loading.

``resolve(name)`` looks for ``<data_dir>/<relpath>`` then ``<data_dir>/<basename>`` (each also
with ``.gz``), where ``data_dir`` is the argument or ``$SEQREC_DATA_DIR``. A present file whose
sha256 differs from the registry's only gets a warning (it may be the user's own version). A
missing file is downloaded from the spec's URL (short timeout, temp file, checksum, atomic move
into ``data_dir``; a downloaded file with the wrong checksum is deleted and an error). Set
``SEQREC_OFFLINE=1`` to never download. Without a data_dir, downloads go to
``~/.cache/seqrec/datasets``.

Named datasets are used exactly as the papers use them: no k-core unless the config asks.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seqrec.config import DataConfig, suggest
from seqrec.data import cache
from seqrec.data.preprocess import prepare
from seqrec.data.readers import Interactions, read_interactions
from seqrec.data.sequences import Sequences, Vocabulary
from seqrec.data.synthetic import generate
from seqrec.errors import DataError

DOWNLOAD_TIMEOUT = 15.0  # seconds per network operation

_S3REC = "https://raw.githubusercontent.com/RUCAIBox/CIKM2020-S3Rec/master/data/"
_S3REC_CITE = (
    "Zhou et al. S3-Rec: Self-Supervised Learning for Sequential Recommendation with Mutual "
    "Information Maximization. CIKM 2020. Data: McAuley et al. SIGIR 2015 (Amazon), Yelp, "
    "HetRec 2011 (Last.fm)."
)
_ML_CITE = "Harper & Konstan. The MovieLens Datasets: History and Context. ACM TiiS 5(4), 2015."


@dataclass(frozen=True)
class DatasetSpec:
    """One named dataset.

    relpath: where the file sits under the data folder. format/sep/columns: how to read it.
    url: best-known public source of exactly this file (None: none known). sha256: of the file
    we verified (None: unverified). expected: (users, items, interactions) after reading,
    from our copy or, where marked in ``note``, from the paper.
    """

    name: str
    relpath: str
    format: str
    url: str | None
    sha256: str | None
    citation: str
    sep: str | None = None
    user_col: str = "user"
    item_col: str = "item"
    time_col: str | None = None
    metadata: str | None = None  # relpath of an item-metadata file (titles, ...)
    expected: tuple[int, int, int] | None = None
    note: str = ""


DATASETS: dict[str, DatasetSpec] = {
    "beauty": DatasetSpec(
        name="beauty",
        relpath="s3rec/Beauty.txt",
        format="user-lines",
        url=_S3REC + "Beauty.txt",
        sha256="226cce9c3105299ca0db9615d7d3fb32b3175e90da43100ae352599f0f0107b8",
        citation=_S3REC_CITE,
        expected=(22363, 12101, 198502),
        note="Amazon 2014 Beauty, 5-core, S3-Rec preprocessing",
    ),
    "sports": DatasetSpec(
        name="sports",
        relpath="s3rec/Sports_and_Outdoors.txt",
        format="user-lines",
        url=_S3REC + "Sports_and_Outdoors.txt",
        sha256=None,
        citation=_S3REC_CITE,
        expected=(35598, 18357, 296337),
        note="checksum unverified (file not in our copy); counts from the S3-Rec paper",
    ),
    "toys": DatasetSpec(
        name="toys",
        relpath="s3rec/Toys_and_Games.txt",
        format="user-lines",
        url=_S3REC + "Toys_and_Games.txt",
        sha256=None,
        citation=_S3REC_CITE,
        expected=(19412, 11924, 167597),
        note="checksum unverified (file not in our copy); counts from the S3-Rec paper",
    ),
    "yelp": DatasetSpec(
        name="yelp",
        relpath="s3rec/Yelp.txt",
        format="user-lines",
        url=_S3REC + "Yelp.txt",
        sha256="724b219106b81dd2349027da997334ddb6da9fe2f152ad6e0d97a93170f7caed",
        citation=_S3REC_CITE,
        expected=(30431, 20033, 316354),
        note="has repeated user-item pairs: evaluate with care when masking history",
    ),
    "lastfm": DatasetSpec(
        name="lastfm",
        relpath="s3rec/LastFM.txt",
        format="user-lines",
        url=_S3REC + "LastFM.txt",
        sha256="9ded486adb5b0fe9dc761950afa0a9a05e93ff018992e0c52bf11afec529f802",
        citation=_S3REC_CITE,
        expected=(1090, 3646, 52551),
    ),
    "ml-1m": DatasetSpec(
        name="ml-1m",
        relpath="ml-1m/ml-1m.txt",
        format="pairs",
        url="https://raw.githubusercontent.com/kang205/SASRec/master/data/ml-1m.txt",
        sha256="b725f3acb3986fe3130bffd1e77a74d182a1f51799567a236dbd60270f95b0a2",
        citation="Kang & McAuley. Self-Attentive Sequential Recommendation. ICDM 2018. " + _ML_CITE,
        metadata="ml-1m/movies.dat",
        expected=(6040, 3416, 999611),
        note="SASRec's remapped MovieLens-1M; movies.dat uses the original MovieLens ids",
    ),
    "ml-100k": DatasetSpec(
        name="ml-100k",
        relpath="ml-100k/u.data",
        format="log",
        url="https://files.grouplens.org/datasets/movielens/ml-100k/u.data",
        sha256="06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
        citation=_ML_CITE,
        sep="\t",
        user_col="0",
        item_col="1",
        time_col="3",
        metadata="ml-100k/u.item",
        expected=(943, 1682, 100000),
        note="raw GroupLens log (also inside ml-100k.zip on grouplens.org)",
    ),
    "gowalla-sample": DatasetSpec(
        name="gowalla-sample",
        relpath="gowalla-sample/Gowalla_checkins.txt",
        format="log",
        url=None,
        sha256="24fd30e965b5f155bf5c291c34382dfc533c8e29c07a373fc21fbc05a989455e",
        citation="Cho, Myers & Leskovec. Friendship and Mobility. KDD 2011 (SNAP loc-gowalla); "
        "Liu et al. An Experimental Evaluation of Point-of-interest Recommendation in "
        "Location-based Social Networks. VLDB 2017.",
        sep="\t",
        user_col="0",
        item_col="1",
        time_col="2",
        expected=(1000, 24209, 157251),
        note="a 1,000-user sample with no public download; the full data is "
        "https://snap.stanford.edu/data/loc-gowalla.html (another format)",
    ),
}


@dataclass(frozen=True)
class PreparedDataset:
    """A dataset ready to split: sequences, vocabulary, and where it came from."""

    name: str
    sequences: Sequences
    vocab: Vocabulary
    source: str | None  # file path, or "synthetic"
    metadata_path: Path | None = None


def _spec(name: str) -> DatasetSpec:
    key = name.lower()
    if key not in DATASETS:
        raise DataError(
            f"unknown dataset '{name}'{suggest(key, list(DATASETS))}; named datasets: "
            f"{', '.join(DATASETS)} (or give a file path, or 'synthetic')"
        )
    return DATASETS[key]


def data_dir_from(data_dir: str | Path | None) -> Path | None:
    """The data folder: the argument, else ``$SEQREC_DATA_DIR``, else None."""
    if data_dir is not None and str(data_dir).strip():
        return Path(data_dir).expanduser()
    env = os.environ.get("SEQREC_DATA_DIR", "").strip()
    return Path(env).expanduser() if env else None


def _candidates(folder: Path, relpath: str) -> list[Path]:
    rel = Path(relpath)
    out = [folder / rel, folder / rel.name]
    return out + [p.with_name(p.name + ".gz") for p in out]


def _find(folder: Path | None, relpath: str) -> Path | None:
    if folder is None:
        return None
    return next((p for p in _candidates(folder, relpath) if p.is_file()), None)


def download(
    url: str, dest: Path, sha256: str | None, *, timeout: float = DOWNLOAD_TIMEOUT
) -> Path:
    """Download ``url`` to ``dest`` atomically, verifying ``sha256`` when given.

    Raises DataError on any failure; a file with the wrong checksum is deleted.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    h = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            while block := resp.read(1 << 20):
                h.update(block)
                out.write(block)
        if sha256 is not None and h.hexdigest() != sha256:
            raise DataError(
                f"the downloaded file's sha256 is {h.hexdigest()}, expected {sha256}; "
                "it was deleted"
            )
        os.replace(tmp, dest)
    except DataError:
        raise
    except (OSError, ValueError) as exc:  # URLError and timeouts are OSErrors
        raise DataError(f"download failed: {exc}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def _missing_message(spec: DatasetSpec, folder: Path | None, why: str) -> str:
    where = (
        f"put {Path(spec.relpath).name} at {folder / spec.relpath}"
        if folder is not None
        else f"put {Path(spec.relpath).name} at <data_dir>/{spec.relpath} and pass --data-dir "
        "or set SEQREC_DATA_DIR"
    )
    source = f"get it from {spec.url}" if spec.url else f"no public download is known ({spec.note})"
    return f"dataset '{spec.name}' not found: {where}; {source}. {why}".strip()


def resolve(name: str, data_dir: str | Path | None = None) -> Path:
    """The local path of a named dataset's file, downloading it if it is missing (see module
    docstring). Raises DataError saying which file to put where if that fails."""
    spec = _spec(name)
    folder = data_dir_from(data_dir)
    found = _find(folder, spec.relpath)
    if found is not None:
        if spec.sha256 is not None and found.suffix != ".gz":
            digest = cache.file_sha256(found)
            if digest != spec.sha256:
                warnings.warn(
                    f"{found}: sha256 {digest} differs from the registered {spec.sha256} for "
                    f"'{spec.name}'; using it anyway (results may not match published numbers)",
                    stacklevel=2,
                )
        return found
    if spec.url is None:
        raise DataError(_missing_message(spec, folder, ""))
    if os.environ.get("SEQREC_OFFLINE", "").strip() not in ("", "0"):
        raise DataError(_missing_message(spec, folder, "(SEQREC_OFFLINE is set: no download)"))
    target_dir = folder if folder is not None else Path.home() / ".cache" / "seqrec" / "datasets"
    if folder is None:
        found = _find(target_dir, spec.relpath)
        if found is not None:
            return found
    try:
        return download(spec.url, target_dir / spec.relpath, spec.sha256)
    except DataError as exc:
        raise DataError(_missing_message(spec, folder, f"({exc})")) from None


def metadata_path(name: str, data_dir: str | Path | None = None) -> Path | None:
    """The named dataset's item-metadata file if it is present locally (never downloaded)."""
    spec = _spec(name)
    if spec.metadata is None:
        return None
    folder = data_dir_from(data_dir)
    found = _find(folder, spec.metadata)
    if found is None:
        data_file = _find(folder, spec.relpath)
        sibling = None if data_file is None else data_file.parent / Path(spec.metadata).name
        found = sibling if sibling is not None and sibling.is_file() else None
    return found


def _load_file(
    path: Path,
    *,
    format: str,
    sep: str | None,
    user_col: str,
    item_col: str,
    time_col: str | None,
    cfg: DataConfig,
) -> tuple[Sequences, Vocabulary]:
    options = {
        "format": format, "sep": sep, "user_col": user_col, "item_col": item_col,
        "time_col": time_col, "min_user_interactions": cfg.min_user_interactions,
        "min_item_interactions": cfg.min_item_interactions,
        "dedupe_consecutive": cfg.dedupe_consecutive,
    }  # fmt: skip

    def build() -> tuple[Sequences, Vocabulary]:
        inter = read_interactions(
            path, format=format, sep=sep, user_col=user_col, item_col=item_col, time_col=time_col
        )
        try:
            return prepare(
                inter,
                min_user_interactions=cfg.min_user_interactions,
                min_item_interactions=cfg.min_item_interactions,
                dedupe_consecutive=cfg.dedupe_consecutive,
            )
        except DataError as exc:
            raise DataError(exc.reason, path=path) from None

    return cache.cached_prepare(path, options, build)


def _synthetic(cfg: DataConfig) -> PreparedDataset:
    seqs = generate(cfg.synthetic_users, cfg.synthetic_items, seed=cfg.synthetic_seed)
    vocab = Vocabulary(
        users=tuple(map(str, range(seqs.n_users))),
        items=tuple(map(str, range(1, seqs.n_items + 1))),
    )
    if cfg.min_user_interactions or cfg.min_item_interactions or cfg.dedupe_consecutive:
        row = np.repeat(np.arange(seqs.n_users, dtype=np.int64), seqs.lengths())
        seqs, vocab = prepare(
            Interactions(users=row, items=seqs.items, timestamps=seqs.timestamps),
            min_user_interactions=cfg.min_user_interactions,
            min_item_interactions=cfg.min_item_interactions,
            dedupe_consecutive=cfg.dedupe_consecutive,
        )
    return PreparedDataset(name="synthetic", sequences=seqs, vocab=vocab, source="synthetic")


def load_dataset(cfg: DataConfig) -> PreparedDataset:
    """Load and prepare ``cfg.dataset``: "synthetic", a registered name, or a file path
    (read with cfg.format/sep/columns). Prepared files go through :mod:`seqrec.data.cache`."""
    name = cfg.dataset
    if name == "synthetic":
        return _synthetic(cfg)
    if name.lower() in DATASETS:
        spec = DATASETS[name.lower()]
        path = resolve(spec.name, cfg.data_dir)
        seqs, vocab = _load_file(
            path, format=spec.format, sep=spec.sep, user_col=spec.user_col,
            item_col=spec.item_col, time_col=spec.time_col, cfg=cfg,
        )  # fmt: skip
        return PreparedDataset(
            name=spec.name, sequences=seqs, vocab=vocab, source=str(path),
            metadata_path=metadata_path(spec.name, cfg.data_dir),
        )  # fmt: skip
    path = Path(name).expanduser()
    if not path.is_file():
        raise DataError(
            f"'{name}' is neither a named dataset{suggest(name.lower(), list(DATASETS))} nor an "
            f"existing file; named datasets: {', '.join(DATASETS)}, synthetic"
        )
    seqs, vocab = _load_file(
        path, format=cfg.format, sep=cfg.sep, user_col=cfg.user_col, item_col=cfg.item_col,
        time_col=cfg.time_col, cfg=cfg,
    )  # fmt: skip
    return PreparedDataset(name=path.stem, sequences=seqs, vocab=vocab, source=str(path))
