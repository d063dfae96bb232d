"""Read interaction files into flat arrays: one row per (user, item[, time]) in file order.

Formats
-------
``user-lines``  one user a line, ``user item item ...``, items in time order (the S3-Rec files:
                Beauty.txt, Yelp.txt, ...). Whitespace separated integer ids.
``pairs``       ``user item`` a line, each user's lines in time order (SASRec's ml-1m.txt).
                Whitespace separated integer ids.
``log``         a table (CSV/TSV/Parquet, or MovieLens ``::``-separated) with user, item and
                optionally timestamp columns, chosen by header name or by 0-based position given
                as a string (``"0"``). Raw ids may be strings.

``format="auto"`` decides in this order:

1. extension (after removing ``.gz``) ``.parquet``/``.pq``/``.csv``/``.tsv`` -> ``log``;
2. ``sep`` given -> ``log``;
3. the first non-empty line contains ``::``, a tab, a comma or a semicolon -> ``log``;
4. otherwise the file is whitespace separated: ``pairs`` if each of the first 1,000 non-empty
   lines has exactly two fields, else ``user-lines``.

Header rule for logs: if any column is given by name, the first line is the header. If all
are given by position, the first line is a header only when one of its selected fields is not
a number while the same field on the second line is (so headerless files with string ids are
read whole).

Text formats are parsed with numpy on the raw bytes (no Python loop per token); logs with
``pyarrow.csv``. ``.gz`` files (or gzip content) are decompressed transparently.
"""

from __future__ import annotations

import gzip
import io
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seqrec.errors import DataError

FORMATS = ("auto", "user-lines", "pairs", "log")
_LOG_EXTENSIONS = (".parquet", ".pq", ".csv", ".tsv")
_MAX_DIGITS = 18  # int64 holds every 18-digit decimal


@dataclass(frozen=True)
class Interactions:
    """Flat interactions in file order.

    users, items: raw ids, int64 or str arrays of equal length.
    timestamps: int64/float64 aligned with them, or None when the file only gives an order.
    """

    users: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.users)


# --------------------------------------------------------------------------------------------
# raw bytes


