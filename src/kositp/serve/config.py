"""`ServeConfig`: every setting of the gateway, with its meaning. The `serve/*` recipes mirror it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from kositp.config import Config

REPO_ROOT = Path(__file__).resolve().parents[3]


def default_vllm_python() -> str:
    """Where the vLLM environment's interpreter is: `$KOSITP_VLLM_PYTHON`, else `<repo>/.venv-vllm/bin/python`."""
    return os.environ.get("KOSITP_VLLM_PYTHON") or str(REPO_ROOT / ".venv-vllm" / "bin" / "python")


class VllmConfig(Config):
    """How the gateway runs or reaches vLLM (only used with `backend: vllm`)."""

    upstream: list[str] = Field(
        default_factory=list,
        description="Base URLs of already running vLLM OpenAI servers (e.g. http://127.0.0.1:8100). "
        "Several are load-balanced round-robin and an unhealthy one is skipped. Empty: the gateway "
        "starts and supervises its own `vllm serve` process for the model.",
    )
    python: str = Field(
        default_factory=default_vllm_python,
        description="Python of the vLLM environment (made by `make vllm-env`); env KOSITP_VLLM_PYTHON.",
    )
    port: int = Field(0, ge=0, le=65535, description="Port of the managed vLLM process (0: pick a free one).")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="dtype vLLM loads the weights in (auto: the checkpoint's, but float32 on a CPU without "
        "bf16 instructions, where bf16 is several times slower)."
    )
    max_model_len: int | None = Field(
        2048, ge=16, description="Context length vLLM reserves KV cache for (None: the model's)."
    )
    kv_cache_space_gib: int = Field(1, ge=1, description="VLLM_CPU_KVCACHE_SPACE: KV cache size in GiB on CPU.")
    enforce_eager: bool = Field(True, description="Skip graph compilation: starts much faster on CPU.")
    reserved_cpus: int | None = Field(
        0,
        ge=0,
        description="VLLM_CPU_NUM_OF_RESERVED_CPU; vLLM reserves one core for its scheduler by default, "
        "which halves throughput on a 2-core machine (None: vLLM's default).",
    )
    in_process_engine: bool = Field(
        True, description="VLLM_ENABLE_V1_MULTIPROCESSING=0: the engine runs in the API server's process instead "
        "of a separate one (on 2 CPU cores: 72 vs 60 tok/s at 16 concurrent requests)."
    )
    lora_modules: dict[str, str] = Field(
        default_factory=dict,
        description="LoRA adapters to serve by name: {name: adapter_dir}. Clients pick one with model=<name>.",
    )
    startup_timeout_s: float = Field(600.0, gt=0, description="How long to wait for the managed vLLM to be ready.")
    health_interval_s: float = Field(5.0, gt=0, description="How often upstream health is re-checked.")
    request_timeout_s: float = Field(600.0, gt=0, description="Timeout of one proxied request.")
    extra_args: list[str] = Field(default_factory=list, description="More `vllm serve` arguments, passed as is.")


