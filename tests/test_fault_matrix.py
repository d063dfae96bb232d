"""Fault matrix (issue 6): bad input of every kind, across readers, CLI, config and HTTP API,
gets a clean error — one printable line naming what is wrong, no traceback, never a 500 — and
leaves no partial file behind.

Every case is one row of a table below; each row is a distinct kind of fault. Property-based
rows: hypothesis feeds the readers random bytes and random token soups (they must parse or raise
:class:`DataError`, nothing else), and schemathesis fuzzes the service from its own OpenAPI
schema (no 5xx, every response conforms to the schema).
"""

from __future__ import annotations

import gzip
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from cli_runner import run_cli
from seqrec.config import RunConfig, merge, validate
from seqrec.data.readers import read_interactions
from seqrec.errors import ConfigError, DataError, SeqrecError
from seqrec.metadata import read_titles
from seqrec.recommend import Recommender
from seqrec.serve import MAX_BATCH, MAX_HISTORY, create_app
from seqrec.train import fit

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's httpx deprecation notice
    from fastapi.testclient import TestClient


# ----------------------------------------------------------------------------- helpers


def assert_clean(message: str) -> None:
    """One printable line, not a Python traceback or a repr of an exception object."""
    assert message, "empty error message"
    assert message.isprintable(), f"not one printable line: {message!r}"
    assert "Traceback" not in message and len(message) < 2000


