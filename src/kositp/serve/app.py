"""The FastAPI gateway: OpenAI-compatible endpoints, auth, limits, metrics, over one backend.

`create_app(cfg)` builds the app; `kositp.serve.server` runs it with uvicorn. Every error a client
can cause is an OpenAI-style 4xx body (`{"error": {"message", "type", "param", "code"}}`); streams
are Server-Sent Events ending in `data: [DONE]`, exactly what the `openai` client parses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from kositp.serve import schemas
from kositp.serve.backends.base import Backend, BackendRequestError, BackendUnavailable, Finished, TextDelta
from kositp.serve.config import ServeConfig
from kositp.serve.metrics import ServeMetrics
from kositp.serve.security import BodySizeLimit, key_matches, load_api_keys

log = logging.getLogger("kositp.serve")

# Route paths used as metric labels; anything else is "other" so random URLs cannot blow up the labels.
KNOWN_PATHS = {"/v1/models", "/v1/chat/completions", "/v1/completions", "/health", "/ready", "/metrics"}


class ApiError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", code=None, param=None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param
        self.headers = headers


def _error_response(status: int, message: str, type_: str = "invalid_request_error", code=None, param=None,
                    headers=None) -> JSONResponse:
    return JSONResponse(schemas.error_body(message, type_, param, code), status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    err = exc.errors()[0]
    loc = [str(p) for p in err.get("loc", ()) if p != "body"]
    where = ".".join(loc)
    if err.get("type") == "json_invalid":
        return "request body is not valid JSON", None
    if not loc and err.get("type") in ("model_attributes_type", "dict_type", "model_type", "missing"):
        return "request body must be a JSON object (send Content-Type: application/json)", None
    msg = err.get("msg", "invalid request")
    return (f"{where}: {msg}" if where else msg), (loc[0] if loc else None)


async def _prefetched(events: AsyncIterator) -> AsyncIterator:
    """Wait for the first event before the 200 goes out, so a backend's refusal (unknown model, prompt
    too long, no replica) still becomes a proper 4xx/503 instead of an error inside a started stream."""
    try:
        first = await events.__anext__()
    except StopAsyncIteration:
        first = None
    except BaseException:
        with contextlib.suppress(Exception):
            await events.aclose()
        raise

    async def chained():
        try:
            if first is not None:
                yield first
            async for ev in events:
                yield ev
        finally:
            await events.aclose()

    return chained()


def make_backend(cfg: ServeConfig) -> Backend:
    if cfg.backend == "vllm":
        from kositp.serve.backends.vllm import VllmBackend

        return VllmBackend(cfg)
    from kositp.serve.backends.transformers import TransformersBackend

    return TransformersBackend(cfg)


class _MetricsMiddleware:
    """Counts every response by route and status and times it to its last byte (streams included)."""

    def __init__(self, app, metrics: ServeMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        label = path if path in KNOWN_PATHS else "other"
        start = time.monotonic()
        status = 500

        async def timed_send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            self.metrics.requests.labels(label, str(status)).inc()
            self.metrics.latency.labels(label).observe(time.monotonic() - start)


def create_app(cfg: ServeConfig, backend: Backend | None = None) -> FastAPI:
    """The gateway for `cfg`; pass `backend` to serve an already built one (tests, embedding)."""
    backend = backend or make_backend(cfg)
    metrics = ServeMetrics()
    api_keys = load_api_keys(cfg.api_key_file, cfg.api_key_env)
    state = {"in_flight": 0, "draining": False, "started": False}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await backend.start()
        state["started"] = True
        log.info("serving %s with the %s backend", ", ".join(backend.model_ids), cfg.backend)
        try:
            yield
        finally:
            state["draining"] = True
            await backend.stop()

    app = FastAPI(
        title="kositp OpenAI-compatible API",
        version="1",
        description="Chat and text completions for kositp models (transformers or vLLM backend).",
        lifespan=lifespan,
    )
    app.state.cfg = cfg
    app.state.backend = backend
    app.state.metrics = metrics
    app.state.serve_state = state

    # ------------------------------------------------------------------ errors: always OpenAI-shaped 4xx

    @app.exception_handler(RequestValidationError)
    async def _on_validation(_: Request, exc: RequestValidationError):
        message, param = _validation_message(exc)
        return _error_response(400, message, param=param)

    @app.exception_handler(StarletteHTTPException)
    async def _on_http(_: Request, exc: StarletteHTTPException):
        type_ = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return _error_response(exc.status_code, str(exc.detail), type_, headers=getattr(exc, "headers", None))

    @app.exception_handler(ApiError)
    async def _on_api_error(_: Request, exc: ApiError):
        return _error_response(exc.status, exc.message, exc.type, exc.code, exc.param, exc.headers)

    @app.exception_handler(BackendRequestError)
    async def _on_backend_request(_: Request, exc: BackendRequestError):
        return _error_response(exc.status, exc.message, code=exc.code, param=exc.param)

    @app.exception_handler(BackendUnavailable)
    async def _on_unavailable(_: Request, exc: BackendUnavailable):
        return _error_response(503, str(exc), "service_unavailable", headers={"Retry-After": str(cfg.retry_after_s)})

    @app.exception_handler(Exception)
    async def _on_crash(_: Request, exc: Exception):
        log.exception("unhandled error")
        return _error_response(500, "internal server error", "server_error")

    # ------------------------------------------------------------------ auth and limits

    async def require_key(request: Request) -> None:
        if not api_keys:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token or not key_matches(token.strip(), api_keys):
            metrics.rejected.labels("auth").inc()
            raise ApiError(401, "missing or invalid API key (send 'Authorization: Bearer KEY')",
                           "authentication_error", code="invalid_api_key",
                           headers={"WWW-Authenticate": "Bearer"})

    def check_limits(req: schemas._SamplingParams, messages: list[schemas.ChatMessage] | None) -> int:
        max_tokens = req.max_tokens if req.max_tokens is not None else cfg.default_max_tokens
        if max_tokens > cfg.max_tokens_limit:
            raise ApiError(400, f"max_tokens {max_tokens} exceeds this server's limit of {cfg.max_tokens_limit}",
                           param="max_tokens")
        if len(req.stops) > cfg.max_stop_sequences:
            raise ApiError(400, f"at most {cfg.max_stop_sequences} stop sequences are allowed", param="stop")
        if messages is not None:
            if len(messages) > cfg.max_messages:
                raise ApiError(400, f"{len(messages)} messages; at most {cfg.max_messages} are allowed",
                               param="messages")
            for i, m in enumerate(messages):
                if len(m.text()) > cfg.max_message_chars:
                    raise ApiError(400, f"messages[{i}] has {len(m.text())} characters; at most "
                                   f"{cfg.max_message_chars} are allowed", param="messages")
            if not any(m.role == "user" for m in messages):
                raise ApiError(400, "messages must contain at least one user message", param="messages")
        return max_tokens

    @contextlib.asynccontextmanager
    async def slot():
        """One of `max_concurrency` generation slots, or 429 with Retry-After."""
        if state["draining"]:
            raise BackendUnavailable("server is shutting down")
        if state["in_flight"] >= cfg.max_concurrency:
            metrics.rejected.labels("concurrency").inc()
            raise ApiError(429, f"too many concurrent requests (limit {cfg.max_concurrency}); retry shortly",
                           "rate_limit_error", code="rate_limit_exceeded",
                           headers={"Retry-After": str(cfg.retry_after_s)})
        state["in_flight"] += 1
        metrics.in_flight.inc()
        try:
            yield
        finally:
            state["in_flight"] -= 1
            metrics.in_flight.dec()

    # ------------------------------------------------------------------ generation

    async def collect(events: AsyncIterator, request: Request) -> tuple[str, Finished]:
        """Run a generation to the end; cancel it if the client disconnects meanwhile."""

        async def run() -> tuple[str, Finished]:
            parts: list[str] = []
            async for ev in events:
                if isinstance(ev, TextDelta):
                    parts.append(ev.text)
                elif isinstance(ev, Finished):
                    return "".join(parts), ev
            raise BackendUnavailable("the backend ended the generation without finishing it")

        task = asyncio.ensure_future(run())
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=0.25)
                if done:
                    return task.result()
                if await request.is_disconnected():
                    metrics.cancelled.inc()
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                    raise ApiError(499, "client closed the request")
        finally:
            if not task.done():
                task.cancel()
            await events.aclose() if hasattr(events, "aclose") else None

    def account(fin: Finished) -> None:
        metrics.tokens.labels("prompt").inc(fin.prompt_tokens)
        metrics.tokens.labels("completion").inc(fin.completion_tokens)
        if cfg.log_prompts:
            log.info("finished: %s", fin)

    sse = schemas.sse_event

    async def stream_body(events: AsyncIterator, chunk_of, finish_chunk, usage_obj: str, include_usage: bool,
                          rid: str, model: str, created: int, release) -> AsyncIterator[bytes]:
        """SSE body; if the client disconnects, Starlette cancels this generator and `finally` frees the row."""
        start = time.monotonic()
        first = True
        finished = False
        try:
            opening = chunk_of("")
            if opening is not None:
                yield sse(opening)
            async for ev in events:
                if isinstance(ev, TextDelta):
                    if first:
                        metrics.first_token.observe(time.monotonic() - start)
                        first = False
                    yield sse(chunk_of(ev.text))
                elif isinstance(ev, Finished):
                    finished = True
                    account(ev)
                    yield sse(finish_chunk(ev.reason))
                    if include_usage:
                        yield sse(schemas.usage_chunk(rid, model, created, usage_obj, ev.prompt_tokens,
                                                      ev.completion_tokens))
                    yield b"data: [DONE]\n\n"
                    return
        except (BackendRequestError, BackendUnavailable) as exc:
            yield sse(schemas.error_body(str(exc), "server_error"))
            yield b"data: [DONE]\n\n"
        finally:
            if not finished:
                metrics.cancelled.inc()
            with contextlib.suppress(Exception):
                await events.aclose()
            release()

    async def run_generation(request: Request, req, events_factory, kind: str):
        rid = schemas.new_id("chatcmpl" if kind == "chat" else "cmpl")
        created = int(time.time())
        model = req.model
        metrics.queue_depth.set(backend.queue_depth())
        if not req.stream:
            async with slot():
                events = events_factory()
                text, fin = await collect(events, request)
            account(fin)
            build = schemas.chat_response if kind == "chat" else schemas.completion_response
            return JSONResponse(build(rid, model, text, fin.reason, fin.prompt_tokens, fin.completion_tokens))
        # Streaming: the slot is held until the stream's generator finishes (or is cancelled).
        holder = slot()
        await holder.__aenter__()
        try:
            events = await _prefetched(events_factory())
        except BaseException:
            await holder.__aexit__(None, None, None)
            raise

        def release() -> None:
            asyncio.ensure_future(holder.__aexit__(None, None, None))

        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        if kind == "chat":
            sent_role = {"done": False}

            def chunk_of(text: str):
                if not sent_role["done"]:
                    sent_role["done"] = True
                    return schemas.chat_chunk(rid, model, created, {"role": "assistant", "content": ""})
                return schemas.chat_chunk(rid, model, created, {"content": text}) if text else None

            def finish_chunk(reason: str):
                return schemas.chat_chunk(rid, model, created, {}, reason)

            usage_obj = "chat.completion.chunk"
        else:
            def chunk_of(text: str):
                return schemas.completion_chunk(rid, model, created, text) if text else None

            def finish_chunk(reason: str):
                return schemas.completion_chunk(rid, model, created, "", reason)

            usage_obj = "text_completion"
        body = stream_body(events, chunk_of, finish_chunk, usage_obj, include_usage, rid, model, created, release)
        return StreamingResponse(body, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    # ------------------------------------------------------------------ routes

    error_responses = {
        400: {"description": "Invalid request (OpenAI error body)"},
        401: {"description": "Missing or invalid API key"},
        404: {"description": "Unknown model"},
        413: {"description": "Request body too large"},
        429: {"description": "Too many concurrent requests (see Retry-After)"},
        503: {"description": "Not ready or shutting down"},
    }

    @app.get("/health", summary="Liveness: the process answers.")
    async def health():
        return {"status": "ok"}

    @app.get("/ready", summary="Readiness: the model is loaded and the server is not draining.",
             responses={503: {"description": "Not ready"}})
    async def ready():
        if state["draining"] or not state["started"] or not backend.ready():
            return _error_response(503, "not ready", "service_unavailable")
        return {"status": "ready", "models": backend.model_ids}

    @app.get("/metrics", summary="Prometheus metrics.")
    async def prometheus_metrics():
        metrics.queue_depth.set(backend.queue_depth())
        for name, value in backend.stats().items():
            metrics.backend.labels(name).set(value)
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/v1/models", dependencies=[Depends(require_key)], responses=error_responses)
    async def list_models():
        now = int(time.time())
        return {"object": "list",
                "data": [{"id": m, "object": "model", "created": now, "owned_by": "kositp"} for m in backend.model_ids]}

    @app.post("/v1/chat/completions", dependencies=[Depends(require_key)], responses=error_responses)
    async def chat_completions(body: schemas.ChatCompletionRequest, request: Request):
        max_tokens = check_limits(body, body.messages)
        if cfg.log_prompts:
            log.info("chat request: %s", body.model_dump_json())
        return await run_generation(request, body, lambda: backend.chat(body, max_tokens), "chat")

    @app.post("/v1/completions", dependencies=[Depends(require_key)], responses=error_responses)
    async def completions(body: schemas.CompletionRequest, request: Request):
        max_tokens = check_limits(body, None)
        if len(body.prompt_text) > cfg.max_message_chars:
            raise ApiError(400, f"prompt has {len(body.prompt_text)} characters; at most {cfg.max_message_chars}",
                           param="prompt")
        if cfg.log_prompts:
            log.info("completion request: %s", body.model_dump_json())
        return await run_generation(request, body, lambda: backend.complete(body, max_tokens), "text")

    # Outermost first: size cap before anything reads the body, metrics around everything.
    if cfg.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=cfg.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(BodySizeLimit, limit=cfg.max_body_bytes)
    app.add_middleware(_MetricsMiddleware, metrics=metrics)
    return app
