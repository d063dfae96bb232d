"""The HTTP service: health, model, single and batch recommendations, and a 4xx with a message
for every kind of bad request (never a 500)."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import pytest

from seqrec.recommend import Recommender
from seqrec.serve import MAX_BATCH, MAX_BODY_BYTES, MAX_HISTORY, MAX_ID_CHARS, create_app
from tiny_run import train_tiny_run

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's httpx deprecation notice
    from fastapi.testclient import TestClient


@pytest.fixture(scope="module")
def rec(tmp_path_factory: pytest.TempPathFactory) -> Recommender:
    return Recommender.from_run(train_tiny_run(tmp_path_factory.mktemp("serve")))


@pytest.fixture(scope="module")
def client(rec: Recommender) -> TestClient:
    return TestClient(create_app(rec), raise_server_exceptions=False)


def test_health_and_model(client: TestClient, rec: Recommender) -> None:
    assert client.get("/health").json() == {"status": "ok", "n_items": 60}
    info = client.get("/model").json()
    assert info["n_items"] == 60 and info["model"]["maxlen"] == 10 and info["loss"]["name"] == "ce"
    assert info["test"] == rec.info["test"] and info["trained_finished"]


def test_single_history_matches_the_recommender(client: TestClient, rec: Recommender) -> None:
    h = list(rec.vocab.items[:4])
    resp = client.post("/recommend", json={"history": h, "k": 5})
    assert resp.status_code == 200
    body = resp.json()
    expected = rec.recommend_one(h, k=5)
    (got,) = body["results"]
    assert body["k"] == 5 and [x["item"] for x in got["items"]] == expected.items
    assert [x["score"] for x in got["items"]] == pytest.approx(expected.scores)
    assert got["source"] == "model" and got["history_used"] == 4 and got["unknown"] == []
    assert all(x["title"] is None for x in got["items"])


def test_batch_keeps_order_reports_unknown_and_falls_back(
    client: TestClient, rec: Recommender
) -> None:
    a, b = rec.vocab.items[0], rec.vocab.items[7]
    resp = client.post(
        "/recommend",
        json={
            "histories": [[a, "ghost", 12], [], [b], ["ghost"]],
            "k": 3,
            "exclude_history": False,
        },
    )
    assert resp.status_code == 200
    res = resp.json()["results"]
    assert [r["source"] for r in res] == ["model", "popularity", "model", "popularity"]
    assert res[0]["unknown"] == ["ghost", "12"] and res[3]["unknown"] == ["ghost"]
    assert [x["item"] for x in res[2]["items"]] == rec.recommend_one(
        [b], k=3, exclude_history=False
    ).items
    assert res[1]["items"] == res[3]["items"] and len(res[1]["items"]) == 3


def test_integer_ids_are_accepted(tmp_path: Path, rec: Recommender) -> None:
    from seqrec.data.sequences import Vocabulary

    numeric = Vocabulary(users=rec.vocab.users, items=tuple(str(i) for i in range(100, 160)))
    app = create_app(Recommender(rec.model, numeric, maxlen=rec.maxlen))
    c = TestClient(app)
    as_int = c.post("/recommend", json={"history": [100, 101], "k": 4}).json()["results"][0]
    as_str = c.post("/recommend", json={"history": ["100", "101"], "k": 4}).json()["results"][0]
    assert as_int == as_str and as_int["unknown"] == [] and as_int["history_used"] == 2


def test_openapi_schema(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert {"/recommend", "/model", "/health"} <= set(schema["paths"])
    req = schema["components"]["schemas"]["RecommendRequest"]
    assert req["properties"]["k"]["maximum"] == 1000 and req["additionalProperties"] is False


def _long(n: int) -> list[str]:
    return ["sku-10"] * n


BAD: list[tuple[str, Any, str]] = [
    ("malformed json", b'{"history": [', "not valid JSON"),
    ("not an object", b"[1, 2, 3]", "must be a JSON object"),
    ("a bare string", b'"sku-10"', "must be a JSON object"),
    ("empty body", b"", "must be a JSON object"),
    ("neither field", {"k": 3}, "exactly one of"),
    ("both fields", {"history": [], "histories": [[]]}, "exactly one of"),
    ("history not a list", {"history": "sku-10"}, "body.history"),
    ("history an object", {"history": {"a": 1}}, "body.history"),
    ("nested garbage", {"history": [["sku-10"]]}, "got an array"),
    ("null id", {"history": [None]}, "got null"),
    ("float id", {"history": [1.5]}, "got a number"),
    ("bool id", {"history": [True]}, "got a boolean"),
    ("empty id", {"history": [""]}, "1 to 256 characters"),
    ("id too long", {"history": ["x" * (MAX_ID_CHARS + 1)]}, "1 to 256 characters"),
    ("k zero", {"history": [], "k": 0}, "body.k"),
    ("k negative", {"history": [], "k": -3}, "body.k"),
    ("k huge", {"history": [], "k": 10**9}, "body.k"),
    ("k over catalogue", {"history": [], "k": 61}, "larger than the catalogue (60 items)"),
    ("k a string", {"history": [], "k": "5"}, "body.k"),
    ("k a float", {"history": [], "k": 2.5}, "body.k"),
    ("k null", {"history": [], "k": None}, "body.k"),
    ("exclude_history a string", {"history": [], "exclude_history": "yes"}, "exclude_history"),
    ("unknown field", {"history": [], "user": "u1"}, "body.user: Extra inputs"),
    ("empty batch", {"histories": []}, "at least 1 item"),
    ("batch of non-lists", {"histories": ["sku-10"]}, "body.histories.0"),
    ("history too long", {"history": _long(MAX_HISTORY + 1)}, "at most 10000"),
    ("batch too big", {"histories": [[]] * (MAX_BATCH + 1)}, "at most 1000"),
    ("too many ids in all", {"histories": [_long(MAX_HISTORY)] * 21}, "at most 200000"),
]


@pytest.mark.parametrize(("body", "needle"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_requests_get_422_with_a_message(client: TestClient, body: Any, needle: str) -> None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    resp = client.post("/recommend", content=raw, headers={"content-type": "application/json"})
    assert resp.status_code == 422, resp.text
    msg = resp.json()["message"]
    assert needle in msg, msg
    assert "\n" not in msg and len(msg) < 600  # one line, and the input is never echoed


def test_other_4xx(client: TestClient) -> None:
    cases = [
        client.post("/recommend", content=b'{"history": []}', headers={"content-type": "text/plain"}),
        client.get("/recommend"),
        client.get("/nowhere"),
        client.post("/recommend", content=b"x" * (MAX_BODY_BYTES + 1),
                    headers={"content-type": "application/json"}),
    ]  # fmt: skip
    assert [r.status_code for r in cases] == [422, 405, 404, 413]
    assert all(r.json()["message"] for r in cases)

    def chunks():  # no Content-Length: counted as it arrives
        yield b'{"history": ["'
        for _ in range(MAX_BODY_BYTES // 2**20 + 1):
            yield b"a" * 2**20
        yield b'"]}'

    resp = client.post("/recommend", content=chunks(), headers={"content-type": "application/json"})
    assert resp.status_code == 413 and "larger than" in resp.json()["message"]


def failing_recommender(rec: Recommender) -> Recommender:
    """A copy of ``rec`` whose every recommend call raises an internal error."""
    broken = Recommender(rec.model, rec.vocab, maxlen=rec.maxlen)

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internal detail")

    broken.recommend = boom  # type: ignore[method-assign]
    return broken


def test_unexpected_errors_are_a_logged_500_without_internals(
    rec: Recommender, caplog: pytest.LogCaptureFixture
) -> None:
    broken = failing_recommender(rec)
    c = TestClient(create_app(broken), raise_server_exceptions=False)
    with caplog.at_level(logging.ERROR, logger="seqrec.serve"):
        resp = c.post("/recommend", json={"history": ["sku-10"]})
    assert resp.status_code == 500
    assert "secret" not in resp.text and resp.json()["error"] == "internal error"
    assert "secret internal detail" in caplog.text


def test_serve_command_answers_on_localhost(tmp_path: Path) -> None:
    """`seqrec serve RUN` as a user starts it: a real uvicorn process on 127.0.0.1."""
    import os
    import socket
    import subprocess
    import sys
    import time

    import httpx

    run = train_tiny_run(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "seqrec.cli", "serve", str(run), "--port", str(port),
         "--log-level", "warning"],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, proc.communicate()[1].decode()
            assert time.monotonic() < deadline, "the server did not come up"
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        assert health.json() == {"status": "ok", "n_items": 60}
        resp = httpx.post(
            f"http://127.0.0.1:{port}/recommend", json={"history": ["sku-10", "nope"], "k": 3}
        )
        body = resp.json()["results"][0]
        assert resp.status_code == 200 and body["unknown"] == ["nope"] and len(body["items"]) == 3
        assert httpx.get(f"http://127.0.0.1:{port}/model").json()["run"] == "tiny"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# ----------------------------------------------------------------------------- micro-batching


def _expected(rec: Recommender, body: dict[str, Any]) -> dict[str, Any]:
    """The answer to ``body`` computed alone, one history per Recommender call."""
    k, exclude = body.get("k", 10), body.get("exclude_history", True)
    histories = [body["history"]] if "history" in body else body["histories"]
    results = [rec.recommend_one(h, k=k, exclude_history=exclude) for h in histories]
    return {
        "k": k,
        "results": [
            {
                "items": [
                    {"item": i, "score": s, "title": None}
                    for i, s in zip(r.items, r.scores, strict=True)
                ],
                "unknown": r.unknown,
                "history_used": r.history_used,
                "source": r.source,
            }
            for r in results
        ],
    }


def _concurrently(app: Any, bodies: list[dict[str, Any]]) -> list[Any]:
    """POST every body to /recommend at once (one event loop, like one uvicorn worker)."""
    import asyncio

    import httpx

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)  # 500s are answers
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            return await asyncio.gather(*(c.post("/recommend", json=b) for b in bodies))

    return asyncio.run(run())


def _mixed_bodies(rec: Recommender) -> list[dict[str, Any]]:
    items = rec.vocab.items
    singles = [{"history": list(items[i : i + 1 + i % 7]), "k": 5} for i in range(10)]
    return [
        *singles,
        {"history": [items[3], items[9]], "k": 3, "exclude_history": False},
        {"history": [], "k": 4},
        {"history": ["ghost", items[5], "ghost"], "k": 5},
        {"history": ["ghost"], "k": 5},
        {"histories": [[items[1]], [], list(items[20:35])], "k": 5},
        {"history": list(items[40:52]), "k": 3, "exclude_history": False},
    ]


@pytest.mark.parametrize("max_batch", [64, 3, 1])
def test_concurrent_requests_are_batched_with_unchanged_answers(
    rec: Recommender, max_batch: int
) -> None:
    """Concurrent requests (different k, exclusion, batch requests, fallbacks, unknown ids) get,
    to the bit, the answers they get alone; they share model calls unless max_batch is 1."""
    app = create_app(rec, batch_wait_ms=50, max_batch=max_batch)
    bodies = _mixed_bodies(rec)
    responses = _concurrently(app, bodies)
    assert [r.status_code for r in responses] == [200] * len(bodies)
    for body, resp in zip(bodies, responses, strict=True):
        assert resp.headers["content-type"] == "application/json"
        assert resp.json() == _expected(rec, body)
    calls = app.state.batcher.calls
    n_histories = sum(len(b.get("histories", [[]])) for b in bodies)
    if max_batch == 1:
        assert calls == len(bodies)  # one call per request (a batch request is one call)
    elif max_batch == 3:  # at most 3 histories a call (a larger request would go alone)
        assert -(-n_histories // 3) <= calls < len(bodies)
    else:
        assert calls < len(bodies) // 2


def test_a_failing_model_call_fails_each_request_of_the_batch_with_a_500(
    rec: Recommender, caplog: pytest.LogCaptureFixture
) -> None:
    broken = failing_recommender(rec)
    app = create_app(broken, batch_wait_ms=50)
    with caplog.at_level(logging.ERROR, logger="seqrec.serve"):
        responses = _concurrently(app, [{"history": ["sku-10"]}] * 4)
    assert [r.status_code for r in responses] == [500] * 4
    assert all("secret" not in r.text for r in responses)
    assert app.state.batcher.calls == 1
