"""The chat page end to end: real headless Chromium -> `kositp ui` (Chainlit) -> real `kositp serve`.

The server runs the tiny model (random weights, gibberish replies), except for the stop test, which
needs a reply slow enough to stop and runs the real default model: these tests check what the page does
(streams, sends the whole history, starters, settings, stop, new chat, Korean errors), reading
the server's prompt log (`log_prompts=true`) to see exactly which messages it received.
Screenshots of each state go to artifacts/ui/ (gitignored).
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import httpx
import pytest

from kositp.serve.process import ServeProcess, free_port
from kositp.ui.process import UIProcess
from kositp.ui.starters import load_starter_groups

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "ui"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]
ASSISTANT = '[data-step-type="assistant_message"]'
USER = '[data-step-type="user_message"]'
# The longest reply the servers allow (a short prompt + 1,536 fit the tiny model's 2,048 positions).
LONG_REPLY_TOKENS = 1536
SYSTEM_PROMPT_DEFAULT = "당신은 친절하고 정확한 한국어 AI 어시스턴트입니다."

if shutil.which(CHROMIUM) is None:
    pytest.skip(f"{CHROMIUM} not found: install Debian chromium and fonts-nanum (make system-deps)",
                allow_module_level=True)
playwright_sync = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def key_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("ui-keys") / "keys.txt"
    path.write_text("sk-browser-test\n", encoding="utf-8")
    return path


def serve(model_dir: Path, name: str, key_file: Path) -> ServeProcess:
    return ServeProcess(["--model", str(model_dir), "--served-model-name", name, "--api-key-file", str(key_file),
                         "log_prompts=true", f"max_tokens_limit={LONG_REPLY_TOKENS}"])


def chat_page(server: ServeProcess, key_file: Path) -> UIProcess:
    return UIProcess(server.url + "/v1", ["--api-key-file", str(key_file),
                                          f"max_tokens_slider_max={LONG_REPLY_TOKENS}"])


@pytest.fixture(scope="module")
def server(tiny_model_dir, key_file):
    with serve(tiny_model_dir, "tiny-ko", key_file) as proc:
        yield proc


@pytest.fixture(scope="module")
def ui(server, key_file):
    with chat_page(server, key_file) as proc:
        yield proc


@pytest.fixture(scope="module")
def slow_server(default_model_dir, key_file):
    """The real default model (gemma-3-270m), slow enough on a CPU that a long reply is still streaming
    when the stop test clicks stop; the tiny model can finish its longest reply before a loaded test
    machine has reported the first streamed frame to the test."""
    with serve(default_model_dir, "gemma-ko", key_file) as proc:
        yield proc


@pytest.fixture(scope="module")
def slow_ui(slow_server, key_file):
    with chat_page(slow_server, key_file) as proc:
        yield proc


@pytest.fixture(scope="module")
def browser():
    with playwright_sync.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def open_page(browser, request):
    """A fresh browser context (a new chat session) at a URL; records requests that leave loopback
    and counts Chainlit's streamed-token websocket frames."""
    contexts = []

    def _open(url: str):
        ctx = browser.new_context(locale="ko-KR", viewport={"width": 1200, "height": 820})
        contexts.append(ctx)
        page = ctx.new_page()
        page.external_requests = []
        page.stream_frames = []
        page.events = []  # names of the Socket.IO events the page received, in order

        def on_request(req):
            if not re.match(r"^(https?|wss?)://(127\.0\.0\.1|localhost)[:/]|^(data|blob):", req.url):
                page.external_requests.append(req.url)

        def on_frame(frame):
            if isinstance(frame, str) and (event := re.match(r'^42\["(\w+)"', frame)):
                page.events.append(event.group(1))
                if event.group(1) == "stream_token":
                    page.stream_frames.append(frame)

        def on_response(resp):  # Socket.IO starts on HTTP long-polling: its first events can come that way
            if "transport=polling" in resp.url and resp.request.method == "GET" and resp.ok:
                for packet in resp.text().split("\x1e"):
                    on_frame(packet)

        def on_ws(ws):
            ws.on("framereceived", on_frame)

        page.on("request", on_request)
        page.on("response", on_response)
        page.on("websocket", on_ws)
        page.goto(url)
        page.wait_for_selector("#chat-input", timeout=60_000)
        wait_chat_started(page, 0)
        return page

    yield _open
    for ctx in contexts:
        ctx.close()


