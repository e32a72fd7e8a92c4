"""The OpenAI wire format: request models (validated, strict) and builders for response objects.

Requests are strict on purpose: an unknown or unsupported parameter is a 400 that names it, not a
silent no-op, so a client never believes a setting took effect when it did not. Parameters that
OpenAI clients commonly send with neutral values (n=1, penalties 0, logprobs false) are accepted.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

MAX_STOP_SEQUENCES = 16  # the schema's own cap; a server may allow fewer (ServeConfig.max_stop_sequences)

# OpenAI request fields that clients (the official SDKs, replayed `model_dump()`s) may send as
# null to mean "default". A null one is dropped before validation; a non-null unsupported one is
# still rejected by name.
NULL_MEANS_DEFAULT = frozenset({
    "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop", "seed", "stream", "stream_options",
    "n", "presence_penalty", "frequency_penalty", "user", "logprobs", "top_logprobs", "echo", "suffix",
    "best_of", "logit_bias", "tools", "tool_choice", "parallel_tool_calls", "functions", "function_call",
    "response_format", "metadata", "store", "service_tier", "modalities", "audio", "prediction",
    "reasoning_effort", "web_search_options",
})
# Fields of an assistant message as the SDK returns it; replaying it sends them as null.
NULL_MESSAGE_FIELDS = frozenset({"refusal", "tool_calls", "function_call", "audio", "annotations"})


def _lone_surrogate(value: Any, path: str = "") -> str | None:
    """The first string (or key) in `value` that cannot be UTF-8, as "path: what is wrong"; else None.

    JSON may carry a lone UTF-16 surrogate ("\\ud800"); no tokenizer or response can encode it, so the
    request is refused naming the field instead of failing deep inside generation.
    """
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            where = path or "body"
            return f"{where}: contains a lone UTF-16 surrogate (U+{ord(value[exc.start]):04X}); send valid Unicode"
        return None
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        sub = f"{path}.{key}" if path else str(key)
        found = _lone_surrogate(key, "a key") if isinstance(key, str) else None
        found = found or _lone_surrogate(item, sub)
        if found:
            return found
    return None


def _drop_nulls(data: Any, fields: frozenset[str]) -> Any:
    if isinstance(data, dict):
        return {k: v for k, v in data.items() if not (v is None and k in fields)}
    return data


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextPart(_Strict):
    """One text part of a message's content (the array form OpenAI clients may send)."""

    type: Literal["text"]
    text: str


# Content part types OpenAI defines that a text-only model cannot take, with what to tell the client.
UNSUPPORTED_PARTS = {"image_url": "images are not supported (this model reads text only)",
                     "input_image": "images are not supported (this model reads text only)",
                     "input_audio": "audio input is not supported (this model reads text only)",
                     "file": "file inputs are not supported (this model reads text only)"}


class ChatMessage(_Strict):
    role: Literal["system", "user", "assistant", "developer"]
    content: str | Annotated[list[TextPart], Field(min_length=1)]
    name: str | None = Field(None, max_length=64)

    @model_validator(mode="before")
    @classmethod
    def _replayed_fields(cls, data: Any) -> Any:
        data = _drop_nulls(data, NULL_MESSAGE_FIELDS)
        if isinstance(data, dict):
            for key in ("tool_calls", "annotations"):
                if data.get(key) == []:
                    data = {k: v for k, v in data.items() if k != key}
            if data.get("role") == "assistant" and "content" in data and data["content"] is None:
                data = data | {"content": ""}  # an SDK reply without text replays as content: null
        return data

    @field_validator("content", mode="before")
    @classmethod
    def _parts(cls, value: Any) -> Any:
        if isinstance(value, list):
            if not value:
                raise ValueError("content must be a string or a non-empty list of text parts")
            for i, part in enumerate(value):
                kind = part.get("type") if isinstance(part, dict) else None
                if kind in UNSUPPORTED_PARTS:
                    raise ValueError(f"part {i} is '{kind}': {UNSUPPORTED_PARTS[kind]}")
        return value

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(_Strict):
    include_usage: bool = Field(False, strict=True)