def leftovers(folder: Path) -> list[Path]:
    """Temp files of atomic writes (``.NAME.XXXX.tmp``) left behind under ``folder``."""
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".")]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1-epoch SASRec on 300 synthetic users, 60 items (d = 16, maxlen 10), trained once."""
    root = tmp_path_factory.mktemp("faults")
    cfg = validate(
        merge(
            RunConfig(),
            {
                "data": {"dataset": "synthetic", "synthetic_users": 300, "synthetic_items": 60},
                "model": {"dim": 16, "layers": 1, "maxlen": 10},
                "train": {"epochs": 1, "batch_size": 64, "seed": 3, "threads": 1},
                "out_dir": str(root / "runs"),
                "name": "tiny",
            },
        )
    )
    return fit(cfg, quiet=True).run_dir


# ----------------------------------------------------------------------------- readers


def _gzip_truncated() -> bytes:
    return gzip.compress(b"1 2 3\n2 3 4\n" * 200)[:40]


# (kind, file name, content, read_interactions kwargs, expected text in the message)
READER_FAULTS: list[tuple[str, str, bytes | None, dict[str, Any], str]] = [
    ("missing file", "nope.txt", None, {}, "file not found"),
    ("empty file", "e.txt", b"", {}, "the file is empty"),
    ("whitespace only", "w.txt", b" \n\t\n", {}, "empty"),
    ("byte-order mark and blanks only", "bom.txt", b"\xef\xbb\xbf\n \n", {}, "only blank lines"),
    ("binary (NUL bytes)", "b.txt", b"1 2\x00\x01\x02", {}, "binary file"),
    ("truncated gzip", "t.txt.gz", _gzip_truncated(), {}, "gzip"),
    (".gz that is not gzip", "n.txt.gz", b"1 2 3\n", {}, "not gzip data"),
    ("non-integer id, user-lines", "u.txt", b"1 2 3\n2 x 4\n", {}, ":2: expected an integer id"),
    (
        "non-integer id, pairs",
        "p.txt",
        b"1 2\n1 2.5\n",
        {"format": "pairs"},
        ":2: expected an integer",
    ),
    ("negative id", "neg.txt", b"1 2 3\n2 -4 5\n", {}, ":2: expected an integer id, got '-4'"),
    (
        "pairs with 3 fields",
        "p3.txt",
        b"1 2\n1 2 3\n",
        {"format": "pairs"},
        ":2: expected 2 fields",
    ),
    ("user without items", "lonely.txt", b"1 2 3\n7\n", {}, ":2: user '7' has no items"),
    ("id too long for int64", "big.txt", b"1 " + b"9" * 25 + b"\n", {}, "too long"),
    ("missing column", "m.csv", b"user,product\n1,2\n", {}, "no item column 'item'"),
    ("ragged row", "r.csv", b"user,item\n1,2\n3,4,5\n", {}, ":3: expected 2 fields"),
    ("empty value", "ev.csv", b"user,item\n1,2\n3,\n", {}, ":3: empty value in column 'item'"),
    ("header only", "h.csv", b"user,item\n", {}, "no rows"),
    ("bad timestamps", "ts.csv", b"user,item,ts\n1,2,soon\n", {"time_col": "ts"}, "timestamp"),
    (
        "column position out of range",
        "pos.tsv",
        b"1\t2\n",
        {"user_col": "0", "item_col": "5"},
        "position 5",
    ),
    ("garbage parquet", "g.parquet", b"PAR1 not really", {}, "Parquet"),
    ("header not UTF-8", "l.tsv", b"\xf3\xb0user\titem\n1\t2\n", {"format": "log"}, "UTF-8"),
    ("unknown format", "f.txt", b"1 2 3\n", {"format": "xml"}, "unknown format 'xml'"),
    ("folder instead of file", "adir", None, {}, "is a folder"),
]


@pytest.mark.parametrize(
    ("name", "content", "kwargs", "needle"),
    [r[1:] for r in READER_FAULTS],
    ids=[r[0] for r in READER_FAULTS],
)
def test_reader_faults(
    tmp_path: Path, name: str, content: bytes | None, kwargs: dict[str, Any], needle: str
) -> None:
    path = tmp_path / name
    if name == "adir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError) as info:
        read_interactions(path, **kwargs)
    message = str(info.value)
    assert_clean(message)
    assert needle in message and str(path) in message, message


TOKENS = ["1", "22", "7", "x", "-3", "1.5", "::", "\t", ",", ";", " ", "\n", "\r\n", "\x00",
          "\xe9", "\x0b", "9" * 21, "user", "item", "ts", "2020-01-01", '"']  # fmt: skip
token_soup = st.lists(st.lists(st.sampled_from(TOKENS), max_size=6).map("".join), max_size=8)


def _must_parse_or_data_error(path: Path, **kwargs: Any) -> None:
    try:
        got = read_interactions(path, **kwargs)
    except DataError as exc:
        assert_clean(str(exc))
    else:  # a parse is a real parse: aligned columns
        assert len(got.users) == len(got.items) > 0


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(
    content=st.one_of(token_soup.map(lambda lines: "\n".join(lines).encode()), st.binary(max_size=80)),
    name=st.sampled_from(["a.txt", "a.csv", "a.tsv", "a.dat", "a.parquet"]),
    fmt=st.sampled_from(["auto", "user-lines", "pairs", "log"]),
    cols=st.sampled_from([("user", "item", None), ("0", "1", None), ("0", "1", "2"), ("user", "item", "ts")]),
    gz=st.booleans(),
)  # fmt: skip
def test_readers_on_random_input_parse_or_raise_data_error(
    tmp_path_factory: pytest.TempPathFactory,
    content: bytes,
    name: str,
    fmt: str,
    cols: tuple[str, str, str | None],
    gz: bool,
) -> None:
    path = tmp_path_factory.getbasetemp() / ("h-" + name + (".gz" if gz else ""))
    data = gzip.compress(content) if gz else content
    path.write_bytes(data[: max(1, len(data) * 3 // 4)] if gz and len(content) % 2 else data)
    _must_parse_or_data_error(
        path, format=fmt, user_col=cols[0], item_col=cols[1], time_col=cols[2]
    )


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(
    content=st.one_of(
        token_soup.map(lambda lines: "\n".join(lines).encode()), st.binary(max_size=60)
    )
)
def test_metadata_reader_on_random_input(
    tmp_path_factory: pytest.TempPathFactory, content: bytes
) -> None:
    path = tmp_path_factory.getbasetemp() / "meta.dat"
    path.write_bytes(content)
    try:
        titles = read_titles(path)
    except DataError as exc:
        assert_clean(str(exc))
    else:
        assert all(isinstance(k, str) and k for k in titles)


# ----------------------------------------------------------------------------- CLI and config


def _setup(tmp: Path, run: Path) -> dict[str, str]:
    """Files the CLI cases point at."""
    (tmp / "bad.toml").write_text("[train\nepochs = 3\n")
    (tmp / "typo.toml").write_text("[train]\nepoch = 3\n")
    (tmp / "section.toml").write_text("[trainer]\nepochs = 3\n")
    (tmp / "binary.toml").write_bytes(b"\xff\xfe\x00garbage")
    (tmp / "bad_ids.txt").write_text("1 2 3\n2 three 4\n")
    (tmp / "one_each.txt").write_text("1 2\n2 3\n")  # nobody has enough items for a split
    (tmp / "folder").mkdir()
    broken = tmp / "broken_run"
    broken.mkdir()
    for f in run.iterdir():
        if f.is_file():
            (broken / f.name).write_bytes(f.read_bytes())
    (broken / "best").mkdir()
    for f in (run / "best").iterdir():
        (broken / "best" / f.name).write_bytes(f.read_bytes())
    (broken / "best" / "model.json").write_text('{"model": ')
    return {"tmp": str(tmp), "run": str(run), "broken": str(broken)}


# (kind, argv template, expected text in the error output); {tmp} {run} {broken} {out}
CLI_FAULTS: list[tuple[str, list[str], str]] = [
    ("unknown option", ["train", "--epoch", "3"], "No such option"),
    ("unknown command", ["trian"], "No such command"),
    ("non-integer value", ["train", "--epochs", "many"], "Invalid value for '--epochs'"),
    ("missing argument", ["evaluate"], "Missing argument"),
    ("malformed --set", ["train", "--set", "epochs3"], "--set expects section.key=value"),
    (
        "--resume with other options",
        ["train", "--resume", "{run}", "--lr", "0.1"],
        "the only options it takes are a larger --epochs and --patience",
    ),
    (
        "--resume with fewer epochs",
        ["train", "--resume", "{run}", "--epochs", "0"],
        "train.epochs must be",
    ),
    ("resume a finished run", ["train", "--resume", "{run}"], "already finished"),
    (
        "resume a folder that is not a run",
        ["train", "--resume", "{tmp}/folder"],
        "not a run folder",
    ),
    ("evaluate a missing run folder", ["evaluate", "{tmp}/nowhere"], "not a run folder"),
    (
        "evaluate with a bad split",
        ["evaluate", "{run}", "--split", "train"],
        "--split must be valid or test",
    ),
    (
        "recommend on a missing run",
        ["recommend", "{tmp}/nowhere", "--history", "1"],
        "does not exist",
    ),
    ("recommend without a history", ["recommend", "{run}"], "give a history"),
    (
        "recommend k out of range",
        ["recommend", "{run}", "--history", "1", "-k", "0"],
        "k must be an integer from 1",
    ),
    (
        "recommend k not a number",
        ["recommend", "{run}", "--history", "1", "-k", "ten"],
        "Invalid value for '-k'",
    ),
    (
        "recommend with a broken checkpoint",
        ["recommend", "{broken}", "--history", "1"],
        "not a seqrec checkpoint description",
    ),
    (
        "titles file missing",
        ["recommend", "{run}", "--history", "1", "--titles", "{tmp}/t.dat"],
        "cannot read the metadata file",
    ),
    (
        "export to an unknown format",
        ["export", "{run}", "--format", "tflite"],
        "--format must be one of onnx",
    ),
    (
        "export over a folder",
        ["export", "{run}", "--out", "{tmp}/folder", "--check", "0"],
        "failed",
    ),
    ("serve a missing run", ["serve", "{tmp}/nowhere"], "does not exist"),
    ("serve on a bad port", ["serve", "{run}", "--port", "70000"], "Invalid value for '--port'"),
    (
        "run folder cannot be created",
        [
            "train",
            "--out-dir",
            "/proc/seqrec-none",
            "--epochs",
            "1",
            "--set",
            "data.synthetic_users=50",
            "--set",
            "data.synthetic_items=20",
        ],
        "cannot create the run folder",
    ),
    (
        "dataset file with a bad id",
        ["train", "--dataset", "{tmp}/bad_ids.txt", "--out-dir", "{out}"],
        "bad_ids.txt:2: expected an integer id",
    ),
    (
        "dataset too small to split",
        ["train", "--dataset", "{tmp}/one_each.txt", "--out-dir", "{out}"],
        "no users with enough interactions",
    ),
    (
        "unknown dataset name",
        ["train", "--dataset", "beuty", "--out-dir", "{out}"],
        "is neither a named dataset",
    ),
    ("data stats on a binary file", ["data", "stats", "{tmp}/binary.toml"], "binary file"),
    # config
    ("config file missing", ["train", "--config", "{tmp}/none.toml"], "does not exist"),
    ("config not valid TOML", ["train", "--config", "{tmp}/bad.toml"], "not valid TOML"),
    ("config not text", ["train", "--config", "{tmp}/binary.toml"], "not a UTF-8 text file"),
    (
        "config unknown key (suggests)",
        ["train", "--config", "{tmp}/typo.toml"],
        "did you mean 'epochs'",
    ),
    ("config unknown section", ["train", "--config", "{tmp}/section.toml"], "trainer"),
    ("--set unknown key (suggests)", ["train", "--set", "model.dims=8"], "did you mean 'dim'"),
    ("--set wrong type", ["train", "--set", "model.dim=wide"], "model.dim must be int"),
    ("--set bad list", ["train", "--set", "eval.ks=a,b"], "eval.ks must be a list of integers"),
    ("out of range: dropout", ["train", "--dropout", "1.5"], "model.dropout must be in [0, 1)"),
    ("out of range: learning rate", ["train", "--lr", "-0.1"], "train.lr must be > 0"),
    ("not a number: learning rate", ["train", "--lr", "nan"], "train.lr must be > 0"),
    ("out of range: threads", ["train", "--threads", "0"], "train.threads must be >= 1"),
    ("out of range: maxlen", ["train", "--maxlen", "1"], "model.maxlen must be at least 2"),
    ("unknown loss (suggests)", ["train", "--loss", "cee"], "did you mean"),
    ("unknown positions value", ["train", "--positions", "first"], "loss.positions"),
]


@pytest.fixture(scope="module")
def cli_files(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return _setup(tmp_path_factory.mktemp("cli-faults"), run_dir)


@pytest.mark.parametrize(
    ("argv", "needle"), [r[1:] for r in CLI_FAULTS], ids=[r[0] for r in CLI_FAULTS]
)
def test_cli_faults(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    cli_files: dict[str, str],
    run_dir: Path,
    argv: list[str],
    needle: str,
) -> None:
    out_dir = tmp_path / "runs"
    before = sorted(p.name for p in run_dir.rglob("*"))
    args = [a.format(out=out_dir, **cli_files) for a in argv]
    if "--out-dir" not in args and args[0] == "train" and "--resume" not in args:
        args += ["--out-dir", str(out_dir)]
    code, out, err = run_cli(monkeypatch, capsys, *args)
    assert code != 0, out
    assert "Traceback" not in out + err
    assert needle in " ".join(err.split()), err  # click boxes wrap long usage errors
    if err.startswith("error: "):  # seqrec's own errors: exactly one line
        (line,) = err.strip().splitlines()
        assert_clean(line)
    # nothing half-made: no new run folder, the existing run untouched, no temp files
    assert not out_dir.exists() or not any(out_dir.iterdir())
    assert sorted(p.name for p in run_dir.rglob("*")) == before
    assert not leftovers(Path(cli_files["tmp"])) and not leftovers(run_dir)


def test_config_errors_in_python_are_config_errors() -> None:
    """The same faults through the library: a ConfigError, never a TypeError/KeyError."""
    cases: list[Callable[[], object]] = [
        lambda: validate(merge(RunConfig(), {"train": {"epochs": 0}})),
        lambda: validate(merge(RunConfig(), {"train": {"epochs": "x"}})),
        lambda: validate(merge(RunConfig(), {"model": {"heads": 3, "dim": 16}})),
        lambda: merge(RunConfig(), {"train": {"epoch": 3}}),
        lambda: merge(RunConfig(), {"train": 3}),
    ]
    for case in cases:
        with pytest.raises(ConfigError) as info:
            case()
        assert_clean(str(info.value))


# ----------------------------------------------------------------------------- HTTP API


@pytest.fixture(scope="module")
def app(run_dir: Path) -> Any:
    return create_app(Recommender.from_run(run_dir))


@pytest.fixture(scope="module")
def client(app: Any) -> TestClient:
    return TestClient(app, raise_server_exceptions=False)


def _ids(n: int) -> list[int]:
    return [1 + i % 60 for i in range(n)]


# (kind, method, path, body (bytes or JSON), expected status, expected text in the message)
API_FAULTS: list[tuple[str, str, str, Any, int, str]] = [
    ("body not JSON", "POST", "/recommend", b"{history: [1]}", 422, "not valid JSON"),
    ("body a JSON list", "POST", "/recommend", [["1", "2"]], 422, "must be a JSON object"),
    ("history a string", "POST", "/recommend", {"history": "1 2 3"}, 422, "body.history"),
    ("history a number", "POST", "/recommend", {"history": 12}, 422, "body.history"),
    ("id an object", "POST", "/recommend", {"history": [{"id": 1}]}, 422, "got an object"),
    ("id a float", "POST", "/recommend", {"history": [3.5]}, 422, "got a number"),
    ("k zero", "POST", "/recommend", {"history": ["1"], "k": 0}, 422, "body.k"),
    ("k above the bound", "POST", "/recommend", {"history": ["1"], "k": 100_000}, 422, "body.k"),
    (
        "k above the catalogue",
        "POST",
        "/recommend",
        {"history": ["1"], "k": 61},
        422,
        "larger than the catalogue",
    ),
    ("k a string", "POST", "/recommend", {"history": ["1"], "k": "10"}, 422, "body.k"),
    (
        "huge history",
        "POST",
        "/recommend",
        {"history": _ids(MAX_HISTORY + 1)},
        422,
        "at most 10000",
    ),
    (
        "huge batch",
        "POST",
        "/recommend",
        {"histories": [["1"]] * (MAX_BATCH + 1)},
        422,
        "at most 1000",
    ),
    ("batch of strings", "POST", "/recommend", {"histories": ["1", "2"]}, 422, "body.histories.0"),
    ("batch nested too deep", "POST", "/recommend", {"histories": [[["1"]]]}, 422, "got an array"),
    ("batch empty", "POST", "/recommend", {"histories": []}, 422, "at least 1"),
    (
        "history and batch both",
        "POST",
        "/recommend",
        {"history": ["1"], "histories": [["1"]]},
        422,
        "exactly one of",
    ),
    ("unknown field", "POST", "/recommend", {"history": ["1"], "user_id": 5}, 422, "Extra inputs"),
    (
        "control character in a field name",
        "POST",
        "/recommend",
        {"history": [], "\x1f": 1},
        422,
        "Extra inputs",
    ),
    ("wrong method", "GET", "/recommend", None, 405, "not allowed"),
    ("unknown path", "GET", "/recommendations", None, 404, "no endpoint"),
    ("body too large", "POST", "/recommend", b"[" + b"1," * 5_000_000 + b"1]", 413, "larger than"),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "needle"),
    [r[1:] for r in API_FAULTS],
    ids=[r[0] for r in API_FAULTS],
)
def test_api_faults(
    client: TestClient, method: str, path: str, body: Any, status: int, needle: str
) -> None:
    raw = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    resp = client.request(method, path, content=raw, headers={"content-type": "application/json"})
    assert resp.status_code == status, resp.text
    message = resp.json()["message"]
    assert_clean(message)
    assert needle in message, message


def test_api_unknown_ids_and_empty_history_are_answered_not_refused(client: TestClient) -> None:
    resp = client.post("/recommend", json={"histories": [["ghost", "1"], [], ["ghost"]], "k": 3})
    assert resp.status_code == 200
    a, b, c = resp.json()["results"]
    assert a["unknown"] == ["ghost"] and a["source"] == "model" and a["history_used"] == 1
    assert b["source"] == c["source"] == "popularity" and c["unknown"] == ["ghost"]
    assert b["items"] == c["items"] and len(b["items"]) == 3


def test_api_fuzzed_from_its_openapi_schema(app: Any) -> None:
    """schemathesis draws requests from the service's own OpenAPI schema, valid ones and
    invalid ones, for every operation: never a 5xx, every answer as the schema documents it."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/recommend", "/model", "/health"}
    cases = st.one_of(
        [op.as_strategy(generation_mode=mode) for op in operations for mode in GenerationMode]
    )
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]

    @settings(
        max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None
    )
    @given(case=cases)
    def check(case: Any) -> None:
        response = case.call()
        case.validate_response(response, checks=checks)
        if response.status_code >= 400:
            assert_clean(response.json()["message"])

    check()