def read_bytes(path: str | Path) -> bytes:
    """The file's content, gunzipped if it is gzip (by extension or magic bytes).

    Raises DataError for a missing, unreadable, truncated-gzip or empty file.
    """
    path = Path(path)
    if not path.exists():
        raise DataError("file not found", path=path)
    if path.is_dir():
        raise DataError("is a folder, expected a file", path=path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read the file: {exc.strerror or exc}", path=path) from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as exc:
            raise DataError(
                f"broken gzip file ({exc}); it is probably truncated: download it again", path=path
            ) from None
    elif path.suffix == ".gz":
        raise DataError("has a .gz extension but is not gzip data", path=path)
    if not raw.strip():
        raise DataError("the file is empty", path=path)
    return raw


def _check_text(raw: bytes, path: Path) -> None:
    head = raw[:65536]
    if b"\x00" in head:
        raise DataError("looks like a binary file (NUL bytes), expected text", path=path)


def _line_of(raw: bytes, pos: int) -> int:
    """1-based line number of byte offset ``pos``."""
    return raw.count(b"\n", 0, pos) + 1


def _line_text(raw: bytes, pos: int) -> str:
    start = raw.rfind(b"\n", 0, pos) + 1
    end = raw.find(b"\n", pos)
    end = len(raw) if end < 0 else end
    return raw[start:end].decode("utf-8", errors="replace").strip()


def _strip_bom(raw: bytes) -> bytes:
    return raw[3:] if raw.startswith(b"\xef\xbb\xbf") else raw


# --------------------------------------------------------------------------------------------
# whitespace-separated integer files (user-lines, pairs)


@dataclass(frozen=True)
class _Tokens:
    values: np.ndarray  # int64[T]
    line: np.ndarray  # int64[T], 0-based line index of every token
    n_lines: int


def _tokenize_ints(raw: bytes, path: Path, fmt: str) -> _Tokens:
    """All whitespace-separated non-negative integers of ``raw`` with their line numbers.

    Vectorised: classify bytes, find token starts/ends, then value = sum digit * 10**k via
    ``np.add.reduceat``. Any other byte is an error naming file:line and the bad token.
    """
    a = np.frombuffer(raw, dtype=np.uint8)
    is_digit = (a - np.uint8(48)) <= 9  # uint8 wraps around below '0'
    is_nl = a == 10
    ok = is_digit | is_nl | (a == 32) | (a == 9) | (a == 13)
    if not ok.all():
        pos = int(np.argmin(ok))
        start = pos
        while start > 0 and raw[start - 1 : start] not in (b" ", b"\t", b"\n", b"\r"):
            start -= 1
        m = re.match(rb"\S+", raw[start:])
        token = (m.group(0) if m else raw[pos : pos + 1]).decode("utf-8", errors="replace")
        raise DataError(
            f"expected an integer id, got '{token}' (in {fmt} format ids are integers; "
            "for a table with string ids use --format log)",
            path=path,
            line=_line_of(raw, pos),
        )
    edge = np.diff(is_digit.view(np.int8), prepend=np.int8(0), append=np.int8(0))
    starts = np.flatnonzero(edge == 1)
    ends = np.flatnonzero(edge == -1)  # exclusive
    if len(starts) == 0:
        raise DataError("the file has no ids", path=path)
    width = ends - starts
    if width.max() > _MAX_DIGITS:
        j = int(np.argmax(width > _MAX_DIGITS))
        raise DataError(
            f"id with {int(width[j])} digits is too long (at most {_MAX_DIGITS})",
            path=path,
            line=_line_of(raw, int(starts[j])),
        )
    # digit k of a token of width w sits at start + k and weighs 10 ** (w - 1 - k)
    n_digits = int(width.sum())
    run_starts = np.zeros(len(starts), dtype=np.int64)
    np.cumsum(width[:-1], out=run_starts[1:])
    k = np.arange(n_digits, dtype=np.int64) - np.repeat(run_starts, width)
    digit_pos = np.repeat(starts, width) + k
    pow10 = 10 ** np.arange(_MAX_DIGITS, dtype=np.int64)
    contrib = (a[digit_pos] - np.uint8(48)).astype(np.int64) * pow10[
        np.repeat(width, width) - 1 - k
    ]
    values = np.add.reduceat(contrib, run_starts)
    newlines = np.flatnonzero(is_nl)
    line = np.searchsorted(newlines, starts).astype(np.int64)  # newlines before the token
    n_lines = len(newlines) + 1
    return _Tokens(values=values.astype(np.int64), line=line, n_lines=n_lines)


def _line_start(raw: bytes, line_index: int) -> int:
    """Byte offset where 0-based line ``line_index`` starts (error path only)."""
    a = np.frombuffer(raw, dtype=np.uint8)
    nl = np.flatnonzero(a == 10)
    return 0 if line_index == 0 else int(nl[line_index - 1]) + 1


def read_user_lines(raw: bytes, path: Path) -> Interactions:
    """``user item item ...`` per line (blank lines are skipped)."""
    tok = _tokenize_ints(raw, path, "user-lines")
    per_line = np.bincount(tok.line, minlength=tok.n_lines)
    lonely = np.flatnonzero(per_line == 1)
    if len(lonely):
        li = int(lonely[0])
        raise DataError(
            f"user '{_line_text(raw, _line_start(raw, li))}' has no items (user-lines format: "
            "'user item item ...'; remove the line or add the user's items)",
            path=path,
            line=li + 1,
        )
    first = np.ones(len(tok.values), dtype=bool)
    first[1:] = tok.line[1:] != tok.line[:-1]
    user_of_token = tok.values[first][np.cumsum(first) - 1]
    return Interactions(users=user_of_token[~first], items=tok.values[~first], timestamps=None)


def read_pairs(raw: bytes, path: Path) -> Interactions:
    """``user item`` per line (blank lines are skipped)."""
    tok = _tokenize_ints(raw, path, "pairs")
    per_line = np.bincount(tok.line, minlength=tok.n_lines)
    wrong = np.flatnonzero((per_line != 2) & (per_line != 0))
    if len(wrong):
        li = int(wrong[0])
        raise DataError(
            f"expected 2 fields 'user item', got {int(per_line[li])}: "
            f"'{_line_text(raw, _line_start(raw, li))}'",
            path=path,
            line=li + 1,
        )
    pairs = tok.values.reshape(-1, 2)
    return Interactions(users=pairs[:, 0].copy(), items=pairs[:, 1].copy(), timestamps=None)


# --------------------------------------------------------------------------------------------
# logs (pyarrow)


def _first_lines(raw: bytes, n: int, path: Path | None = None) -> list[bytes]:
    """The first ``n`` non-blank lines (looking at the first MiB); with ``path``, a file with
    none there is a DataError (e.g. only whitespace or control characters)."""
    out = []
    for line in io.BytesIO(raw[: 1 << 20]):
        if line.strip():
            out.append(line.rstrip(b"\r\n"))
            if len(out) >= n:
                break
    if not out and path is not None:
        raise DataError("no data: the file holds only blank lines (in its first MiB)", path=path)
    return out


def _guess_sep(first: bytes) -> str:
    for sep in ("::", "\t", ",", ";", "|"):
        if sep.encode() in first:
            return sep
    return " "


def _is_number(field: bytes) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


def _is_position(col: str) -> bool:
    return col.isdigit()


def _guess_header(lines: list[bytes], sep: str, positions: list[int]) -> bool:
    if len(lines) < 2:
        return False
    a = lines[0].split(sep.encode()) if sep != " " else lines[0].split()
    b = lines[1].split(sep.encode()) if sep != " " else lines[1].split()
    for p in positions:
        if p < len(a) and p < len(b) and not _is_number(a[p].strip()) and _is_number(b[p].strip()):
            return True
    return False


def _ids(arr: object) -> np.ndarray:
    """A pyarrow id column -> int64 if every value is a plain integer, else str."""
    import pyarrow as pa
    import pyarrow.compute as pc

    col = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    if pa.types.is_integer(col.type):
        return col.to_numpy(zero_copy_only=False).astype(np.int64)
    text = pc.utf8_trim_whitespace(pc.cast(col, pa.string()))
    if pc.all(pc.match_substring_regex(text, r"^(0|-?[1-9][0-9]{0,17})$")).as_py():
        return pc.cast(text, pa.int64()).to_numpy(zero_copy_only=False)
    return np.asarray(text.to_numpy(zero_copy_only=False), dtype=str)


def _times(arr: object, path: Path, name: str) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    col = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    if pa.types.is_integer(col.type):
        return col.to_numpy(zero_copy_only=False).astype(np.int64)
    if pa.types.is_floating(col.type):
        return col.to_numpy(zero_copy_only=False).astype(np.float64)
    if pa.types.is_timestamp(col.type) or pa.types.is_date(col.type):
        return pc.cast(pc.cast(col, pa.timestamp("s")), pa.int64()).to_numpy(zero_copy_only=False)
    try:
        ts = pc.strptime(pc.cast(col, pa.string()), format="%Y-%m-%dT%H:%M:%S", unit="s")
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        try:
            ts = pc.cast(pc.cast(col, pa.string()), pa.timestamp("s"))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise DataError(
                f"timestamp column '{name}' holds values that are neither numbers nor "
                "ISO dates (e.g. 2020-01-31T12:00:00)",
                path=path,
            ) from None
    return pc.cast(ts, pa.int64()).to_numpy(zero_copy_only=False)


def _bad_row_line(raw: bytes, sep: str, n_fields: int, header: bool) -> tuple[int, str] | None:
    """First line whose field count differs from ``n_fields`` (error path only)."""
    sep_b = sep.encode()
    for i, line in enumerate(raw.splitlines()):
        if not line.strip():
            continue
        k = len(line.split()) if sep == " " else len(line.split(sep_b))
        if k != n_fields:
            return i + 1, line.decode("utf-8", errors="replace")
    return None


def read_log(
    raw: bytes,
    path: Path,
    *,
    sep: str | None,
    user_col: str,
    item_col: str,
    time_col: str | None,
    parquet: bool = False,
) -> Interactions:
    """A table with user, item and optional time columns (see the module docstring)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    cols = [user_col, item_col] + ([time_col] if time_col is not None else [])
    positional = all(_is_position(c) for c in cols)
    header = True
    if parquet:
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(io.BytesIO(raw))
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataError(f"not a readable Parquet file: {exc}", path=path) from None
        line_offset = None
    else:
        _check_text(raw, path)
        raw = _strip_bom(raw)
        lines = _first_lines(raw, 2, path)
        if sep is None:
            sep = _guess_sep(lines[0])
        if sep == "::":
            raw = raw.replace(b"::", b"\x1f")
            lines = [ln.replace(b"::", b"\x1f") for ln in lines]
            sep = "\x1f"
        if len(sep) != 1:
            raise DataError(
                f"separator {sep!r} must be one character (or '::' for MovieLens .dat files)",
                path=path,
            )
        if positional:
            header = _guess_header(lines, sep, [int(c) for c in cols])
        n_fields = len(lines[0].split()) if sep == " " else len(lines[0].split(sep.encode()))
        read_opts = pacsv.ReadOptions(
            autogenerate_column_names=not header, block_size=1 << 24, use_threads=True
        )
        parse_opts = pacsv.ParseOptions(
            delimiter=sep, ignore_empty_lines=True, quote_char='"' if sep == "," else False
        )
        if sep == " ":
            # runs of spaces are one separator: normalise them (rare format, simple path)
            raw = re.sub(rb"[ \t]+", b" ", raw)
            raw = b"\n".join(ln.strip() for ln in raw.split(b"\n"))
        try:
            table = pacsv.read_csv(
                io.BytesIO(raw),
                read_options=read_opts,
                parse_options=parse_opts,
                convert_options=pacsv.ConvertOptions(strings_can_be_null=True),
            )
        except pa.ArrowInvalid as exc:
            bad = _bad_row_line(raw, sep, n_fields, header)
            if bad is not None:
                raise DataError(
                    f"expected {n_fields} fields like the first line, got a different number: "
                    f"'{bad[1][:80]}'",
                    path=path,
                    line=bad[0],
                ) from None
            raise DataError(f"cannot parse the table: {exc}", path=path) from None
        line_offset = 2 if header else 1
    try:
        names = table.column_names
    except UnicodeDecodeError:
        raise DataError(
            "the header row is not UTF-8 text (save the file as UTF-8, or give the columns by "
            "0-based position for a file without a header)",
            path=path,
            line=None if parquet else 1,
        ) from None

    def column(spec: str, role: str) -> tuple[str, object]:
        if _is_position(spec) and (not header or spec not in names):
            k = int(spec)
            if k >= len(names):
                raise DataError(
                    f"{role} column position {k} does not exist: the file has {len(names)} "
                    f"columns (positions 0..{len(names) - 1})",
                    path=path,
                )
            return names[k], table.column(k)
        if spec not in names:
            hint = (
                " (the file seems to have no header row: give 0-based positions, "
                "e.g. --user-col 0 --item-col 1)"
                if not parquet and all(_is_number(n.strip().encode()) for n in names)
                else ""
            )
            raise DataError(
                f"no {role} column '{spec}'; the columns are: {', '.join(map(str, names))}{hint}",
                path=path,
            )
        return spec, table.column(spec)

    resolved = [column(c, r) for c, r in zip(cols, ("user", "item", "time"), strict=False)]
    for name, col in resolved:
        nulls = col.is_null()
        if col.null_count:
            row = int(np.argmax(nulls.to_numpy(zero_copy_only=False)))
            raise DataError(
                f"empty value in column '{name}'",
                path=path,
                line=None if line_offset is None else row + line_offset,
            )
    if table.num_rows == 0:
        raise DataError("the table has no rows", path=path)
    users = _ids(resolved[0][1])
    items = _ids(resolved[1][1])
    timestamps = _times(resolved[2][1], path, resolved[2][0]) if time_col is not None else None
    if timestamps is not None and timestamps.dtype.kind == "f" and np.isnan(timestamps).any():
        row = int(np.argmax(np.isnan(timestamps)))
        raise DataError(
            "timestamp is NaN",
            path=path,
            line=None if line_offset is None else row + line_offset,
        )
    return Interactions(users=users, items=items, timestamps=timestamps)


# --------------------------------------------------------------------------------------------
# entry point


def _base_suffix(path: Path) -> str:
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    return Path(name).suffix.lower()


def detect_format(path: str | Path, raw: bytes, sep: str | None = None) -> str:
    """The format ``auto`` picks (rules in the module docstring)."""
    suffix = _base_suffix(Path(path))
    if suffix in _LOG_EXTENSIONS or sep is not None:
        return "log"
    lines = _first_lines(raw, 1000, Path(path))
    if any(s in lines[0] for s in (b"::", b"\t", b",", b";")):
        return "log"
    if all(len(ln.split()) == 2 for ln in lines):
        return "pairs"
    return "user-lines"


def read_interactions(
    path: str | Path,
    *,
    format: str = "auto",
    sep: str | None = None,
    user_col: str = "user",
    item_col: str = "item",
    time_col: str | None = None,
) -> Interactions:
    """Read an interaction file (formats and the ``auto`` rule: module docstring).

    Raises DataError naming the file (and line where there is one) for a missing, empty,
    binary or malformed file, or a missing column.
    """
    path = Path(path)
    if format not in FORMATS:
        raise DataError(f"unknown format '{format}'; use one of {', '.join(FORMATS)}", path=path)
    raw = read_bytes(path)
    suffix = _base_suffix(path)
    if suffix in (".parquet", ".pq"):
        return read_log(
            raw,
            path,
            sep=None,
            user_col=user_col,
            item_col=item_col,
            time_col=time_col,
            parquet=True,
        )
    _check_text(raw, path)
    raw = _strip_bom(raw)
    if format == "auto":
        format = detect_format(path, raw, sep)
    if format == "user-lines":
        return read_user_lines(raw, path)
    if format == "pairs":
        return read_pairs(raw, path)
    return read_log(raw, path, sep=sep, user_col=user_col, item_col=item_col, time_col=time_col)
