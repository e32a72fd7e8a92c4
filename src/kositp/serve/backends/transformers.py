"""The in-process backend: a transformers model on this machine, with dynamic batching.

The prompt is encoded with the model's own chat format by `kositp.chat.encode_prompt` (the one it
was trained and exported with; message content is always tokenized as text, so a user cannot forge
a turn marker), and generation stops at that format's end-of-turn ids. A raw completions prompt is
tokenized as is: it *is* the template, control tokens included.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

from kositp.errors import KositpError
from kositp.serve.backends.base import Backend, BackendRequestError, Event, Finished
from kositp.serve.backends.batching import BatchingEngine, Job, SamplingSpec
from kositp.serve.config import ServeConfig
from kositp.serve.schemas import ChatCompletionRequest, CompletionRequest, SamplingParams

if TYPE_CHECKING:
    from kositp.serve.backends.calibration import ServeSettings

log = logging.getLogger("kositp.serve")


def served_name(cfg: ServeConfig) -> str:
    """The id clients use: the configured name, the alias itself (tiny, default) or the directory name."""
    if cfg.served_model_name:
        return cfg.served_model_name
    if cfg.model in ("tiny", "default") or cfg.model.startswith("tiny:"):
        return cfg.model
    return Path(cfg.model).resolve().name or cfg.model


def load_for_serving(model: str, dtype: str):
    """Model, tokenizer with its chat template, and the end-of-turn ids, all from kositp's own loaders."""
    from kositp.chat import end_of_turn_ids, load_chat_format
    from kositp.cpu_dtype import inference_dtype
    from kositp.models import load_model, load_tokenizer, resolve_model_path

    path = resolve_model_path(model)
    if not Path(path).exists():
        raise KositpError(f"model '{model}' is not a directory, an export or an alias (tiny, tiny:SEED, default)")
    tokenizer = load_tokenizer(path)
    fmt = load_chat_format(path, tokenizer)
    tokenizer.chat_template = fmt.template
    eot = end_of_turn_ids(tokenizer, fmt)
    mdl = load_model(path, dtype=inference_dtype(dtype))
    mdl.eval()
    return mdl, tokenizer, eot


def encode_chat(tokenizer, req: ChatCompletionRequest) -> list[int]:
    """Prompt ids of a chat request in the model's template (`developer` is the system role)."""
    from kositp.chat import encode_prompt

    messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in req.messages]
    try:
        return encode_prompt(tokenizer, messages, add_generation_prompt=True)
    except Exception as exc:  # a template may reject a role order (e.g. two system turns)
        raise BackendRequestError(f"messages do not fit the chat template: {exc}", param="messages") from None


class TransformersBackend(Backend):
    def __init__(self, cfg: ServeConfig) -> None:
        self.cfg = cfg
        self.name = served_name(cfg)
        self.engine: BatchingEngine | None = None
        self.tokenizer = None
        self.context_length = 2048
        self.settings: ServeSettings | None = None  # linear kernels, threads, batch size (calibration.py)

    @property
    def model_ids(self) -> list[str]:
        return [self.name]

    async def start(self) -> None:
        from kositp.serve.backends.calibration import resolve_settings

        cfg = self.cfg
        model, tokenizer, eot = await asyncio.to_thread(load_for_serving, cfg.model, cfg.dtype)
        self.settings = await asyncio.to_thread(resolve_settings, model, cfg.linear_kernels, cfg.threads,
                                                cfg.max_batch_size, cfg.calibrate, cfg.flush_denormal, log.info)
        log.info("serving settings: %s", self.settings.describe())
        log.info("serving settings json: %s", json.dumps(self.settings.summary()))
        self.tokenizer = tokenizer
        self.context_length = int(getattr(model.config, "max_position_embeddings", 2048) or 2048)
        self.engine = BatchingEngine(model, tokenizer, eot, self.settings.max_batch_size, cfg.batch_wait_ms,
                                     cfg.flush_denormal, cfg.continuous_batching, self.settings.threads,
                                     self.settings.solo_threads)
        self.engine.start()

    async def stop(self) -> None:
        if self.engine is not None:
            await asyncio.to_thread(self.engine.stop)

    def ready(self) -> bool:
        return self.engine is not None

    def queue_depth(self) -> int:
        return self.engine.queue_depth() if self.engine else 0

    def stats(self) -> dict[str, float]:
        if self.engine is None:
            return {}
        e = self.engine
        layers = self.settings.layers if self.settings else {}
        return {"batches": e.batches_run, "batched_requests": e.rows_run, "largest_batch": e.largest_batch,
                "prefills": e.prefills, "joined_running_batch": e.joined_running, "decode_steps": e.decode_steps,
                "unpadded_decode_steps": e.unpadded_steps, "max_batch_size": e.max_batch_size,
                "threads": e.threads or 0, "solo_threads": e.solo_threads or 0, **{f"{kernel}_linears": n for kernel, n in layers.items()}}

    def _check_model(self, requested: str) -> None:
        if requested not in self.model_ids:
            raise BackendRequestError(
                f"model '{requested}' is not served here; available: {', '.join(self.model_ids)}",
                status=404,
                code="model_not_found",
                param="model",
            )

    def _check_length(self, prompt_ids: list[int], max_tokens: int, param: str) -> None:
        limit = min(self.cfg.max_prompt_tokens, self.context_length - max_tokens)
        if len(prompt_ids) > limit:
            raise BackendRequestError(
                f"{param}: the prompt has {len(prompt_ids)} tokens; at most {limit} fit with max_tokens={max_tokens}",
                code="context_length_exceeded",
                param=param,
            )

    def chat(self, req: ChatCompletionRequest, max_tokens: int) -> AsyncIterator[Event]:
        self._check_model(req.model)
        ids = encode_chat(self.tokenizer, req)
        self._check_length(ids, max_tokens, "messages")
        return self._generate(ids, req, max_tokens)

    def complete(self, req: CompletionRequest, max_tokens: int) -> AsyncIterator[Event]:
        self._check_model(req.model)
        ids = self.tokenizer(req.prompt_text)["input_ids"]
        if not ids:
            raise BackendRequestError("the prompt is empty", param="prompt")
        self._check_length(ids, max_tokens, "prompt")
        return self._generate(ids, req, max_tokens)

    def _generate(self, ids: list[int], req: SamplingParams, max_tokens: int) -> AsyncIterator[Event]:
        spec = SamplingSpec(max_tokens, req.temperature, req.top_p, req.stops, req.seed)
        return self._stream(Job(ids, spec, asyncio.get_running_loop(), asyncio.Queue()))

    async def _stream(self, job: Job) -> AsyncIterator[Event]:
        assert self.engine is not None
        self.engine.submit(job)
        try:
            while True:
                event = await job.out.get()
                if isinstance(event, Exception):
                    raise event
                yield event
                if isinstance(event, Finished):
                    return
        finally:
            job.cancelled.set()  # a closed stream (client gone) frees the batch row
