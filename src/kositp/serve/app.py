"""The FastAPI gateway: OpenAI-compatible endpoints, auth, limits, metrics, over one backend.

`create_app(cfg)` builds the app from its parts: a `ServeState` (state.py) shared by the routers
(routes/generation.py, routes/models.py, routes/service.py), OpenAI-shaped error handlers
(errors.py), and the middleware: request-body guard outermost (security.py), then metrics.
`kositp.serve.server` runs it with uvicorn. Streams are Server-Sent Events ending in
`data: [DONE]`, exactly what the `openai` client parses.
"""

from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI

from kositp.serve.backends.base import Backend
from kositp.serve.config import ServeConfig
from kositp.serve.errors import install_error_handlers
from kositp.serve.metrics import ServeMetrics
from kositp.serve.routes import generation, models, service
from kositp.serve.security import RequestBodyGuard
from kositp.serve.state import ServeState

log = logging.getLogger("kositp.serve")

# Route paths used as metric labels; anything else is "other" so random URLs cannot blow up the labels.
KNOWN_PATHS = {"/v1/models", "/v1/chat/completions", "/v1/completions", "/health", "/ready", "/metrics"}


def make_backend(cfg: ServeConfig) -> Backend:
    if cfg.backend == "vllm":
        from kositp.serve.backends.vllm import VllmBackend

        return VllmBackend(cfg)
    from kositp.serve.backends.transformers import TransformersBackend

    return TransformersBackend(cfg)


class MetricsMiddleware:
    """Counts every response by route and status and times it to its last byte (streams included)."""

    def __init__(self, app, metrics: ServeMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        label = path if path in KNOWN_PATHS else "/v1/models/{id}" if path.startswith("/v1/models/") else "other"
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
    state = ServeState(cfg, backend or make_backend(cfg))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await state.backend.start()
        state.started = True
        log.info("serving %s with the %s backend", ", ".join(state.backend.model_ids), cfg.backend)
        try:
            yield
        finally:
            state.draining = True
            await state.backend.stop()

    app = FastAPI(
        title="kositp OpenAI-compatible API",
        version="1",
        description="Chat and text completions for kositp models (transformers or vLLM backend).",
        lifespan=lifespan,
        # served by routes/service.py, behind the API key unless the metadata is public
        docs_url=None, redoc_url=None, openapi_url=None,
    )
    app.state.cfg = cfg
    app.state.serve = state
    app.state.backend = state.backend
    app.state.metrics = state.metrics
    install_error_handlers(app, cfg.retry_after_s)
    app.include_router(service.router)
    app.include_router(models.router)
    app.include_router(generation.router)

    # Starlette runs the middleware added last outermost: metrics see every response (rejected bodies
    # too), and the body guard runs before anything else reads the body.
    if cfg.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=cfg.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(RequestBodyGuard, limit=cfg.max_body_bytes, timeout_s=cfg.body_timeout_s)
    app.add_middleware(MetricsMiddleware, metrics=state.metrics)
    return app
