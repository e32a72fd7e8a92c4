"""`kositp serve`: the OpenAI-compatible gateway."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import typer

from kositp.errors import KositpError


def serve_command(
    model: str = typer.Option(None, "--model", help="Export dir, HF model dir, or alias: tiny, tiny:SEED, default."),
    backend: str = typer.Option(None, "--backend", help="transformers (in-process) or vllm."),
    host: str = typer.Option(None, "--host", help="Interface to listen on (default 127.0.0.1)."),
    port: int = typer.Option(None, "--port", help="Port (default 8000)."),
    config: Path | None = typer.Option(None, "--config", help="A ServeConfig recipe: name (serve/local) or YAML path."),
    api_key_file: Path | None = typer.Option(None, "--api-key-file", help="File with API keys, one a line."),
    upstream: list[str] = typer.Option(
        None, "--upstream", help="vLLM server URL to proxy to (repeat for load-balanced replicas)."
    ),
    lora: list[str] = typer.Option(None, "--lora", help="vLLM: serve a LoRA adapter as NAME=DIR (repeatable)."),
    served_model_name: str | None = typer.Option(None, "--served-model-name", help="Model id clients send."),
    overrides: list[str] = typer.Argument(None, help="More settings as key=value, e.g. max_concurrency=8."),
) -> None:
    """Serve a model through an OpenAI-compatible API (/v1/chat/completions, /v1/completions, /v1/models).

    한국어 스트리밍 응답은 UTF-8 문자 단위로 안전하게 전송됩니다.
    """

    from kositp.config import load_config
    from kositp.serve.config import ServeConfig, check_servable

    cfg = load_config(ServeConfig, config, list(overrides or []), flags={
        "model": model, "backend": backend, "host": host, "port": port,
        "api_key_file": api_key_file, "served_model_name": served_model_name,
    })
    vllm_changes = {}
    if upstream:
        vllm_changes["upstream"] = list(upstream)
    if lora:
        modules = {}
        for item in lora:
            name, sep, path = item.partition("=")
            if not sep or not name or not path:
                raise KositpError(f"--lora '{item}' is not NAME=DIR")
            modules[name] = path
        vllm_changes["lora_modules"] = modules
    if vllm_changes:
        cfg.vllm = cfg.vllm.model_copy(update=vllm_changes)
    if (upstream or lora) and cfg.backend != "vllm":
        raise KositpError("--upstream and --lora need --backend vllm")
    check_servable(cfg)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from kositp.serve.server import run

    code = run(cfg)
    if code:  # the drain after SIGTERM cut requests in flight
        sys.exit(code)  # not typer.Exit: main() runs typer with standalone_mode=False, which returns it