def wait_chat_started(page, since: int, timeout_s: float = 60) -> None:
    """Until the chat's on_chat_start (received after event number `since`) has sent its settings and ended.

    A user sees the settings panel before typing. A message sent earlier can land while Chainlit
    is still connecting a new chat's session, and on_chat_start's end clears the page's busy flag.
    """
    def started() -> bool:
        events = page.events[since:]
        return "chat_settings" in events and "task_end" in events[events.index("chat_settings"):]

    deadline = time.monotonic() + timeout_s
    while not started():
        assert time.monotonic() < deadline, f"the chat did not start within {timeout_s:g}s: {page.events[since:]}"
        page.wait_for_timeout(50)


def shot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def chat_requests(server) -> list[dict]:
    """Every chat request body the server logged, oldest first."""
    out = []
    for line in server.log().splitlines():
        _, sep, body = line.partition("chat request: ")
        if sep:
            req = json.loads(body)
            req["messages"] = [{"role": m["role"], "content": m["content"]} for m in req["messages"]]
            out.append(req)
    return out


def wait_idle(page, timeout_s: float = 120) -> None:
    """Until the running reply (if any) is over: the send button is back and the stop button gone."""
    page.wait_for_selector("#stop-button", state="detached", timeout=timeout_s * 1000)
    page.wait_for_selector("#chat-submit", state="visible", timeout=timeout_s * 1000)


def send(page, text: str) -> None:
    page.fill("#chat-input", text)
    page.click("#chat-submit")


def wait_for_count(page, selector: str, n: int, timeout_s: float = 120) -> None:
    page.wait_for_function(f"document.querySelectorAll('{selector}').length >= {n}", timeout=timeout_s * 1000)


def test_korean_chat_streams_and_sends_the_whole_history(server, ui, open_page):
    page = open_page(ui.url)
    assert page.locator("#chat-input").get_attribute("placeholder").startswith("메시지를 입력하세요")
    shot(page, "01_start")
    before = len(chat_requests(server))

    first = "안녕하세요! 한국의 가을 날씨를 한 문장으로 알려 주세요."
    send(page, first)
    wait_for_count(page, ASSISTANT, 1)
    wait_idle(page)
    assert len(page.stream_frames) >= 2, "the reply must arrive as streamed tokens, not in one piece"
    reply1 = page.locator(ASSISTANT).last.inner_text().strip()
    assert reply1
    shot(page, "02_first_reply")

    second = "방금 한 말을 더 짧게 줄여 주세요."
    send(page, second)
    wait_for_count(page, ASSISTANT, 2)
    wait_idle(page)
    shot(page, "03_second_turn")

    requests = chat_requests(server)[before:]
    assert len(requests) == 2
    assert requests[0]["stream"] is True
    assert [m["role"] for m in requests[0]["messages"]] == ["system", "user"]
    turn2 = requests[1]["messages"]
    assert [m["role"] for m in turn2] == ["system", "user", "assistant", "user"]
    assert turn2[0]["content"].startswith(SYSTEM_PROMPT_DEFAULT)
    assert turn2[1]["content"] == first and turn2[3]["content"] == second
    assert turn2[2]["content"].strip(), "the first reply is sent back as the assistant turn"
    assert requests[1]["model"] == "tiny-ko"
    assert page.external_requests == [], f"the page must work offline: {page.external_requests}"


def test_starter_category_then_starter_sends_the_sample(server, ui, open_page):
    page = open_page(ui.url)
    groups = {g.label: g for g in load_starter_groups()}
    for label in groups:
        assert page.get_by_role("button", name=label).is_visible()
    page.get_by_role("button", name="표 이해").click()
    table = next(s for s in groups["표 이해"].starters if s.task == "table_qa_short")
    page.get_by_role("button", name=table.label).wait_for(timeout=10_000)
    shot(page, "04_starters")
    before = len(chat_requests(server))
    page.get_by_role("button", name=table.label).click()
    wait_for_count(page, USER, 1)
    assert "1월 평균 기온이 가장 낮은 도시는" in page.locator(USER).first.inner_text()
    wait_for_count(page, ASSISTANT, 1)
    wait_idle(page)
    shot(page, "05_starter_reply")
    sent = chat_requests(server)[before:]
    assert sent[-1]["messages"][-1] == {"role": "user", "content": table.message}