class ServeConfig(Config):
    """The OpenAI-compatible gateway: model, backend, network, security and limits."""

    model: str = Field(
        "tiny",
        description="Model to serve: an export directory, a plain Hugging Face model directory, or the "
        "aliases tiny / tiny:SEED / default.",
    )
    served_model_name: str | None = Field(
        None, description="Model id clients see in /v1/models and send as `model` (default: the directory name)."
    )
    backend: Literal["transformers", "vllm"] = Field(
        "transformers", description="transformers: in-process, batched; vllm: a vLLM server behind the gateway."
    )
    host: str = Field("127.0.0.1", description="Interface to listen on; loopback by default, never all by accident.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port (0: any free port).")
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = Field(
        "float32", description="dtype of the transformers backend (float32 is exact; auto: the checkpoint's on "
        "CUDA, on CPU the faster of float32 and bfloat16 by a timed probe cached per CPU; kositp/cpu_dtype.py)."
    )
    api_key_file: Path | None = Field(
        None, description="File with one API key a line; when set (or KOSITP_API_KEYS is), requests need a key."
    )
    api_key_env: str = Field("KOSITP_API_KEYS", description="Environment variable holding comma-separated API keys.")
    cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed by CORS (e.g. the chat page's URL); empty: no CORS."
    )
    max_body_bytes: int = Field(1_000_000, ge=1024, description="Largest request body accepted, counted as it "
                                "arrives whatever the framing (413 above).")
    body_timeout_s: float = Field(30.0, gt=0, description="Time a request body has to arrive in full (408 after).")
    public_metadata: bool | None = Field(
        None, description="Serve /docs, /redoc, /openapi.json and the model ids in /ready without a key "
        "(None: only when no API key is configured)."
    )
    max_tokens_limit: int = Field(1024, ge=1, description="Largest `max_tokens` a request may ask for.")
    default_max_tokens: int = Field(256, ge=1, description="`max_tokens` when a request gives none.")
    max_messages: int = Field(64, ge=1, description="Most messages in one chat request.")
    max_message_chars: int = Field(32_000, ge=1, description="Longest message content, in characters.")
    max_prompt_tokens: int = Field(
        1536, ge=1, description="Longest rendered prompt in tokens; a longer one gets 400 (context_length_exceeded)."
    )
    max_stop_sequences: int = Field(4, ge=0, description="Most stop sequences in one request (OpenAI allows 4).")
    max_concurrency: int = Field(
        32, ge=1, description="Requests in flight at once; the next one gets 429 with Retry-After."
    )
    retry_after_s: int = Field(1, ge=1, description="Retry-After seconds sent with 429.")
    max_batch_size: int | None = Field(
        None, ge=1, description="transformers backend: most requests decoded together (one running batch). None: "
        "measured at start-up (the batch keeps doubling while that still raises tokens/s by 15%, at most 32; "
        "16 when calibration is off). See serve/backends/calibration.py."
    )
    batch_wait_ms: float = Field(
        5.0, ge=0, description="transformers backend: on an idle engine, how long to wait after the first request "
        "for others to be prefilled with it."
    )
    continuous_batching: bool = Field(
        True, description="transformers backend: admit waiting requests into the running batch between decode "
        "steps (off: a batch runs until its last row ends and newcomers form the next one)."
    )
    flush_denormal: bool = Field(
        True, description="transformers backend: flush denormal floats to zero (much faster on x86 CPUs; "
        "changes results only below 1e-38)."
    )
    linear_kernels: Literal["auto", "onednn", "dense"] = Field(
        "auto", description="transformers backend, float32 on CPU: how linear layers run. onednn: oneDNN with the "
        "weights reordered once (kositp/cpu_linear.py; a tied output projection is then held twice); dense: "
        "nn.Linear (MKL); auto: per weight shape, whichever a start-up measurement finds faster at 1 row and at "
        "the largest batch (MKL for one row and oneDNN for more where they split). Figures in docs/serving.md."
    )
    threads: int | None = Field(
        None, ge=1, description="transformers backend: torch threads for generation. None: measured at start-up "
        "(1 to all cores, on decode steps of 1 row and of the largest batch)."
    )
    calibrate: bool = Field(
        True, description="transformers backend: measure the settings left to auto/None once per CPU, model "
        "shapes and torch version, cached in $KOSITP_HOME/serve_calibration.json (env "
        "KOSITP_SERVE_CALIBRATION=off also turns it off). Off: oneDNN linears, all threads, batch 16."
    )
    log_prompts: bool = Field(False, description="Log prompts and outputs (off: only sizes and timings are logged).")
    drain_timeout_s: float = Field(
        30.0, ge=0, description="On SIGTERM, how long in-flight requests may finish while new ones get 503; "
        "those still running are then cut (streams end with an error event) and the exit code is 3."
    )
    vllm: VllmConfig = Field(default_factory=VllmConfig, description="vLLM backend settings.")

    @model_validator(mode="after")
    def _check(self) -> ServeConfig:
        if self.default_max_tokens > self.max_tokens_limit:
            raise ValueError("default_max_tokens must not exceed max_tokens_limit")
        return self


def check_servable(cfg: ServeConfig) -> None:
    """What must exist before the gateway starts: the model folder, or the vLLM environment it launches."""
    from kositp.errors import KositpError

    if cfg.backend == "transformers" or not cfg.vllm.upstream:
        from kositp.models import resolve_model_path

        if not Path(resolve_model_path(cfg.model)).is_dir():
            raise KositpError(f"model '{cfg.model}' is not a directory or an alias (tiny, tiny:SEED, default)")
    if cfg.backend == "vllm" and not cfg.vllm.upstream and not Path(cfg.vllm.python).is_file():
        raise KositpError(f"vLLM environment not found at {cfg.vllm.python}; run `make vllm-env` "
                          "or set KOSITP_VLLM_PYTHON (or pass --upstream URL)")