class SamplingParams(_Strict):
    """The request fields chat and text completions share: model, length, sampling, stop, streaming.

    Types are strict as in OpenAI's API (`"max_tokens": "10"` or `true` is a 400), `null` means the
    default for every field OpenAI's schema lets be null, and unsupported settings must keep their
    neutral value (n=1, penalties 0). Backends read a request through these fields and `stops`.
    """

    model: str = Field(..., min_length=1, max_length=256)
    max_tokens: int | None = Field(None, ge=1, strict=True, description="Most tokens to generate.")
    temperature: float = Field(1.0, ge=0.0, le=2.0, strict=True, description="0 is greedy decoding.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, strict=True)
    stop: str | list[str] | None = Field(
        None, description=f"Up to {MAX_STOP_SEQUENCES} strings (a server may allow fewer); generation ends "
        "before the first one.")
    seed: int | None = Field(None, ge=-(2**63), le=2**64 - 1, strict=True,
                             description="Same seed, same sampled output.")
    stream: bool = Field(False, strict=True)
    stream_options: StreamOptions | None = Field(None, description="Only with stream: true.")
    n: int = Field(1, ge=1, le=1, strict=True, description="Only one choice per request is supported.")
    presence_penalty: float = Field(0.0, ge=0.0, le=0.0, strict=True, description="Not supported: must be 0.")
    frequency_penalty: float = Field(0.0, ge=0.0, le=0.0, strict=True, description="Not supported: must be 0.")
    user: str | None = Field(None, max_length=256, description="Accepted and not stored.")

    @model_validator(mode="before")
    @classmethod
    def _null_is_default(cls, data: Any) -> Any:
        problem = _lone_surrogate(data)
        if problem:
            raise ValueError(problem)
        return _drop_nulls(data, NULL_MEANS_DEFAULT)

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value: str | list[str] | None) -> list[str]:
        if value is None:
            return []
        stops = [value] if isinstance(value, str) else list(value)
        if len(stops) > MAX_STOP_SEQUENCES:
            raise ValueError(f"{len(stops)} stop sequences; at most {MAX_STOP_SEQUENCES} are allowed")
        if any(not s for s in stops):
            raise ValueError("stop sequences must be non-empty strings")
        if any(len(s) > 256 for s in stops):
            raise ValueError("a stop sequence may be at most 256 characters")
        return stops

    @field_validator("stream_options")
    @classmethod
    def _only_when_streaming(cls, value: StreamOptions | None, info: ValidationInfo) -> StreamOptions | None:
        if value is not None and not info.data.get("stream"):
            raise ValueError("stream_options is only allowed when stream is true")
        return value

    @property
    def stops(self) -> list[str]:
        return list(self.stop or [])


class ChatCompletionRequest(SamplingParams):
    messages: list[ChatMessage] = Field(..., min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1, strict=True, description="Newer name of max_tokens.")
    logprobs: bool = Field(False, strict=True, description="Not supported: must be false.")

    @model_validator(mode="after")
    def _check(self) -> ChatCompletionRequest:
        if self.logprobs:
            raise ValueError("logprobs are not supported")
        if self.max_completion_tokens is not None:
            if self.max_tokens is not None and self.max_tokens != self.max_completion_tokens:
                raise ValueError("max_tokens and max_completion_tokens disagree")
            self.max_tokens = self.max_completion_tokens
        return self


class CompletionRequest(SamplingParams):
    """A raw prompt: the text goes to the model as is, control tokens included (it is the template)."""

    prompt: str | Annotated[list[str], Field(min_length=1, max_length=1)]
    echo: bool = Field(False, strict=True, description="Not supported: must be false.")
    logprobs: int | None = Field(None, strict=True, description="Not supported: must be null.")

    @model_validator(mode="after")
    def _check(self) -> CompletionRequest:
        if self.echo:
            raise ValueError("echo is not supported")
        if self.logprobs is not None:
            raise ValueError("logprobs are not supported")
        return self

    @property
    def prompt_text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]


# --------------------------------------------------------------------------- responses


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def chat_response(rid: str, model: str, text: str, finish: str, prompt_tokens: int, completion_tokens: int):
    return {
        "id": rid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None, "finish_reason": finish}
        ],
        "usage": usage(prompt_tokens, completion_tokens),
    }


def chat_chunk(rid: str, model: str, created: int, delta: dict[str, Any], finish: str | None = None) -> dict:
    return {
        "id": rid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


def completion_response(rid: str, model: str, text: str, finish: str, prompt_tokens: int, completion_tokens: int):
    return {
        "id": rid,
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}],
        "usage": usage(prompt_tokens, completion_tokens),
    }


def completion_chunk(rid: str, model: str, created: int, text: str, finish: str | None = None) -> dict:
    return {
        "id": rid,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}],
    }


def usage_chunk(rid: str, model: str, created: int, obj: str, prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "id": rid,
        "object": obj,
        "created": created,
        "model": model,
        "choices": [],
        "usage": usage(prompt_tokens, completion_tokens),
    }


# Characters that str.splitlines() (and so some SSE clients, e.g. httpx's aiter_lines) treat as line
# breaks but JSON leaves raw: escaped so one event is always one line. Hangul stays readable UTF-8.
_LINE_BREAKERS = {"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"}


def sse_event(obj) -> bytes:
    """One Server-Sent Event carrying `obj` as JSON on a single line."""
    text = json.dumps(obj, ensure_ascii=False)
    for raw, escaped in _LINE_BREAKERS.items():
        text = text.replace(raw, escaped)
    return f"data: {text}\n\n".encode()


def error_body(message: str, type_: str = "invalid_request_error", param: str | None = None, code: str | None = None):
    """OpenAI's error object. The message may quote client input: lone surrogates in it are escaped
    so the body always encodes as UTF-8."""
    message = message.encode("utf-8", "backslashreplace").decode("utf-8")
    if param is not None:
        param = param.encode("utf-8", "backslashreplace").decode("utf-8")
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}
