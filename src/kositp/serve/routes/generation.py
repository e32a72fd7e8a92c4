"""POST /v1/chat/completions and /v1/completions: limits, a concurrency slot, then JSON or SSE."""

from __future__ import annotations

import asyncio
import logging
import time

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse

from kositp.serve import schemas
from kositp.serve.backends.base import Finished
from kositp.serve.errors import ApiError
from kositp.serve.routes.common import ERROR_RESPONSES, require_key, serve_state
from kositp.serve.state import ServeState
from kositp.serve.streaming import account, collect, prefetched, sse_body

log = logging.getLogger("kositp.serve")

router = APIRouter(dependencies=[Depends(require_key)], responses=ERROR_RESPONSES)


@router.post("/v1/chat/completions")
async def chat_completions(body: schemas.ChatCompletionRequest, request: Request):
    state = serve_state(request)
    max_tokens = state.check_limits(body, body.messages)
    if state.cfg.log_prompts:
        log.info("chat request: %s", body.model_dump_json())
    return await run_generation(state, request, body, lambda: state.backend.chat(body, max_tokens), "chat")


@router.post("/v1/completions")
async def completions(body: schemas.CompletionRequest, request: Request):
    state = serve_state(request)
    max_tokens = state.check_limits(body, None)
    if len(body.prompt_text) > state.cfg.max_message_chars:
        raise ApiError(400, f"prompt has {len(body.prompt_text)} characters; at most {state.cfg.max_message_chars}",
                       param="prompt")
    if state.cfg.log_prompts:
        log.info("completion request: %s", body.model_dump_json())
    return await run_generation(state, request, body, lambda: state.backend.complete(body, max_tokens), "text")


async def run_generation(state: ServeState, request: Request, req: schemas.SamplingParams, events_factory,
                         kind: str):
    rid = schemas.new_id("chatcmpl" if kind == "chat" else "cmpl")
    created = int(time.time())
    model = req.model
    state.metrics.queue_depth.set(state.backend.queue_depth())
    if not req.stream:
        async with state.slot():
            text, fin = await collect(state, events_factory(), request)
        account(state, fin)
        build = schemas.chat_response if kind == "chat" else schemas.completion_response
        return JSONResponse(build(rid, model, text, fin.reason, fin.prompt_tokens, fin.completion_tokens))
    # Streaming: the slot is held until the stream's generator finishes (or is cancelled).
    holder = state.slot()
    await holder.__aenter__()
    try:
        events = await prefetched(events_factory())
    except BaseException:
        await holder.__aexit__(None, None, None)
        raise

    def release() -> None:
        asyncio.ensure_future(holder.__aexit__(None, None, None))

    usage_obj = "chat.completion.chunk" if kind == "chat" else "text_completion"
    usage_chunk = None
    if req.stream_options and req.stream_options.include_usage:
        def usage_chunk(fin: Finished) -> dict:
            return schemas.usage_chunk(rid, model, created, usage_obj, fin.prompt_tokens, fin.completion_tokens)

    if kind == "chat":
        sent_role = False

        def chunk_of(text: str):
            nonlocal sent_role
            if not sent_role:
                sent_role = True
                return schemas.chat_chunk(rid, model, created, {"role": "assistant", "content": ""})
            return schemas.chat_chunk(rid, model, created, {"content": text}) if text else None

        def finish_chunk(reason: str):
            return schemas.chat_chunk(rid, model, created, {}, reason)
    else:
        def chunk_of(text: str):
            return schemas.completion_chunk(rid, model, created, text) if text else None

        def finish_chunk(reason: str):
            return schemas.completion_chunk(rid, model, created, "", reason)

    body = sse_body(state, events, chunk_of, finish_chunk, usage_chunk, release)
    return StreamingResponse(body, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
