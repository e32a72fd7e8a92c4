"""Talking to the OpenAI-compatible API: model list, streamed chat, and Korean error messages.

Nothing here knows about Chainlit, so it is tested directly against a real `kositp serve`. Every
failure the page can meet (server down, slow, 401, 429, 4xx, 5xx, an error inside a started
stream) becomes an `ApiFailure` whose `message` is the one Korean sentence the user sees.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import openai

from kositp.ui.config import UIConfig


class ApiFailure(Exception):
    """A request to the API failed; `message` is shown to the user as is (Korean)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass
class SamplingSettings:
    """What the settings panel controls, per chat."""

    model: str | None
    temperature: float
    top_p: float
    max_tokens: int
    system_prompt: str = ""

    @classmethod
    def initial(cls, cfg: UIConfig, model: str | None) -> SamplingSettings:
        return cls(model, cfg.temperature, cfg.top_p, cfg.max_tokens, cfg.system_prompt)


@dataclass
class ReplyStats:
    """Filled in while a reply streams: the finish reason and the server's token counts (when sent)."""

    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    extra: dict = field(default_factory=dict)


def make_client(cfg: UIConfig, api_key: str | None) -> openai.AsyncOpenAI:
    """An async client with the page's timeouts and no silent retries (the user sees and decides)."""
    timeout = httpx.Timeout(cfg.read_timeout_s, connect=cfg.connect_timeout_s)
    # The openai client insists on a key; a server without keys ignores the placeholder.
    return openai.AsyncOpenAI(base_url=cfg.api, api_key=api_key or "no-key", timeout=timeout, max_retries=0)


def _server_reason(exc: openai.APIStatusError | openai.APIError) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return inner["message"]
    return str(getattr(exc, "message", "") or exc)


def korean_error(exc: BaseException, cfg: UIConfig) -> ApiFailure:
    """Map any client-side exception to the Korean message the page shows."""
    if isinstance(exc, ApiFailure):
        return exc
    if isinstance(exc, openai.APITimeoutError):
        return ApiFailure(
            f"API 서버가 {cfg.read_timeout_s:g}초 동안 응답하지 않아 요청을 중단했습니다. "
            "서버가 바쁘거나 멈춘 것 같습니다. 잠시 후 다시 시도해 주세요."
        )
    if isinstance(exc, openai.APIConnectionError):
        return ApiFailure(
            f"API 서버(`{cfg.api}`)에 연결할 수 없습니다. `kositp serve`가 실행 중인지, 주소와 포트가 맞는지 "
            "확인한 뒤 다시 보내 주세요."
        )
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        reason = _server_reason(exc)
        if status == 401:
            return ApiFailure(
                "API 키가 없거나 올바르지 않습니다(401). `kositp ui --api-key-file`로 올바른 키 파일을 지정해 주세요.",
                status,
            )
        if status == 403:
            return ApiFailure("이 API 키로는 접근할 수 없습니다(403).", status)
        if status == 404:
            return ApiFailure(f"요청한 모델이나 경로를 서버에서 찾을 수 없습니다(404): {reason}", status)
        if status == 413:
            return ApiFailure("요청이 너무 큽니다(413). 메시지를 줄이거나 새 대화를 시작해 주세요.", status)
        if status == 429:
            retry = exc.response.headers.get("retry-after") if exc.response is not None else None
            wait = f" 약 {retry}초 뒤에" if retry else " 잠시 뒤에"
            return ApiFailure(f"지금 요청이 너무 많습니다(429).{wait} 다시 보내 주세요.", status)
        if status == 400 and ("context" in reason or "prompt" in reason and "token" in reason):
            return ApiFailure(
                f"대화가 모델이 한 번에 읽을 수 있는 길이를 넘었습니다(400). 새 대화를 시작해 주세요. ({reason})",
                status,
            )
        if 400 <= status < 500:
            return ApiFailure(f"서버가 요청을 거절했습니다({status}): {reason}", status)
        if status == 503:
            return ApiFailure("API 서버가 아직 준비되지 않았거나 종료 중입니다(503). 잠시 후 다시 시도해 주세요.", status)
        return ApiFailure(f"API 서버에서 오류가 발생했습니다({status}). 잠시 후 다시 시도해 주세요.", status)
    if isinstance(exc, openai.APIError):  # an error event inside an already started stream
        return ApiFailure(f"응답을 만드는 중에 서버 오류가 발생했습니다: {_server_reason(exc)}")
    return ApiFailure(f"알 수 없는 오류가 발생했습니다: {type(exc).__name__}: {exc}")


async def list_models(client: openai.AsyncOpenAI, cfg: UIConfig) -> list[str]:
    """Model ids from /v1/models, or an ApiFailure with the Korean reason."""
    try:
        page = await client.models.list()
    except Exception as exc:
        raise korean_error(exc, cfg) from exc
    return [m.id for m in page.data]


async def stream_chat(
    client: openai.AsyncOpenAI,
    cfg: UIConfig,
    messages: list[dict[str, str]],
    settings: SamplingSettings,
    stats: ReplyStats | None = None,
) -> AsyncIterator[str]:
    """Yield the reply's text pieces as the server streams them; raise ApiFailure on any failure.

    Closing the generator early (the stop button) closes the HTTP response, which the server sees
    as a disconnect and cancels the generation.
    """
    if not settings.model:
        raise ApiFailure("사용할 모델이 없습니다. API 서버의 /v1/models가 모델을 알려 주지 않았습니다.")
    stats = stats if stats is not None else ReplyStats()
    try:
        stream = await client.chat.completions.create(
            model=settings.model,
            messages=messages,
            temperature=settings.temperature,
            top_p=settings.top_p,
            max_tokens=settings.max_tokens,
            stream=True,
            stream_options={"include_usage": True},
        )
    except Exception as exc:
        raise korean_error(exc, cfg) from exc
    try:
        async for chunk in stream:
            if chunk.usage is not None:
                stats.prompt_tokens = chunk.usage.prompt_tokens
                stats.completion_tokens = chunk.usage.completion_tokens
            for choice in chunk.choices:
                if choice.finish_reason:
                    stats.finish_reason = choice.finish_reason
                if choice.delta and choice.delta.content:
                    yield choice.delta.content
    except (openai.OpenAIError, httpx.HTTPError) as exc:
        raise korean_error(exc, cfg) from exc
    finally:
        await stream.close()
