from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from seqrec.config import DataConfig
from seqrec.data.datasets import DATASETS, load_dataset, resolve
from seqrec.data.stats import dataset_stats
from seqrec.errors import DataError

REAL = os.environ.get("SEQREC_DATA_DIR")
needs_real = pytest.mark.skipif(
    not REAL, reason="set SEQREC_DATA_DIR to the folder of real datasets (e.g. ../shared/data)"
)


def test_registry_is_complete_and_honest() -> None:
    expected = {"beauty", "sports", "toys", "yelp", "lastfm", "ml-1m", "ml-100k", "gowalla-sample"}
    assert set(DATASETS) == expected
    for name, spec in DATASETS.items():
        assert spec.name == name
        assert spec.format in ("user-lines", "pairs", "log")
        assert spec.citation
        assert spec.url is None or spec.url.startswith("https://")
        assert spec.sha256 is None or len(spec.sha256) == 64
        if spec.sha256 is None or spec.url is None:
            assert spec.note  # unverified or undownloadable: say why
    assert DATASETS["ml-1m"].metadata == "ml-1m/movies.dat"
    assert DATASETS["ml-100k"].metadata == "ml-100k/u.item"
    assert (DATASETS["ml-100k"].user_col, DATASETS["ml-100k"].item_col) == ("0", "1")
    assert DATASETS["ml-100k"].time_col == "3"


# ------------------------------------------------------------------ real data


@needs_real
@pytest.mark.parametrize("name", ["beauty", "yelp", "lastfm", "ml-1m", "ml-100k", "gowalla-sample"])
def test_real_dataset_counts(name: str) -> None:
    spec = DATASETS[name]
    path = resolve(name)
    if spec.sha256 is not None:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == spec.sha256
    prepared = load_dataset(DataConfig(dataset=name))
    s = dataset_stats(prepared.sequences)
    assert (s["users"], s["items"], s["interactions"]) == spec.expected
    assert prepared.source == str(path)


@needs_real
def test_beauty_numbers_and_ids_kept() -> None:
    p = load_dataset(DataConfig(dataset="beauty"))
    s = dataset_stats(p.sequences)
    assert (s["users"], s["items"], s["interactions"]) == (22363, 12101, 198502)
    assert abs(s["avg_length"] - 8.88) < 0.01
    # S3-Rec ids are already 1..C: remapping must keep them
    assert p.vocab.items[:5] == ("1", "2", "3", "4", "5")
    assert p.vocab.items[-1] == "12101"
    first_line = Path(resolve("beauty")).read_text().split("\n", 1)[0].split()
    assert p.sequences[0].tolist() == [int(x) for x in first_line[1:]]


@needs_real
def test_ml1m_metadata_and_yelp_repeats() -> None:
    p = load_dataset(DataConfig(dataset="ml-1m"))
    assert p.metadata_path is not None and p.metadata_path.name == "movies.dat"
    assert dataset_stats(load_dataset(DataConfig(dataset="yelp")).sequences)["repeated_pairs"] == (
        11830
    )


@needs_real
def test_ml100k_has_timestamps_for_temporal_split() -> None:
    from seqrec.data.split import make_split

    p = load_dataset(DataConfig(dataset="ml-100k"))
    assert p.sequences.timestamps is not None
    split = make_split(p.sequences, DataConfig(dataset="ml-100k", split="temporal"))
    assert len(split.test) > 0 and len(split.valid) > 0


# ------------------------------------------------------------------ resolve / download


def test_missing_file_says_what_to_put_where(tmp_path: Path) -> None:
    with pytest.raises(DataError) as exc:
        resolve("beauty", tmp_path)
    msg = str(exc.value)
    assert str(tmp_path / "s3rec" / "Beauty.txt") in msg
    assert DATASETS["beauty"].url in msg
    assert "SEQREC_OFFLINE" in msg


