"""`UIConfig`: every setting of the chat page, with its meaning. The `ui/*` recipes mirror it.

The chat page is a separate process from the API (`kositp serve`): it only knows the API's base URL
and, optionally, a key. The sampling fields are the *initial* values of the settings panel; each
user can change them for their own chat.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from kositp.config import Config
from kositp.errors import KositpError

DEFAULT_SYSTEM_PROMPT = "당신은 친절하고 정확한 한국어 AI 어시스턴트입니다. 질문에 한국어로 간결하게 답하세요."


class UIConfig(Config):
    """The Chainlit chat page over an OpenAI-compatible API."""

    api: str = Field(
        "http://127.0.0.1:8000/v1",
        description="Base URL of the OpenAI-compatible API, including /v1 (e.g. the one `kositp serve` prints).",
    )
    api_key_file: Path | None = Field(
        None, description="File whose first non-empty, non-# line is the API key sent as 'Authorization: Bearer'."
    )
    host: str = Field("127.0.0.1", description="Interface the chat page listens on; loopback by default.")
    port: int = Field(8001, ge=1, le=65535, description="TCP port of the chat page.")
    title: str = Field("kositp 한국어 챗봇", description="Name shown in the page header and browser tab.")
    connect_timeout_s: float = Field(
        5.0, gt=0, le=600, description="How long to wait for a TCP connection to the API before showing an error."
    )
    read_timeout_s: float = Field(
        120.0,
        gt=0,
        le=3600,
        description="Longest silence between two streamed chunks (or before the first) before the request is "
        "abandoned with a 'server is slow' message, so the page never hangs.",
    )
    default_model: str | None = Field(
        None, description="Model id preselected in the settings panel (default: the first one /v1/models lists)."
    )
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="Initial sampling temperature (0: greedy).")
    top_p: float = Field(0.95, gt=0.0, le=1.0, description="Initial nucleus-sampling top_p.")
    max_tokens: int = Field(256, ge=1, le=8192, description="Initial most tokens per reply.")
    max_tokens_slider_max: int = Field(
        1024, ge=16, le=32768, description="Upper end of the max_tokens slider (match the server's max_tokens_limit)."
    )
    system_prompt: str = Field(
        DEFAULT_SYSTEM_PROMPT, description="Initial system prompt; empty sends no system message."
    )
    max_history_messages: int = Field(
        40,
        ge=2,
        le=1000,
        description="Most earlier user/assistant messages sent with each request (oldest dropped first), so "
        "a long chat stays under the server's message limit.",
    )

    @field_validator("api")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL such as http://127.0.0.1:8000/v1")
        return value


def read_api_key(path: Path | None) -> str | None:
    """The key in `path` (first non-empty line that is not a # comment), or None when no file is given."""
    if path is None:
        return None
    path = Path(path)
    if not path.is_file():
        raise KositpError(f"API key file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise KositpError(f"API key file {path} is not UTF-8 text") from None
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            if not line.isascii() or not line.isprintable() or " " in line:
                # It travels in an HTTP header, which carries printable ASCII only.
                raise KositpError(f"API key in {path} must be printable ASCII without spaces")
            return line
    raise KositpError(f"API key file {path} holds no key (one key a line; # starts a comment)")
