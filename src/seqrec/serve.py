"""An HTTP service for a trained run (FastAPI): ``POST /recommend``, ``GET /model``, ``GET /health``.

``POST /recommend`` takes either one history or a batch (raw item ids, oldest first; strings or
integers)::

    {"history": ["B0001", "B0042"], "k": 10}
    {"histories": [["B0001"], ["B0042", "B0007"]], "k": 10, "exclude_history": true}

and answers, one entry per history in request order::

    {"k": 10, "results": [{"items": [{"item": "B0311", "score": 7.1, "title": null}, ...],
                           "unknown": [], "history_used": 2, "source": "model"}, ...]}

Ids not in the run's vocabulary are dropped and listed in ``unknown``. A history that is empty
or has no known id gets the **popularity fallback** (the most frequent training items, scores are
training counts, ``source: "popularity"``). Bounds: ``1 <= k <= min(1000, catalogue size)``, a
history has at most 10,000 ids, a batch at most 1,000 histories and 200,000 ids in all, an id at
most 256 characters, a body at most 8 MiB. Every bad request gets a 4xx with a one-line
``message`` (422 for a body that does not validate, 413 for a body too large); an unexpected
failure is logged and answered with a 500 without internals.

Per request there is no model loading and no graph building: the model is loaded once, runs
under ``torch.inference_mode``, and each worker uses ``threads`` torch threads (default 1: with
small per-request work, one thread per worker process gives the best throughput; use more
workers, not more threads, to use more cores).

**Micro-batching.** Concurrent requests are gathered into one model call (:class:`MicroBatcher`):
the model runs on one dedicated thread per worker, and the requests that arrive while it works
(or within ``batch_wait_ms`` of the oldest waiting one) form the next call, up to ``max_batch``
histories. One call for 16 histories costs about as much as two single ones, so throughput
grows with the load instead of latency. Every answer is exactly, bit for bit, what the request
would get alone (see :mod:`seqrec.recommend`); ``max_batch=1`` turns batching off.

Cost per request is kept low on the hot path: the endpoint is ``async`` (no thread-pool hop per
request), the answer is serialised once with orjson instead of being re-validated against the
response model (the OpenAPI schema still documents it), uvicorn runs on httptools and uvloop
(when installed; they are dependencies) without an access log, and the objects loaded at
start-up are exempted from garbage collection (``gc.freeze``), whose first full pass over them
would otherwise stall every request in flight.

The OpenAPI schema is at ``/openapi.json`` and interactive docs at ``/docs``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    WithJsonSchema,
    model_validator,
)
from starlette.exceptions import HTTPException as StarletteHTTPException

from seqrec.errors import one_line
from seqrec.recommend import Recommender, Result

log = logging.getLogger("seqrec.serve")

MAX_K = 1000
MAX_HISTORY = 10_000
MAX_BATCH = 1000
MAX_TOTAL_ITEMS = 200_000
MAX_ID_CHARS = 256
MAX_BODY_BYTES = 8 * 2**20
RUN_DIR_ENV = "SEQREC_SERVE_RUN_DIR"  # for multi-worker serving (workers import the app factory)
DATA_DIR_ENV = "SEQREC_SERVE_DATA_DIR"
THREADS_ENV = "SEQREC_SERVE_THREADS"
BATCH_WAIT_ENV = "SEQREC_SERVE_BATCH_WAIT_MS"
MAX_BATCH_ENV = "SEQREC_SERVE_MAX_BATCH"
BATCH_WAIT_MS = 1.0  # longest wait of a request for companions in its model call (milliseconds)
MAX_MICRO_BATCH = 64  # most histories gathered into one model call
WORKER_STARTUP_SECONDS = 180  # uvicorn restarts a worker silent this long (default 5 s: too
# short for importing torch and loading a model on a busy machine)

_JSON_TYPES = {
    float: "a number",
    type(None): "null",
    list: "an array",
    dict: "an object",
    bool: "a boolean",
}


def _item_id(value: Any) -> str:
    """A raw item id: a non-empty string (at most MAX_ID_CHARS) or an integer, returned as str."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        got = _JSON_TYPES.get(type(value), type(value).__name__)
        raise ValueError(f"an item id must be a string or an integer, got {got}")
    raw = value if isinstance(value, str) else str(value)
    if not raw or len(raw) > MAX_ID_CHARS:
        raise ValueError(f"an item id must have 1 to {MAX_ID_CHARS} characters")
    return raw