def test_missing_without_public_url(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no public download"):
        resolve("gowalla-sample", tmp_path)


def test_no_data_dir_message(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SEQREC_DATA_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(DataError, match="SEQREC_DATA_DIR"):
        resolve("ml-1m")


def test_unknown_name_suggests(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="did you mean 'beauty'"):
        resolve("beuaty", tmp_path)
    with pytest.raises(DataError, match="neither a named dataset"):
        load_dataset(DataConfig(dataset=str(tmp_path / "nothing.txt")))


def test_basename_in_data_dir_and_checksum_warning(tmp_path: Path) -> None:
    (tmp_path / "LastFM.txt").write_text("1 1 2 3\n")
    with pytest.warns(UserWarning, match="differs from the registered"):
        found = resolve("lastfm", tmp_path)
    assert found == tmp_path / "LastFM.txt"


@pytest.fixture
def fake_spec(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    src = tmp_path / "remote" / "Fake.txt"
    src.parent.mkdir()
    src.write_text("1 1 2 3\n2 2 3 4\n")
    digest = hashlib.sha256(src.read_bytes()).hexdigest()

    def make(sha: str | None) -> None:
        spec = dataclasses.replace(
            DATASETS["beauty"], name="fake", relpath="fake/Fake.txt", url=src.as_uri(), sha256=sha
        )
        monkeypatch.setitem(DATASETS, "fake", spec)

    monkeypatch.delenv("SEQREC_OFFLINE", raising=False)
    return make, digest


def test_download_verifies_and_moves_atomically(tmp_path: Path, fake_spec) -> None:
    make, digest = fake_spec
    make(digest)
    data_dir = tmp_path / "data"
    path = resolve("fake", data_dir)
    assert path == data_dir / "fake" / "Fake.txt"
    assert path.read_text() == "1 1 2 3\n2 2 3 4\n"
    assert [p.name for p in path.parent.iterdir()] == ["Fake.txt"]
    p = load_dataset(DataConfig(dataset="fake", data_dir=str(data_dir)))
    assert p.sequences.n_interactions == 6


def test_download_with_wrong_checksum_is_deleted(tmp_path: Path, fake_spec) -> None:
    make, _ = fake_spec
    make("0" * 64)
    data_dir = tmp_path / "data"
    with pytest.raises(DataError, match="sha256"):
        resolve("fake", data_dir)
    assert not list((data_dir / "fake").iterdir())


def test_download_failure_is_a_clear_error(tmp_path: Path, fake_spec, monkeypatch) -> None:
    make, digest = fake_spec
    make(digest)
    spec = dataclasses.replace(DATASETS["fake"], url=(tmp_path / "gone.txt").as_uri())
    monkeypatch.setitem(DATASETS, "fake", spec)
    with pytest.raises(DataError, match=r"put Fake.txt at .*fake/Fake.txt.*download failed"):
        resolve("fake", tmp_path / "data")


# ------------------------------------------------------------------ load_dataset


def test_load_file_path_with_options(tmp_path: Path) -> None:
    p = tmp_path / "log.csv"
    p.write_text("u,i,t\nb,x,2\na,x,1\nb,y,1\na,y,3\nc,z,1\n")
    cfg = DataConfig(
        dataset=str(p), user_col="u", item_col="i", time_col="t", min_item_interactions=2
    )
    prepared = load_dataset(cfg)
    assert prepared.name == "log" and prepared.source == str(p)
    assert prepared.vocab.users == ("a", "b") and prepared.vocab.items == ("x", "y")
    assert prepared.sequences[1].tolist() == [2, 1]  # b: y (t=1), x (t=2)
    assert prepared.metadata_path is None


def test_load_file_error_names_the_file(tmp_path: Path) -> None:
    p = tmp_path / "d.txt"
    p.write_text("1 2 3\n")
    with pytest.raises(DataError, match=str(p)):
        load_dataset(DataConfig(dataset=str(p), min_user_interactions=5))


def test_synthetic_dataset() -> None:
    cfg = DataConfig(dataset="synthetic", synthetic_users=50, synthetic_items=30, synthetic_seed=1)
    p = load_dataset(cfg)
    assert p.source == "synthetic" and p.name == "synthetic"
    assert p.sequences.n_users == 50 and p.sequences.n_items == 30 == len(p.vocab.items)
    again = load_dataset(cfg)
    assert np.array_equal(p.sequences.items, again.sequences.items)
    filtered = load_dataset(dataclasses.replace(cfg, min_user_interactions=20))
    assert filtered.sequences.lengths().min() >= 20
    assert len(filtered.vocab.users) == filtered.sequences.n_users


def test_stats_hand_made() -> None:
    from seqrec.data.sequences import Sequences

    s = Sequences.from_lists([[1, 2, 1], [3], [2, 2]], n_items=4)
    st = dataset_stats(s)
    assert st["users"] == 3 and st["items"] == 4 and st["interactions"] == 6
    assert st["avg_length"] == 2.0 and st["min_length"] == 1 and st["max_length"] == 3
    assert st["median_length"] == 2.0 and st["density"] == 6 / 12
    assert st["items_seen"] == 3 and st["repeated_pairs"] == 2
    assert "time_span" not in st
