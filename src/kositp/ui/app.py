"""The Chainlit app: Korean chat over the OpenAI-compatible API. `kositp ui` runs this file.

Chainlit loads this file by path, so it only wires Chainlit callbacks to the plain modules next to
it (`api`, `conversation`, `starters`), which are tested without a browser. The settings come
from `KOSITP_UI_CONFIG` (a UIConfig as JSON, set by `kositp ui`).

Per chat (one browser tab, one Chainlit session) the page keeps:
- `conversation`: the user/assistant history, all of it sent with each request;
- `settings`: model, temperature, top_p, max_tokens, system prompt (the settings panel);
- `models`: what /v1/models listed (fetched again while it is empty, so a late server is found).
"""

from __future__ import annotations

import asyncio
import logging
import os

import chainlit as cl
import chainlit.socket  # (registers Chainlit's socket handlers before we replace "stop")
from chainlit.context import init_ws_context
from chainlit.input_widget import Select, Slider, TextInput
from chainlit.server import sio
from chainlit.session import WebsocketSession

from kositp.ui.api import ApiFailure, ReplyStats, SamplingSettings, list_models, make_client, stream_chat
from kositp.ui.config import UIConfig, read_api_key
from kositp.ui.conversation import Conversation
from kositp.ui.starters import load_starter_groups

log = logging.getLogger("kositp.ui")

CFG = UIConfig.model_validate_json(os.environ["KOSITP_UI_CONFIG"]) if os.environ.get("KOSITP_UI_CONFIG") else UIConfig()
API_KEY = read_api_key(CFG.api_key_file)
CLIENT = make_client(CFG, API_KEY)

STOPPED_NOTE = "⏹ 응답 생성을 중지했습니다."
WAIT_FOR_API = "설정의 모델 목록은 서버가 응답하면 다시 불러옵니다."


# ---------------------------------------------------------------------------------------- starters


@cl.set_starter_categories
async def starter_categories(user=None, language=None, chat_profile=None):
    return [
        cl.StarterCategory(
            label=group.label,
            starters=[cl.Starter(label=s.label, message=s.message) for s in group.starters],
        )
        for group in load_starter_groups()
    ]


# ---------------------------------------------------------------------------------------- settings


def _settings_widgets(settings: SamplingSettings, models: list[str]) -> list:
    widgets = []
    choices = list(models) or ([settings.model] if settings.model else [])
    if choices:
        widgets.append(
            Select(
                id="model",
                label="모델",
                values=choices,
                initial_value=settings.model if settings.model in choices else choices[0],
                description="API 서버의 /v1/models 목록",
            )
        )
    widgets += [
        Slider(id="temperature", label="온도 (temperature)", initial=settings.temperature, min=0, max=2, step=0.05,
               description="0이면 항상 같은 답(탐욕적 디코딩), 높을수록 다양한 답"),
        Slider(id="top_p", label="top_p", initial=settings.top_p, min=0.05, max=1, step=0.05,
               description="누적 확률이 top_p가 될 때까지의 후보 토큰에서만 고릅니다"),
        Slider(id="max_tokens", label="최대 생성 토큰 수 (max_tokens)", initial=settings.max_tokens, min=16,
               max=max(CFG.max_tokens_slider_max, settings.max_tokens), step=16),
        TextInput(id="system_prompt", label="시스템 프롬프트", initial=settings.system_prompt, multiline=True,
                  placeholder="비워 두면 시스템 메시지를 보내지 않습니다"),
    ]
    return widgets


async def _send_settings() -> None:
    settings: SamplingSettings = cl.user_session.get("settings")
    await cl.ChatSettings(_settings_widgets(settings, cl.user_session.get("models") or [])).send()


async def _refresh_models() -> list[str]:
    """Fetch /v1/models into the session; on success fill in the model and redraw the settings panel."""
    models = await list_models(CLIENT, CFG)
    settings: SamplingSettings = cl.user_session.get("settings")
    had = cl.user_session.get("models") or []
    cl.user_session.set("models", models)
    if models and settings.model not in models:
        settings.model = CFG.default_model if CFG.default_model in models else models[0]
    if models != had:
        await _send_settings()
    return models