ItemId = Annotated[
    str,
    BeforeValidator(_item_id),
    WithJsonSchema({"anyOf": [{"type": "string", "maxLength": MAX_ID_CHARS}, {"type": "integer"}]}),
]
History = Annotated[list[ItemId], Field(max_length=MAX_HISTORY)]


class RecommendRequest(BaseModel):
    """One history (``history``) or a batch (``histories``), not both; raw ids, oldest first."""

    model_config = ConfigDict(extra="forbid")

    history: History | None = Field(
        None, description="One user's item ids, oldest first (strings or integers)."
    )
    histories: Annotated[list[History], Field(min_length=1, max_length=MAX_BATCH)] | None = Field(
        None, description="A batch of histories; the results come back in the same order."
    )
    k: Annotated[StrictInt, Field(ge=1, le=MAX_K)] = Field(
        10, description="How many items to return (at most the catalogue size)."
    )
    exclude_history: StrictBool = Field(
        True, description="Never recommend an item that is already in the history."
    )

    @model_validator(mode="after")
    def _one_of(self) -> RecommendRequest:
        if (self.history is None) == (self.histories is None):
            raise ValueError("give exactly one of 'history' (one list) or 'histories' (a batch)")
        if self.histories is not None:
            total = sum(len(h) for h in self.histories)
            if total > MAX_TOTAL_ITEMS:
                raise ValueError(
                    f"the batch holds {total} ids in all; at most {MAX_TOTAL_ITEMS} per request "
                    "(split it into smaller requests)"
                )
        return self


class ScoredItem(BaseModel):
    item: str
    score: float
    title: str | None = None


class Recommendation(BaseModel):
    items: list[ScoredItem]
    unknown: list[str] = Field(description="Ids of the history not in the catalogue (dropped).")
    history_used: int = Field(description="How many known items the model saw (<= maxlen).")
    source: Literal["model", "popularity", "unavailable"] = Field(
        description="model; popularity for an empty or all-unknown history; unavailable when "
        "the run has no popularity counts."
    )


class RecommendResponse(BaseModel):
    k: int
    results: list[Recommendation]


class Health(BaseModel):
    status: Literal["ok"]
    n_items: int


def _message(errors: list[Any]) -> str:
    """One line from pydantic errors: 'body.k: Input should be ...; ...'."""
    parts = []
    for err in errors[:5]:
        loc = ".".join(str(x) for x in err.get("loc", ()))
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        kind = err.get("type")
        if kind == "json_invalid":
            loc, msg = "body", f"not valid JSON ({err.get('ctx', {}).get('error', 'parse error')})"
        elif kind in ("model_attributes_type", "missing") and loc == "body":
            msg = (
                'must be a JSON object such as {"history": ["id1", "id2"], "k": 10}, sent with '
                "Content-Type: application/json"
            )
        parts.append(f"{loc}: {msg}" if loc else msg)
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return one_line("; ".join(parts) + more)  # a field name can hold any character


