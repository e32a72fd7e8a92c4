"""The chat page's plain parts (no browser): API access and Korean errors against a real `kositp serve`,
history building, starters, config, and the offline runtime folder."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading

import httpx
import openai
import pytest

from kositp.data.task_names import EVIDENCE_PREFIX, NO, OPTIONS_PREFIX, TASKS, UNANSWERABLE, YES
from kositp.errors import KositpError
from kositp.serve.process import ServeProcess, free_port
from kositp.ui.api import (
    ApiFailure,
    ReplyStats,
    SamplingSettings,
    korean_error,
    list_models,
    make_client,
    stream_chat,
)
from kositp.ui.config import UIConfig, read_api_key
from kositp.ui.conversation import Conversation
from kositp.ui.launch import offline_index_html, prepare_app_root
from kositp.ui.starters import STARTERS_FILE, load_starter_groups

HANGUL = re.compile(r"[가-힣]")


# ------------------------------------------------------------------------------------------ real server


@pytest.fixture(scope="module")
def key_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("keys") / "keys.txt"
    path.write_text("# the chat page's key\nsk-ui-test-key\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def server(tiny_model_dir, key_file):
    with ServeProcess(["--model", str(tiny_model_dir), "--served-model-name", "tiny-ko",
                       "--api-key-file", str(key_file)]) as proc:
        yield proc


def _cfg(api: str, **kw) -> UIConfig:
    return UIConfig(api=api, **kw)


def _collect(cfg: UIConfig, key: str | None, messages, settings: SamplingSettings, stats=None) -> list[str]:
    async def run():
        client = make_client(cfg, key)
        try:
            return [piece async for piece in stream_chat(client, cfg, messages, settings, stats)]
        finally:
            await client.close()

    return asyncio.run(run())


def test_models_and_streamed_korean_reply_with_key(server, key_file):
    cfg = _cfg(server.url + "/v1", api_key_file=key_file)
    key = read_api_key(key_file)
    assert key == "sk-ui-test-key"

    async def models():
        client = make_client(cfg, key)
        try:
            return await list_models(client, cfg)
        finally:
            await client.close()

    assert asyncio.run(models()) == ["tiny-ko"]
    stats = ReplyStats()
    settings = SamplingSettings("tiny-ko", temperature=0.0, top_p=1.0, max_tokens=24)
    conv = Conversation()
    pieces = _collect(cfg, key, conv.request_messages("안녕하세요, 반갑습니다.", "한국어로 답하세요."), settings, stats)
    assert len(pieces) >= 2, "the reply must arrive in several streamed pieces"
    assert stats.finish_reason in ("stop", "length")
    assert stats.completion_tokens is not None and 1 <= stats.completion_tokens <= 24
    first_prompt_tokens = stats.prompt_tokens
    # Second turn: the history goes out with it, so the server counts more prompt tokens.
    conv.add_turn("안녕하세요, 반갑습니다.", "".join(pieces))
    stats2 = ReplyStats()
    _collect(cfg, key, conv.request_messages("안녕하세요, 반갑습니다.", "한국어로 답하세요."), settings, stats2)
    assert stats2.prompt_tokens > first_prompt_tokens + 5


def test_missing_or_wrong_key_is_a_korean_401(server, tmp_path):
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("sk-wrong\n", encoding="utf-8")
    settings = SamplingSettings("tiny-ko", 0.0, 1.0, 8)
    for key in (None, read_api_key(wrong)):
        cfg = _cfg(server.url + "/v1")
        with pytest.raises(ApiFailure) as err:
            _collect(cfg, key, [{"role": "user", "content": "안녕"}], settings)
        assert err.value.status == 401
        assert "API 키" in err.value.message and "--api-key-file" in err.value.message


def test_server_rejections_are_korean_and_name_the_reason(server, key_file):
    cfg = _cfg(server.url + "/v1")
    key = read_api_key(key_file)
    with pytest.raises(ApiFailure) as err:  # the server's max_tokens_limit is 1024
        _collect(cfg, key, [{"role": "user", "content": "안녕"}], SamplingSettings("tiny-ko", 0.0, 1.0, 5000))
    assert err.value.status == 400 and "max_tokens" in err.value.message and HANGUL.search(err.value.message)
    with pytest.raises(ApiFailure) as err:
        _collect(cfg, key, [{"role": "user", "content": "안녕"}], SamplingSettings("no-such-model", 0.0, 1.0, 8))
    assert err.value.status in (400, 404) and "no-such-model" in err.value.message


def test_server_down_is_a_korean_connection_message():
    cfg = _cfg(f"http://127.0.0.1:{free_port()}/v1", connect_timeout_s=2)
    with pytest.raises(ApiFailure) as err:
        _collect(cfg, None, [{"role": "user", "content": "안녕"}], SamplingSettings("m", 0.0, 1.0, 8))
    assert "연결할 수 없습니다" in err.value.message and cfg.api in err.value.message


def test_silent_server_times_out_with_a_korean_message():
    """A server that accepts the connection and never answers: the request ends after read_timeout_s."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept_and_hold():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept_and_hold, daemon=True)
    thread.start()
    try:
        cfg = _cfg(f"http://127.0.0.1:{listener.getsockname()[1]}/v1", read_timeout_s=1.5)
        with pytest.raises(ApiFailure) as err:
            _collect(cfg, None, [{"role": "user", "content": "안녕"}], SamplingSettings("m", 0.0, 1.0, 8))
        assert "1.5초 동안 응답하지 않아" in err.value.message
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (429, {"error": {"message": "too many concurrent requests"}}, "요청이 너무 많습니다(429). 약 3초 뒤에"),
        (500, {"error": {"message": "internal server error"}}, "오류가 발생했습니다(500)"),
        (502, "bad gateway", "오류가 발생했습니다(502)"),
        (503, {"error": {"message": "not ready"}}, "준비되지 않았거나"),
        (400, {"error": {"message": "prompt is 2000 tokens; context_length_exceeded"}}, "새 대화를 시작해 주세요"),
    ],
)
def test_status_codes_map_to_korean_messages(status, body, expected):
    """The statuses a real server cannot be made to return on demand: the same openai client, fed the
    HTTP response through httpx's transport hook."""

    def respond(request: httpx.Request) -> httpx.Response:
        headers = {"retry-after": "3"} if status == 429 else {}
        if isinstance(body, dict):
            return httpx.Response(status, json=body, headers=headers)
        return httpx.Response(status, text=body, headers=headers)

    cfg = _cfg("http://api.invalid/v1")

    async def run():
        client = openai.AsyncOpenAI(base_url=cfg.api, api_key="k", max_retries=0,
                                    http_client=httpx.AsyncClient(transport=httpx.MockTransport(respond)))
        try:
            async for _ in stream_chat(client, cfg, [{"role": "user", "content": "안녕"}],
                                       SamplingSettings("m", 0.0, 1.0, 8)):
                pass
        finally:
            await client.close()

    with pytest.raises(ApiFailure) as err:
        asyncio.run(run())
    assert err.value.status == status
    assert expected in err.value.message


