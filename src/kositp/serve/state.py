"""`ServeState`: what the routes of one gateway share (config, backend, metrics, keys) and its lifecycle.

The lifecycle is: starting -> serving -> draining -> stopped. While draining (after SIGTERM), new
generations get 503 with Retry-After, /ready is 503, and the requests in flight may finish for up to
`drain_timeout_s`; those still running then are cut: a stream ends with an error event and
`[DONE]`, a non-streamed request gets 503. `drain()` reports whether everything finished in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from fastapi import Request

from kositp.serve.backends.base import Backend, BackendUnavailable
from kositp.serve.config import ServeConfig
from kositp.serve.errors import ApiError
from kositp.serve.metrics import ServeMetrics
from kositp.serve.schemas import ChatMessage, SamplingParams
from kositp.serve.security import key_matches, load_api_keys

log = logging.getLogger("kositp.serve")

CUT_GRACE_S = 5.0  # after cutting, how long cut requests get to send their final error event


class ServeState:
    def __init__(self, cfg: ServeConfig, backend: Backend) -> None:
        self.cfg = cfg
        self.backend = backend
        self.metrics = ServeMetrics()
        self.api_keys = load_api_keys(cfg.api_key_file, cfg.api_key_env)
        self.in_flight = 0
        self.started = False
        self.draining = False
        self.cut = asyncio.Event()  # set when the drain timeout expires: generations still running stop

    @property
    def public_metadata(self) -> bool:
        """Whether /docs, /redoc, /openapi.json and /ready's model list are served without a key."""
        return self.cfg.public_metadata if self.cfg.public_metadata is not None else not self.api_keys

    # ------------------------------------------------------------------ auth and limits

    def check_key(self, request: Request) -> None:
        if not self.api_keys:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token or not key_matches(token.strip(), self.api_keys):
            self.metrics.rejected.labels("auth").inc()
            raise ApiError(401, "missing or invalid API key (send 'Authorization: Bearer KEY')",
                           "authentication_error", code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})

    def check_limits(self, req: SamplingParams, messages: list[ChatMessage] | None) -> int:
        """The request's max_tokens, after checking it and the messages against this server's caps."""
        cfg = self.cfg
        max_tokens = req.max_tokens if req.max_tokens is not None else cfg.default_max_tokens
        if max_tokens > cfg.max_tokens_limit:
            raise ApiError(400, f"max_tokens {max_tokens} exceeds this server's limit of {cfg.max_tokens_limit}",
                           param="max_tokens")
        if len(req.stops) > cfg.max_stop_sequences:
            raise ApiError(400, f"{len(req.stops)} stop sequences; at most {cfg.max_stop_sequences} are allowed "
                           "by this server", param="stop")
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
    async def slot(self):
        """One of `max_concurrency` generation slots; 503 while draining, 429 when all are taken."""
        if self.draining:
            self.metrics.rejected.labels("draining").inc()
            raise BackendUnavailable("server is shutting down; retry on another replica or after the restart")
        if self.in_flight >= self.cfg.max_concurrency:
            self.metrics.rejected.labels("concurrency").inc()
            raise ApiError(429, f"too many concurrent requests (limit {self.cfg.max_concurrency}); retry shortly",
                           "rate_limit_error", code="rate_limit_exceeded",
                           headers={"Retry-After": str(self.cfg.retry_after_s)})
        self.in_flight += 1
        self.metrics.in_flight.inc()
        try:
            yield
        finally:
            self.in_flight -= 1
            self.metrics.in_flight.dec()

    # ------------------------------------------------------------------ draining

    async def drain(self, timeout_s: float) -> bool:
        """Refuse new generations, wait up to `timeout_s` for those in flight, cut the rest.

        Returns True when every request finished by itself.
        """
        self.draining = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.in_flight and loop.time() < deadline:
            await asyncio.sleep(0.05)
        if not self.in_flight:
            log.info("drained: every request in flight finished")
            return True
        log.warning("drain timeout (%ss): cutting %d request(s) still in flight", timeout_s, self.in_flight)
        self.cut.set()
        deadline = loop.time() + CUT_GRACE_S
        while self.in_flight and loop.time() < deadline:
            await asyncio.sleep(0.05)
        return False