class ContentLengthLimit:
    """Pure ASGI middleware: a declared Content-Length over ``max_bytes`` gets a JSON 413 before
    anything is read; a body without one (chunked) is counted as it arrives and stopped with a
    413 once it exceeds ``max_bytes``."""

    def __init__(self, app: Any, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            for name, value in scope.get("headers", ()):
                if name == b"content-length":
                    if value.isdigit() and int(value) > self.max_bytes:
                        response = JSONResponse(
                            {"error": "payload too large",
                             "message": f"the body is larger than {self.max_bytes} bytes; send "
                             "smaller batches"},
                            status_code=413,
                        )  # fmt: skip
                        await response(scope, receive, send)
                        return
                    break
        received = 0
        limit = self.max_bytes

        async def counted() -> Any:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise StarletteHTTPException(413)  # turned into JSON by the app's handler
            return message

        await self.app(scope, counted if scope["type"] == "http" else receive, send)


@dataclass
class _Job:
    """One waiting ``recommend`` call of :class:`MicroBatcher`."""

    histories: list[list[str]]
    k: int
    exclude_history: bool
    future: asyncio.Future[list[Result]]
    arrived: float  # event-loop time


class MicroBatcher:
    """Gathers concurrent :meth:`Recommender.recommend` calls into one (dynamic micro-batching).

    ``await batcher.recommend(histories, k, exclude_history)`` queues the call. One drain task
    (started when the queue stops being empty, ended when it is empty again) takes the queue in
    arrival order, at most ``max_histories`` histories at a time (a bigger call goes alone),
    groups the calls by ``(k, exclude_history)`` and runs each group as one
    ``recommender.recommend`` on a dedicated thread, so the event loop goes on reading requests
    while the model works: those form the next batch. When the model is idle, the oldest waiting
    call waits at most ``max_wait`` seconds for companions. An exception fails every call of its
    group. Answers are exactly those of lone calls (see :mod:`seqrec.recommend`).

    Args:
        recommender: the loaded model (its ``recommend`` is looked up at every call).
        max_wait: seconds the oldest queued call may wait for companions (0: none).
        max_histories: most histories per model call (1: no batching, calls run one by one).
    """

    def __init__(
        self,
        recommender: Recommender,
        *,
        max_wait: float = BATCH_WAIT_MS / 1000,
        max_histories: int = MAX_MICRO_BATCH,
    ) -> None:
        self.recommender = recommender
        self.max_wait = max(0.0, float(max_wait))
        self.max_histories = max(1, int(max_histories))
        self._queue: deque[_Job] = deque()
        self._queued = 0  # histories in the queue
        self._drainer: asyncio.Task[None] | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="seqrec-model")
        self.calls = 0  # model calls made (for tests and diagnostics)

    async def recommend(
        self, histories: list[list[str]], k: int, exclude_history: bool
    ) -> list[Result]:
        """The results of ``recommender.recommend(histories, k, exclude_history)``."""
        loop = asyncio.get_running_loop()
        job = _Job(histories, k, exclude_history, loop.create_future(), loop.time())
        self._queue.append(job)
        self._queued += len(histories)
        drainer = self._drainer
        if drainer is None or drainer.done() or drainer.get_loop() is not loop:
            self._drainer = loop.create_task(self._drain())
        return await job.future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                if self.max_wait > 0 and self._queued < self.max_histories:
                    delay = self._queue[0].arrived + self.max_wait - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)  # companions may arrive meanwhile
                batch = self._take()
                groups: dict[tuple[int, bool], list[_Job]] = {}
                for job in batch:
                    groups.setdefault((job.k, job.exclude_history), []).append(job)
                for (k, exclude), jobs in groups.items():
                    await self._run(loop, jobs, k, exclude)
        except BaseException:  # cancelled (the server stops): no call may wait forever
            while self._queue:
                self._queue.popleft().future.cancel()
            self._queued = 0
            raise

    def _take(self) -> list[_Job]:
        """Queued calls in arrival order, up to max_histories histories (at least one call)."""
        batch: list[_Job] = []
        n = 0
        while self._queue:
            job = self._queue[0]
            if batch and n + len(job.histories) > self.max_histories:
                break
            self._queue.popleft()
            self._queued -= len(job.histories)
            if job.future.done():  # the client went away
                continue
            batch.append(job)
            n += len(job.histories)
        return batch

    async def _run(
        self, loop: asyncio.AbstractEventLoop, jobs: list[_Job], k: int, exclude: bool
    ) -> None:
        histories = [h for job in jobs for h in job.histories]
        self.calls += 1
        try:
            results = await loop.run_in_executor(self._thread, self._call, histories, k, exclude)
        except Exception as exc:
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        except BaseException:
            for job in jobs:
                job.future.cancel()
            raise
        start = 0
        for job in jobs:
            end = start + len(job.histories)
            if not job.future.done():
                job.future.set_result(results[start:end])
            start = end

    def _call(self, histories: list[list[str]], k: int, exclude: bool) -> list[Result]:
        return self.recommender.recommend(histories, k=k, exclude_history=exclude)


