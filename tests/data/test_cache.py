from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from seqrec.data import cache
from seqrec.data.preprocess import prepare
from seqrec.data.readers import read_interactions
from seqrec.data.sequences import Sequences, Vocabulary


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "cache"
    monkeypatch.setenv("SEQREC_CACHE_DIR", str(d))
    return d


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    p = tmp_path / "d.txt"
    p.write_text("1 1 2 3\n2 2 3\n3 3 1 2 4\n")
    return p


class Builder:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.calls = 0

    def __call__(self) -> tuple[Sequences, Vocabulary]:
        self.calls += 1
        return prepare(read_interactions(self.path))


def same(a: tuple[Sequences, Vocabulary], b: tuple[Sequences, Vocabulary]) -> bool:
    return (
        np.array_equal(a[0].offsets, b[0].offsets)
        and np.array_equal(a[0].items, b[0].items)
        and a[0].n_items == b[0].n_items
        and a[1] == b[1]
    )


def test_file_sha256_reads_in_blocks(tmp_path: Path) -> None:
    p = tmp_path / "big.bin"
    blob = np.random.default_rng(0).bytes(3 * (1 << 20) + 17)
    p.write_bytes(blob)
    assert cache.file_sha256(p) == hashlib.sha256(blob).hexdigest()


def test_miss_then_hit(cache_dir: Path, data_file: Path) -> None:
    build = Builder(data_file)
    first = cache.cached_prepare(data_file, {"a": 1}, build)
    second = cache.cached_prepare(data_file, {"a": 1}, build)
    assert build.calls == 1
    assert same(first, second)
    assert len(list(cache_dir.glob("*.npz"))) == 1
    assert not list(cache_dir.glob("*.tmp"))  # atomic writes leave no temp files


def test_options_and_content_change_the_key(cache_dir: Path, data_file: Path) -> None:
    build = Builder(data_file)
    cache.cached_prepare(data_file, {"a": 1}, build)
    cache.cached_prepare(data_file, {"a": 2}, build)
    assert build.calls == 2
    data_file.write_text("1 1 2\n")
    out = cache.cached_prepare(data_file, {"a": 1}, build)
    assert build.calls == 3
    assert out[0].items.tolist() == [1, 2]


def test_timestamps_round_trip(cache_dir: Path, tmp_path: Path) -> None:
    p = tmp_path / "log.csv"
    p.write_text("user,item,t\na,x,2.5\na,y,1.5\n")
    build = lambda: prepare(read_interactions(p, time_col="t"))  # noqa: E731
    a = cache.cached_prepare(p, {}, build)
    b = cache.cached_prepare(p, {}, lambda: pytest.fail("should be a hit"))
    assert b[0].timestamps.tolist() == a[0].timestamps.tolist() == [1.5, 2.5]


@pytest.mark.parametrize("damage", ["npz-garbage", "npz-truncated", "vocab-garbage", "vocab-short"])
def test_corrupt_entry_is_rebuilt(cache_dir: Path, data_file: Path, damage: str) -> None:
    build = Builder(data_file)
    good = cache.cached_prepare(data_file, {}, build)
    npz = next(cache_dir.glob("*.npz"))
    vocab = next(cache_dir.glob("*.vocab.json"))
    if damage == "npz-garbage":
        npz.write_bytes(b"not a zip")
    elif damage == "npz-truncated":
        npz.write_bytes(npz.read_bytes()[:100])
    elif damage == "vocab-garbage":
        vocab.write_text("{")
    else:
        vocab.write_text('{"users": ["1"], "items": ["1"]}')
    with pytest.warns(UserWarning, match="damaged cache entry"):
        again = cache.cached_prepare(data_file, {}, build)
    assert build.calls == 2
    assert same(good, again)
    third = cache.cached_prepare(data_file, {}, build)  # repaired
    assert build.calls == 2 and same(good, third)


def test_cache_can_be_turned_off(monkeypatch: pytest.MonkeyPatch, data_file: Path) -> None:
    monkeypatch.setenv("SEQREC_CACHE_DIR", "")
    assert cache.cache_dir() is None
    build = Builder(data_file)
    cache.cached_prepare(data_file, {}, build)
    cache.cached_prepare(data_file, {}, build)
    assert build.calls == 2