def test_settings_panel_lists_models_and_changes_the_request(server, ui, open_page):
    page = open_page(ui.url)
    page.click("#chat-settings-open-modal")
    page.wait_for_selector("#chat-settings", timeout=20_000)
    page.wait_for_timeout(500)  # the dialog's open animation
    text = page.locator("#chat-settings").inner_text()
    for label in ("모델", "온도 (temperature)", "top_p", "최대 생성 토큰 수 (max_tokens)", "시스템 프롬프트", "tiny-ko"):
        assert label in text, (label, text)
    custom = "너는 해적처럼 말하는 한국어 비서야."
    page.fill("#system_prompt", custom)
    shot(page, "06_settings")
    page.locator("#chat-settings #confirm").click()
    before = len(chat_requests(server))
    send(page, "오늘 점심 메뉴를 추천해 줘.")
    wait_for_count(page, ASSISTANT, 1)
    wait_idle(page)
    sent = chat_requests(server)[before:]
    assert sent[-1]["messages"][0] == {"role": "system", "content": custom}


def set_sampling(page, *, max_tokens: str, temperature: str) -> None:
    """Move the settings panel's sliders to an end ("Home" = minimum, "End" = maximum) and confirm."""
    page.click("#chat-settings-open-modal")
    page.wait_for_selector("#chat-settings", timeout=20_000)
    # The focusable thumb is the [role=slider] inside the element Chainlit gives the widget's id.
    for widget, key in (("max_tokens", max_tokens), ("temperature", temperature)):
        thumb = page.locator(f"#{widget} [role=slider]")
        thumb.focus()
        page.keyboard.press(key)
        bound = "aria-valuemin" if key == "Home" else "aria-valuemax"
        assert thumb.get_attribute("aria-valuenow") == thumb.get_attribute(bound), widget
    page.locator("#chat-settings #confirm").click()
    page.wait_for_selector("#chat-settings", state="detached", timeout=20_000)


def diagnose(page, server, ui) -> str:
    """What a failed stop test needs to be understood from a CI log alone."""
    replies = page.locator(ASSISTANT).all_inner_texts()
    return (f"stop button present: {page.locator('#stop-button').count()}\n"
            f"assistant messages ({len(replies)}): {[r[-160:] for r in replies]}\n"
            f"--- server log (tail) ---\n{server.log()[-2500:]}\n--- ui log (tail) ---\n{ui.log()[-2500:]}")


def test_stop_button_cancels_and_new_chat_resets_history(slow_server, slow_ui, open_page):
    server, ui = slow_server, slow_ui
    page = open_page(ui.url)
    # The first turn of a fresh chat, greedy and as long as the server allows: the real model repeats
    # itself up to the length limit, far longer than the test needs to click stop.
    set_sampling(page, max_tokens="End", temperature="Home")
    frames_before = len(page.stream_frames)
    send(page, "아주 길게 이야기를 써 주세요.")
    page.wait_for_selector("#stop-button", timeout=60_000)
    deadline = time.monotonic() + 120
    while len(page.stream_frames) <= frames_before:
        assert time.monotonic() < deadline, "no streamed frame within 120 s of sending\n" + diagnose(page, server, ui)
        page.wait_for_timeout(20)
    try:
        page.locator("#stop-button").click(force=True, timeout=10_000)
    except playwright_sync.TimeoutError:
        shot(page, "07_stop_gone")
        pytest.fail("the reply ended before the stop button was clicked\n" + diagnose(page, server, ui))
    try:
        page.get_by_text("응답 생성을 중지했습니다").wait_for(timeout=30_000)
    except playwright_sync.TimeoutError:
        shot(page, "07_stop_failed")
        pytest.fail("the stopped reply never showed the stop note\n" + diagnose(page, server, ui))
    stopped = chat_requests(server)[-1]
    assert (stopped["max_tokens"], stopped["temperature"]) == (LONG_REPLY_TOKENS, 0.0), "settings reached the request"
    wait_idle(page, 30)
    shot(page, "07_stopped")
    assert page.get_by_text("Task manually stopped").count() == 0
    # The server notices the closed stream at its next token, a moment after the page shows the note.
    deadline = time.monotonic() + 30
    while not re.search(r"^kositp_cancelled_total [1-9]", metrics := httpx.get(server.url + "/metrics").text, re.M):
        assert time.monotonic() < deadline, f"the server never saw the request cancelled:\n{metrics}"
        time.sleep(0.2)

    # The stopped turn's partial reply is history: the next request carries two turns. Short replies
    # from here on, so the rest of the test takes seconds.
    set_sampling(page, max_tokens="Home", temperature="Home")
    before = len(chat_requests(server))
    send(page, "두 번째 질문입니다.")
    wait_for_count(page, ASSISTANT, 2)
    wait_idle(page)
    assert [m["role"] for m in chat_requests(server)[before:][-1]["messages"]] == [
        "system", "user", "assistant", "user"]

    # New chat: confirm dialog, empty page, and the next request has no history.
    events_before = len(page.events)
    page.click("#new-chat-button")
    page.locator("#new-chat-dialog #confirm").click()
    page.wait_for_function(f"document.querySelectorAll('{ASSISTANT}').length === 0", timeout=30_000)
    wait_chat_started(page, events_before)
    before = len(chat_requests(server))
    send(page, "새 대화의 첫 질문입니다.")
    wait_for_count(page, ASSISTANT, 1)
    wait_idle(page)
    shot(page, "08_new_chat")
    assert [m["role"] for m in chat_requests(server)[before:][-1]["messages"]] == ["system", "user"]