def _recommend_body(k: int, results: list[Result]) -> bytes:
    """The JSON body of a ``RecommendResponse`` (built directly: the values are already checked)."""
    out = []
    for r in results:
        titles = r.titles if r.titles is not None else [None] * len(r.items)
        out.append(
            {
                "items": [
                    {"item": i, "score": s, "title": t}
                    for i, s, t in zip(r.items, r.scores, titles, strict=True)
                ],
                "unknown": r.unknown,
                "history_used": r.history_used,
                "source": r.source,
            }
        )
    return orjson.dumps({"k": k, "results": out})


def create_app(
    recommender: Recommender,
    *,
    batch_wait_ms: float = BATCH_WAIT_MS,
    max_batch: int = MAX_MICRO_BATCH,
) -> FastAPI:
    """The FastAPI app serving ``recommender`` (loaded once; see the module docstring).

    batch_wait_ms, max_batch: micro-batching of concurrent requests (:class:`MicroBatcher`);
        ``max_batch=1`` turns it off.
    """
    app = FastAPI(
        title="seqrec",
        description="Next-item recommendations from a trained sequential recommender. Send raw "
        "item ids, oldest first; unknown ids are dropped and reported; an empty history gets "
        "the most popular training items (source 'popularity').",
        version=str(recommender.info.get("run", "")) or "0",
    )
    n_items = recommender.n_items
    batcher = MicroBatcher(recommender, max_wait=batch_wait_ms / 1000, max_histories=max_batch)
    app.state.batcher = batcher

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {k: v for k, v in e.items() if k in ("loc", "msg", "type")}  # never echo the input
            | ({"ctx": {"error": str(e["ctx"]["error"])}} if "error" in e.get("ctx", {}) else {})
            for e in exc.errors()
        ]
        return JSONResponse(
            {"error": "invalid request", "message": _message(errors), "detail": errors},
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message, label, status = str(exc.detail), "http error", exc.status_code
        if status == 400:  # FastAPI could not decode the body (e.g. not UTF-8): a bad request
            label, status = "invalid request", 422
            message = (
                "body: not valid JSON (send UTF-8 encoded JSON with Content-Type: application/json)"
            )
        elif exc.status_code == 413:
            label = "payload too large"
            message = f"the body is larger than {MAX_BODY_BYTES} bytes; send smaller batches"
        elif exc.status_code == 404:
            message = (
                f"no endpoint {request.url.path}; use POST /recommend, GET /model, GET /health"
            )
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        return JSONResponse(
            {"error": label, "message": message},
            status_code=status,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error serving %s %s", request.method, request.url.path)
        return JSONResponse(
            {"error": "internal error", "message": "the server failed; see its log"},
            status_code=500,
        )

    @app.get("/health", response_model=Health)
    def health() -> dict[str, Any]:
        """Liveness: the model is loaded."""
        return {"status": "ok", "n_items": n_items}

    @app.get("/model")
    def model_info() -> dict[str, Any]:
        """The run behind the service: dataset, model and loss config, metrics, when trained."""
        return recommender.info

    @app.post(
        "/recommend",
        response_model=RecommendResponse,
        responses={413: {"description": "Body too large"}, 422: {"description": "Bad request"}},
    )
    async def recommend(req: RecommendRequest) -> Any:
        """Top-k next items for one history or a batch (see the service description)."""
        if req.k > n_items:
            return JSONResponse(
                {"error": "invalid request",
                 "message": f"body.k: {req.k} is larger than the catalogue ({n_items} items)"},
                status_code=422,
            )  # fmt: skip
        histories = [req.history] if req.histories is None else req.histories
        results = await batcher.recommend(
            histories,  # type: ignore[arg-type]  # ints are mapped with str()
            req.k,
            req.exclude_history,
        )
        return Response(_recommend_body(req.k, results), media_type="application/json")

    app.add_middleware(ContentLengthLimit, max_bytes=MAX_BODY_BYTES)

    return app


def _set_threads(threads: int) -> None:
    torch.set_num_threads(max(1, int(threads)))


def _freeze_heap() -> None:
    """Exempt everything loaded so far (torch, the model, the app: ~200k objects) from garbage
    collection: otherwise the first full collection under load scans them all and stalls every
    request in flight for a few hundred milliseconds (measured: 260-340 ms on 2 busy cores)."""
    gc.collect()
    gc.freeze()


def app_from_env() -> FastAPI:
    """App factory for multi-worker serving: reads the run folder from $SEQREC_SERVE_RUN_DIR
    (and the other settings from the SEQREC_SERVE_* variables :func:`serve` sets)."""
    run_dir = os.environ.get(RUN_DIR_ENV)
    if not run_dir:
        raise RuntimeError(f"set {RUN_DIR_ENV} to a run folder")
    _set_threads(int(os.environ.get(THREADS_ENV, "1")))
    data_dir = os.environ.get(DATA_DIR_ENV) or None
    app = create_app(
        Recommender.from_run(run_dir, data_dir=data_dir),
        batch_wait_ms=float(os.environ.get(BATCH_WAIT_ENV, BATCH_WAIT_MS)),
        max_batch=int(os.environ.get(MAX_BATCH_ENV, MAX_MICRO_BATCH)),
    )
    _freeze_heap()
    return app


def serve(
    run_dir: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    workers: int = 1,
    threads: int = 1,
    data_dir: str | Path | None = None,
    log_level: str = "info",
    batch_wait_ms: float = BATCH_WAIT_MS,
    max_batch: int = MAX_MICRO_BATCH,
) -> None:
    """Serve ``run_dir``'s best checkpoint with uvicorn (blocks until stopped).

    The model is loaded before the socket opens, so a bad run folder fails fast. ``workers`` > 1
    starts that many processes (spawned: the calling script must guard its entry point with
    ``if __name__ == "__main__"``, as the ``seqrec`` command does), each loading the model and
    using ``threads`` torch threads. ``batch_wait_ms`` and ``max_batch`` tune the micro-batching
    of concurrent requests (:class:`MicroBatcher`; ``max_batch=1`` turns it off).
    """
    import uvicorn

    recommender = Recommender.from_run(run_dir, data_dir=data_dir)  # fail fast, in this process
    # httptools and uvloop when installed (both are dependencies), else h11 and asyncio
    fast = {"http": "auto", "loop": "auto", "access_log": False, "log_level": log_level}
    if workers <= 1:
        _set_threads(threads)
        app = create_app(recommender, batch_wait_ms=batch_wait_ms, max_batch=max_batch)
        _freeze_heap()
        uvicorn.run(app, host=host, port=port, **fast)
        return
    del recommender
    os.environ[RUN_DIR_ENV] = str(Path(run_dir).resolve())
    os.environ[THREADS_ENV] = str(threads)
    os.environ[BATCH_WAIT_ENV] = str(batch_wait_ms)
    os.environ[MAX_BATCH_ENV] = str(max_batch)
    if data_dir is not None:
        os.environ[DATA_DIR_ENV] = str(data_dir)
    uvicorn.run(
        "seqrec.serve:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        timeout_worker_healthcheck=WORKER_STARTUP_SECONDS,
        **fast,
    )