def test_error_inside_a_started_stream_is_reported_in_korean():
    cfg = _cfg("http://api.invalid/v1")
    exc = openai.APIError("backend crashed", request=httpx.Request("POST", "http://x"), body={"message": "boom"})
    failure = korean_error(exc, cfg)
    assert "응답을 만드는 중에 서버 오류" in failure.message and "boom" in failure.message


# ------------------------------------------------------------------------------------------ plain parts


def test_history_is_sent_whole_and_starts_with_a_user_turn():
    conv = Conversation(max_history_messages=3)
    assert conv.request_messages("첫 질문", "  ") == [{"role": "user", "content": "첫 질문"}]
    conv.add_turn("첫 질문", "첫 답")
    conv.add_turn("둘째 질문", "둘째 답")
    sent = conv.request_messages("셋째 질문", "시스템")
    # 3 most recent history messages would start with an assistant turn: it is dropped.
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert [m["content"] for m in sent] == ["시스템", "둘째 질문", "둘째 답", "셋째 질문"]
    assert len(conv) == 2
    conv.clear()
    assert conv.request_messages("새 질문") == [{"role": "user", "content": "새 질문"}]


def test_starters_cover_the_22_tasks_with_korean_samples_in_the_shared_conventions():
    groups = load_starter_groups()
    starters = [s for g in groups for s in g.starters]
    assert sorted(s.task for s in starters) == sorted(TASKS)
    assert len({s.label for s in starters}) == 22, "labels must be unique (Chainlit keys buttons by label)"
    for s in starters:
        assert len(HANGUL.findall(s.message)) >= 20, s.task
    by_task = {s.task: s.message for s in starters}
    assert "<table>" in by_task["table_qa_short"] and "<table>" in by_task["table2title"]
    for task in ("extractive_qa_objective", "abstractive_qa_objective", "extractive_qa_objective_explanation"):
        assert f"\n{OPTIONS_PREFIX} " in by_task[task]
    assert EVIDENCE_PREFIX in by_task["extractive_qa_yes_no_explanation"]
    assert YES in by_task["extractive_qa_yes_no"] and NO in by_task["extractive_qa_yes_no"]
    assert UNANSWERABLE in by_task["answerability_classification"]