def test_api_survives_random_json(client: TestClient) -> None:
    """Random JSON values as bodies (hypothesis): a 200 or a 4xx with a message, never a 5xx."""
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=5),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
            st.sampled_from(["history", "histories", "k", "exclude_history", "x"]), inner, max_size=4
        ),
        max_leaves=12,
    )  # fmt: skip

    @settings(max_examples=60, deadline=None, database=None)
    @given(body=json_values)
    def check(body: Any) -> None:
        resp = client.post("/recommend", json=body)
        assert resp.status_code in (200, 422), (body, resp.text)
        if resp.status_code == 422:
            assert_clean(resp.json()["message"])

    check()


def test_no_partial_export_on_failure(run_dir: Path, tmp_path: Path) -> None:
    """An export into a missing folder chain under a file fails cleanly and leaves nothing."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SeqrecError):
        from seqrec.export import export_onnx

        export_onnx(run_dir, blocker / "sub" / "m.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
    assert not leftovers(run_dir)


def test_api_body_that_is_not_utf8_is_a_documented_422(client: TestClient) -> None:
    """Found by schemathesis: FastAPI answers an undecodable body with an undocumented 400."""
    resp = client.post(
        "/recommend", content=b"\x03\xff", headers={"content-type": "application/json"}
    )
    assert resp.status_code == 422 and "not valid JSON" in resp.json()["message"]