@cl.on_chat_start
async def start_chat() -> None:
    """A new chat (first visit or the new-chat button): empty history, initial settings, model list."""
    cl.user_session.set("conversation", Conversation(CFG.max_history_messages))
    cl.user_session.set("settings", SamplingSettings.initial(CFG, CFG.default_model))
    cl.user_session.set("models", [])
    try:
        await _refresh_models()
    except ApiFailure as failure:
        log.warning("model list unavailable: %s", failure.message)
        await _send_settings()
        await cl.ErrorMessage(content=f"{failure.message}\n\n{WAIT_FOR_API}").send()


@cl.on_settings_update
async def update_settings(values: dict) -> None:
    settings: SamplingSettings = cl.user_session.get("settings")
    if values.get("model"):
        settings.model = str(values["model"])
    if values.get("temperature") is not None:
        settings.temperature = min(max(float(values["temperature"]), 0.0), 2.0)
    if values.get("top_p") is not None:
        settings.top_p = min(max(float(values["top_p"]), 0.05), 1.0)
    if values.get("max_tokens") is not None:
        settings.max_tokens = max(int(values["max_tokens"]), 1)
    if values.get("system_prompt") is not None:
        settings.system_prompt = str(values["system_prompt"])


# ---------------------------------------------------------------------------------------- messages


@cl.on_message
async def answer(message: cl.Message) -> None:
    """Send the whole history plus the new message; stream the reply into one assistant message.

    One reply at a time per chat: Chainlit's busy flag on the page is a single boolean that the end
    of *any* task clears (on_chat_start's included, when a first message beats it), so the send button
    can come back while a reply still streams. A message sent then waits here for that reply to enter
    the history instead of going out without it.
    """
    user_text = message.content or ""
    if not user_text.strip():
        await cl.ErrorMessage(content="빈 메시지는 보낼 수 없습니다. 내용을 입력해 주세요.").send()
        return
    async with _reply_lock():
        await _answer(user_text)


def _reply_lock() -> asyncio.Lock:
    lock = cl.user_session.get("reply_lock")
    if lock is None:
        lock = asyncio.Lock()
        cl.user_session.set("reply_lock", lock)
    return lock


async def _answer(user_text: str) -> None:
    conversation: Conversation = cl.user_session.get("conversation")
    settings: SamplingSettings = cl.user_session.get("settings")
    reply = cl.Message(content="")
    parts: list[str] = []
    stats = ReplyStats()
    try:
        if not cl.user_session.get("models"):
            await _refresh_models()
        request = conversation.request_messages(user_text, settings.system_prompt)
        async for piece in stream_chat(CLIENT, CFG, request, settings, stats):
            parts.append(piece)
            await reply.stream_token(piece)
    except ApiFailure as failure:
        log.warning("request failed: %s", failure.message)
        if parts:  # the stream broke midway: keep what arrived, say why it stopped
            await reply.send()
        await cl.ErrorMessage(content=failure.message).send()
        return
    except asyncio.CancelledError:  # the stop button: keep the partial reply as part of the history
        text = "".join(parts)
        if text:
            conversation.add_turn(user_text, text)
            reply.content = f"{text}\n\n{STOPPED_NOTE}"
            await reply.send()
        else:
            await cl.Message(content=STOPPED_NOTE).send()
        raise
    text = "".join(parts)
    conversation.add_turn(user_text, text)
    if not text:
        reply.content = "(모델이 빈 응답을 보냈습니다.)"
    elif stats.finish_reason == "length":
        reply.content = f"{text}\n\n_(최대 생성 토큰 수({settings.max_tokens})에 도달해 답변이 잘렸습니다.)_"
    await reply.send()


# Chainlit's own stop handler posts an English "Task manually stopped." message; this one only
# cancels the running reply, whose handler above says so in Korean. Same steps otherwise.
async def _stop(sid):
    if session := WebsocketSession.get(sid):
        init_ws_context(session)
        if session.current_task:
            session.current_task.cancel()


sio.on("stop", handler=_stop)