def test_starters_file_problems_are_reported(tmp_path):
    data = json.loads(STARTERS_FILE.read_text(encoding="utf-8"))
    data["categories"][0]["tasks"].pop()
    bad = tmp_path / "starters.json"
    bad.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(ValueError, match="missing from categories"):
        load_starter_groups(bad)


def test_api_key_file_errors_are_one_line(tmp_path):
    assert read_api_key(None) is None
    with pytest.raises(KositpError, match="not found"):
        read_api_key(tmp_path / "none.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("# only a comment\n\n", encoding="utf-8")
    with pytest.raises(KositpError, match="holds no key"):
        read_api_key(empty)
    korean = tmp_path / "korean.txt"
    korean.write_text("키\n", encoding="utf-8")
    with pytest.raises(KositpError, match="printable ASCII"):
        read_api_key(korean)
    latin = tmp_path / "latin.txt"
    latin.write_bytes("clé".encode("latin-1"))
    with pytest.raises(KositpError, match="not UTF-8"):
        read_api_key(latin)


def test_config_rejects_bad_urls_and_values():
    assert UIConfig(api="http://h:1/v1/").api == "http://h:1/v1"
    with pytest.raises(ValueError):
        UIConfig(api="127.0.0.1:8000")
    with pytest.raises(ValueError):
        UIConfig(top_p=0)


def test_runtime_folder_has_our_settings_and_an_offline_page(tmp_path):
    root = prepare_app_root(tmp_path / "rt")
    config = (root / ".chainlit" / "config.toml").read_text(encoding="utf-8")
    assert 'language = "ko"' in config and 'custom_build = "build"' in config
    assert json.loads((root / "public" / "theme.json").read_text(encoding="utf-8"))["custom_fonts"] == []
    ko = json.loads((root / ".chainlit" / "translations" / "ko.json").read_text(encoding="utf-8"))
    assert HANGUL.search(ko["chat"]["input"]["placeholder"])
    html = (root / "build" / "index.html").read_text(encoding="utf-8")
    assert '<html lang="ko">' in html
    assert not re.search(r"<link[^>]*https?://", html), "no stylesheet, font or preconnect off the machine"
    assert (root / "build" / "assets").is_dir() and any((root / "build" / "assets").iterdir())
    assert "fonts.googleapis" not in offline_index_html('<link href="https://fonts.googleapis.com/x" rel="x" />')