def test_api_down_shows_korean_error_and_page_stays_usable(open_page):
    dead = f"http://127.0.0.1:{free_port()}/v1"
    with UIProcess(dead, ["connect_timeout_s=2"]) as down_ui:
        page = open_page(down_ui.url)
        page.get_by_text("연결할 수 없습니다").first.wait_for(timeout=30_000)
        send(page, "서버가 꺼져 있어도 괜찮나요?")
        wait_for_count(page, USER, 1)
        page.wait_for_function(
            "[...document.querySelectorAll('[data-step-type=\"assistant_message\"]')]"
            ".filter(e => e.innerText.includes('연결할 수 없습니다')).length >= 2", timeout=30_000)
        wait_idle(page, 30)
        assert page.locator("#chat-input").is_editable()
        shot(page, "09_api_down")
        send(page, "다시 한 번 보냅니다.")
        wait_for_count(page, USER, 2)
        page.wait_for_function(
            "[...document.querySelectorAll('[data-step-type=\"assistant_message\"]')]"
            ".filter(e => e.innerText.includes('연결할 수 없습니다')).length >= 3", timeout=30_000)


def test_missing_api_key_shows_korean_401(server, open_page):
    with UIProcess(server.url + "/v1") as keyless_ui:
        page = open_page(keyless_ui.url)
        page.get_by_text("API 키가 없거나 올바르지 않습니다").first.wait_for(timeout=30_000)
        shot(page, "10_api_401")
        assert page.locator("#chat-input").is_editable()


def test_enter_right_after_load_is_sent_once_connected(server, ui, browser):
    """Chainlit shows the input before its socket connects and ignores Enter until then; the page's
    script (public/kositp.js) keeps such a message, says it is connecting, and sends it when ready."""
    ctx = browser.new_context(locale="ko-KR", viewport={"width": 1200, "height": 820})
    page = ctx.new_page()
    socket = {"open": False, "refused": 0}

    def hold_socket(route):  # the socket stays unconnected until the test opens it
        if socket["open"]:
            route.continue_()
        else:
            socket["refused"] += 1
            route.abort()

    page.route(re.compile(r"/ws/socket\.io/"), hold_socket)
    try:
        page.goto(ui.url)
        page.wait_for_selector("#chat-input", timeout=60_000)
        text = "페이지가 열리자마자 Enter로 보낸 질문입니다."
        before = len(chat_requests(server))
        page.fill("#chat-input", text)
        page.press("#chat-input", "Enter")
        page.get_by_role("status").filter(has_text="연결되면 입력한 메시지를 바로 보냅니다").wait_for(timeout=10_000)
        deadline = time.monotonic() + 30
        while socket["refused"] == 0:
            assert time.monotonic() < deadline, "the page never tried to connect its socket"
            page.wait_for_timeout(50)
        assert page.locator(USER).count() == 0 and len(chat_requests(server)) == before
        shot(page, "11_connecting")

        socket["open"] = True
        wait_for_count(page, USER, 1, timeout_s=60)
        assert text in page.locator(USER).first.inner_text()
        wait_for_count(page, ASSISTANT, 1)
        wait_idle(page)
        assert page.locator("#kositp-connecting-note").count() == 0
        shot(page, "12_sent_once_connected")
        assert chat_requests(server)[before:][-1]["messages"][-1] == {"role": "user", "content": text}
    finally:
        ctx.close()


def test_the_page_wears_kositp_marks_not_chainlits(ui, open_page):
    page = open_page(ui.url)
    logo = page.locator("img.logo").first
    logo.wait_for(timeout=20_000)
    assert logo.evaluate("img => img.complete && img.naturalWidth > 0")
    shot(page, "13_logo")
    for path in ("/logo?theme=light", "/logo?theme=dark", "/favicon"):
        response = httpx.get(ui.url + path, timeout=10)
        assert response.status_code == 200 and "<title>kositp</title>" in response.text, path
    assert page.title() == "kositp 한국어 챗봇"
