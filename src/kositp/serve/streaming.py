"""Running a backend's event stream for one request: to the end (JSON reply) or as Server-Sent Events.

Both ways stop early when the client leaves (the backend row is freed) or when the server cuts
requests at the end of a drain (`ServeState.cut`): a JSON request then gets 503, a stream ends with
an error event and `data: [DONE]`, so a client always sees a complete SSE body.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable

from fastapi import Request

from kositp.serve import schemas
from kositp.serve.backends.base import BackendRequestError, BackendUnavailable, Finished, TextDelta
from kositp.serve.errors import ApiError
from kositp.serve.state import ServeState

log = logging.getLogger("kositp.serve")

DONE = b"data: [DONE]\n\n"
CUT_MESSAGE = "the server is shutting down and stopped this generation before it finished"


async def prefetched(events: AsyncIterator) -> AsyncIterator:
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


class Cut(Exception):
    """The drain timeout expired while this generation was running."""


async def until_cut(events: AsyncIterator, cut: asyncio.Event) -> AsyncIterator:
    """`events`, but raising `Cut` as soon as `cut` is set, even while waiting for the next event."""
    cut_wait = asyncio.ensure_future(cut.wait())
    step: asyncio.Future | None = None
    try:
        while True:
            step = asyncio.ensure_future(events.__anext__())
            await asyncio.wait({step, cut_wait}, return_when=asyncio.FIRST_COMPLETED)
            if not step.done():
                raise Cut()
            try:
                event = step.result()
            except StopAsyncIteration:
                return
            yield event
    finally:
        cut_wait.cancel()
        if step is not None and not step.done():  # cut, or this stream was cancelled (client gone)
            step.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration, Exception):
                await step


async def collect(state: ServeState, events: AsyncIterator, request: Request) -> tuple[str, Finished]:
    """Run a generation to the end; stop it if the client disconnects or the drain cuts it."""

    async def run() -> tuple[str, Finished]:
        parts: list[str] = []
        async for ev in events:
            if isinstance(ev, TextDelta):
                parts.append(ev.text)
            elif isinstance(ev, Finished):
                return "".join(parts), ev
        raise BackendUnavailable("the backend ended the generation without finishing it")

    task = asyncio.ensure_future(run())
    cut_wait = asyncio.ensure_future(state.cut.wait())
    try:
        while True:
            done, _ = await asyncio.wait({task, cut_wait}, timeout=0.25, return_when=asyncio.FIRST_COMPLETED)
            if task in done:
                return task.result()
            if cut_wait in done:
                raise BackendUnavailable(CUT_MESSAGE)
            if await request.is_disconnected():
                state.metrics.cancelled.inc()
                raise ApiError(499, "client closed the request")
    finally:
        cut_wait.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await events.aclose() if hasattr(events, "aclose") else None


def account(state: ServeState, fin: Finished) -> None:
    state.metrics.tokens.labels("prompt").inc(fin.prompt_tokens)
    state.metrics.tokens.labels("completion").inc(fin.completion_tokens)
    if state.cfg.log_prompts:
        log.info("finished: %s", fin)


async def sse_body(state: ServeState, events: AsyncIterator, chunk_of: Callable[[str], dict | None],
                   finish_chunk: Callable[[str], dict], usage_chunk: Callable[[Finished], dict] | None,
                   release: Callable[[], None]) -> AsyncIterator[bytes]:
    """The SSE body of a stream. If the client disconnects, Starlette cancels this generator and
    `finally` frees the backend row and the slot."""
    sse = schemas.sse_event
    start = time.monotonic()
    first = True
    finished = False
    try:
        opening = chunk_of("")
        if opening is not None:
            yield sse(opening)
        async for ev in until_cut(events, state.cut):
            if isinstance(ev, TextDelta):
                if first:
                    state.metrics.first_token.observe(time.monotonic() - start)
                    first = False
                chunk = chunk_of(ev.text)
                if chunk is not None:
                    yield sse(chunk)
            elif isinstance(ev, Finished):
                finished = True
                account(state, ev)
                yield sse(finish_chunk(ev.reason))
                if usage_chunk is not None:
                    yield sse(usage_chunk(ev))
                yield DONE
                return
        yield sse(schemas.error_body("the backend ended the stream without finishing it", "server_error"))
        yield DONE
    except Cut:
        yield sse(schemas.error_body(CUT_MESSAGE, "service_unavailable"))
        yield DONE
    except (BackendRequestError, BackendUnavailable) as exc:
        yield sse(schemas.error_body(str(exc), "server_error"))
        yield DONE
    finally:
        if not finished:
            state.metrics.cancelled.inc()
        with contextlib.suppress(Exception):
            await events.aclose()
        release()
