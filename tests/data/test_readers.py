from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from seqrec.data.readers import detect_format, read_interactions
from seqrec.errors import DataError


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(text.encode() if isinstance(text, str) else text)
    return p


def naive_user_lines(text: str) -> tuple[list[int], list[int]]:
    users, items = [], []
    for line in text.splitlines():
        f = line.split()
        if f:
            users += [int(f[0])] * (len(f) - 1)
            items += [int(x) for x in f[1:]]
    return users, items


def assert_error_at(exc: pytest.ExceptionInfo[DataError], path: Path, line: int | None) -> None:
    where = f"{path}:{line}: " if line is not None else f"{path}: "
    assert str(exc.value).startswith(where), str(exc.value)
    assert exc.value.line == line


# ---------------------------------------------------------------- user-lines / pairs


def test_user_lines_basic(tmp_path: Path) -> None:
    p = write(tmp_path, "a.txt", "1 3 2\n2 5\n\n10 1 1 4\n")
    x = read_interactions(p, format="user-lines")
    assert x.users.tolist() == [1, 1, 2, 10, 10, 10]
    assert x.items.tolist() == [3, 2, 5, 1, 1, 4]
    assert x.timestamps is None
    assert x.users.dtype == np.int64


def test_user_lines_matches_naive_reader_on_random_whitespace(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    lines = []
    for _ in range(300):
        n = int(rng.integers(1, 12))
        ids = [str(int(v)) for v in rng.integers(0, 10 ** int(rng.integers(1, 18)), size=n + 1)]
        seps = rng.choice([" ", "  ", "\t", " \t "], size=n)
        line = ids[0] + "".join(s + i for s, i in zip(seps, ids[1:], strict=True))
        lines.append(line + rng.choice(["", " ", "\r"]))
        if rng.random() < 0.1:
            lines.append(rng.choice(["", "  ", "\r"]))
    text = "\n".join(lines) + rng.choice(["", "\n"])
    p = write(tmp_path, "r.txt", text)
    x = read_interactions(p, format="user-lines")
    users, items = naive_user_lines(text)
    assert x.users.tolist() == users
    assert x.items.tolist() == items


def test_pairs_matches_naive(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    pairs = rng.integers(0, 10**9, size=(500, 2))
    text = "".join(f"{u} {i}\n" for u, i in pairs)
    p = write(tmp_path, "ml.txt", text)
    x = read_interactions(p, format="pairs")
    assert np.array_equal(x.users, pairs[:, 0])
    assert np.array_equal(x.items, pairs[:, 1])


def test_gzip_is_transparent(tmp_path: Path) -> None:
    text = "1 1\n1 2\n2 3\n"
    p = write(tmp_path, "x.txt.gz", gzip.compress(text.encode()))
    x = read_interactions(p)
    assert x.users.tolist() == [1, 1, 2] and x.items.tolist() == [1, 2, 3]


def test_truncated_gzip_is_a_clean_error(tmp_path: Path) -> None:
    blob = gzip.compress(("1 2 3 4\n" * 5000).encode())
    p = write(tmp_path, "t.txt.gz", blob[: len(blob) // 2])
    with pytest.raises(DataError, match="truncated") as exc:
        read_interactions(p)
    assert_error_at(exc, p, None)


def test_gz_extension_without_gzip_content(tmp_path: Path) -> None:
    p = write(tmp_path, "t.txt.gz", "1 2\n")
    with pytest.raises(DataError, match="not gzip"):
        read_interactions(p)


@pytest.mark.parametrize(
    ("fmt", "text", "line", "match"),
    [
        ("user-lines", "1 2 3\n2 4\n3 x 5\n", 3, "'x'"),
        ("user-lines", "1 2 3\n2 4\n3 1.5\n", 3, "'1.5'"),
        ("user-lines", "1 2 3\n2 -4\n", 2, "'-4'"),
        ("user-lines", "1 2 3\n\n7\n3 4\n", 3, "user '7' has no items"),
        ("pairs", "1 2\n1 3\n1 3 4\n", 3, "expected 2 fields"),
        ("pairs", "1 2\n5\n", 2, "expected 2 fields"),
        ("pairs", "1 2\nuser item\n", 2, "'user'"),
        ("user-lines", "1 " + "9" * 19 + "\n", 1, "too long"),
    ],
)
def test_malformed_text_names_file_and_line(
    tmp_path: Path, fmt: str, text: str, line: int, match: str
) -> None:
    p = write(tmp_path, "bad.txt", text)
    with pytest.raises(DataError, match=match) as exc:
        read_interactions(p, format=fmt)
    assert_error_at(exc, p, line)


@pytest.mark.parametrize("content", [b"", b"\n  \n", b"\x89PNG\r\n\x00\x00\x00IHDR"])
def test_empty_or_binary_file(tmp_path: Path, content: bytes) -> None:
    p = write(tmp_path, "e.txt", content)
    with pytest.raises(DataError, match=r"empty|binary") as exc:
        read_interactions(p)
    assert_error_at(exc, p, None)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        read_interactions(tmp_path / "nope.txt")


# ---------------------------------------------------------------- logs


def test_csv_with_header_and_string_ids(tmp_path: Path) -> None:
    p = write(tmp_path, "log.csv", "user,item,ts,rating\nalice,i9,3,5\nbob,i1,1,4\nalice,i2,2,3\n")
    x = read_interactions(p, time_col="ts")
    assert x.users.tolist() == ["alice", "bob", "alice"]
    assert x.items.tolist() == ["i9", "i1", "i2"]
    assert x.timestamps.tolist() == [3, 1, 2]


def test_headerless_tsv_by_position_like_u_data(tmp_path: Path) -> None:
    p = write(tmp_path, "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n")
    x = read_interactions(p, user_col="0", item_col="1", time_col="3")
    assert x.users.tolist() == [196, 186] and x.items.tolist() == [242, 302]
    assert x.users.dtype == np.int64
    assert x.timestamps.tolist() == [881250949, 891717742]


def test_float_timestamps_like_gowalla(tmp_path: Path) -> None:
    p = write(tmp_path, "g.txt", "0\t2049\t1287503727.0\n0\t0\t1287411463.0\n")
    x = read_interactions(p, user_col="0", item_col="1", time_col="2")
    assert x.timestamps.dtype == np.float64
    assert x.timestamps.tolist() == [1287503727.0, 1287411463.0]


def test_movielens_double_colon(tmp_path: Path) -> None:
    p = write(tmp_path, "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n")
    x = read_interactions(p, user_col="0", item_col="1", time_col="3")
    assert x.items.tolist() == [1193, 661] and x.timestamps.tolist() == [978300760, 978302109]


def test_positions_with_a_header_row_are_detected(tmp_path: Path) -> None:
    p = write(tmp_path, "h.tsv", "u\ti\tt\n1\t2\t3\n4\t5\t6\n")
    x = read_interactions(p, user_col="0", item_col="1", time_col="2")
    assert x.users.tolist() == [1, 4]


def test_iso_timestamps(tmp_path: Path) -> None:
    p = write(
        tmp_path, "d.csv", "user,item,when\na,b,2020-01-01T00:00:10\na,c,2020-01-01T00:00:00\n"
    )
    x = read_interactions(p, time_col="when")
    assert (x.timestamps[0] - x.timestamps[1]) == 10


def test_parquet(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = tmp_path / "t.parquet"
    pq.write_table(pa.table({"uid": [3, 1], "iid": ["x", "y"], "t": [1.5, 2.5]}), p)
    x = read_interactions(p, user_col="uid", item_col="iid", time_col="t")
    assert x.users.tolist() == [3, 1] and x.items.tolist() == ["x", "y"]
    y = read_interactions(p, user_col="0", item_col="1")
    assert y.items.tolist() == ["x", "y"]


def test_missing_column_lists_the_columns(tmp_path: Path) -> None:
    p = write(tmp_path, "log.csv", "uid,iid\n1,2\n")
    with pytest.raises(DataError, match="no user column 'user'; the columns are: uid, iid") as exc:
        read_interactions(p)
    assert_error_at(exc, p, None)


def test_headerless_file_with_names_hints_positions(tmp_path: Path) -> None:
    p = write(tmp_path, "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n")
    with pytest.raises(DataError, match="positions"):
        read_interactions(p)


def test_position_out_of_range(tmp_path: Path) -> None:
    p = write(tmp_path, "u.tsv", "1\t2\n3\t4\n")
    with pytest.raises(DataError, match="position 5 does not exist"):
        read_interactions(p, user_col="0", item_col="5")


def test_ragged_log_names_the_line(tmp_path: Path) -> None:
    p = write(tmp_path, "r.csv", "user,item\n1,2\n3,4\n5,6,7\n")
    with pytest.raises(DataError, match="expected 2 fields") as exc:
        read_interactions(p)
    assert_error_at(exc, p, 4)


@pytest.mark.parametrize(
    ("text", "line"), [("user,item\n1,2\n3,\n", 3), ("user,item\na,b\nc,d\n,e\n", 4)]
)
def test_empty_value_names_the_line(tmp_path: Path, text: str, line: int) -> None:
    p = write(tmp_path, "n.csv", text)
    with pytest.raises(DataError, match="empty value") as exc:
        read_interactions(p)
    assert_error_at(exc, p, line)


# ---------------------------------------------------------------- auto


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("a.txt", "1 2 3\n2 4\n", "user-lines"),
        ("a.txt", "1 2\n1 3\n2 4\n", "pairs"),
        ("u.data", "1\t2\t3\t4\n", "log"),
        ("r.dat", "1::2::3::4\n", "log"),
        ("x.csv", "user,item\n", "log"),
        ("x.txt", "user,item\n1,2\n", "log"),
        ("x.tsv.gz", "whatever", "log"),
    ],
)
def test_auto_detection(name: str, text: str, expected: str) -> None:
    assert detect_format(name, text.encode()) == expected


def test_folder_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="is a folder"):
        read_interactions(tmp_path)
