"""Draining after SIGTERM, as docs/serving.md describes it.

While draining, the server still accepts connections: new generations get 503 with Retry-After,
/ready is 503, and requests in flight finish (exit code 0). Those still running when
`drain_timeout_s` expires are cut: a stream ends with an error event and `data: [DONE]`, a JSON
request gets 503, and the exit code is 3 (DRAIN_INCOMPLETE).
"""

from __future__ import annotations

import asyncio
import json
import signal
import threading

import httpx
import pytest

from kositp.serve.config import ServeConfig
from kositp.serve.process import ServeProcess
from kositp.serve.server import DRAIN_INCOMPLETE, ServerThread

CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "길게 써 주세요"}], "max_tokens": 8,
        "temperature": 0}


class HeldBackend:
    """The real tiny-model backend, but each generation stops after its first event until `gate` is
    set, so the test decides how long a request stays in flight (the drain is what is tested)."""

    def __init__(self, inner, gate: threading.Event) -> None:
        self.inner, self.gate = inner, gate

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def chat(self, req, max_tokens):
        events = self.inner.chat(req, max_tokens)

        async def held():
            first = True
            async for ev in events:
                yield ev
                while first and not self.gate.is_set():
                    await asyncio.sleep(0.02)
                first = False

        return held()


def _server(tiny_model_dir, gate: threading.Event, drain_timeout_s: float) -> ServerThread:
    from kositp.serve.backends.transformers import TransformersBackend

    cfg = ServeConfig(model=str(tiny_model_dir), served_model_name="tiny", port=0, drain_timeout_s=drain_timeout_s,
                      retry_after_s=7)
    return ServerThread(cfg, backend=HeldBackend(TransformersBackend(cfg), gate))


def _start_stream(url: str, lines: list[str]) -> tuple[threading.Thread, threading.Event]:
    started = threading.Event()

    def consume():
        with httpx.stream("POST", url + "/v1/chat/completions", json=CHAT | {"stream": True}, timeout=120) as resp:
            for line in resp.iter_lines():
                if line:
                    lines.append(line)
                if '"role"' in line:
                    started.set()

    reader = threading.Thread(target=consume)
    reader.start()
    return reader, started


def _wait_in_flight(url: str, n: int) -> None:
    for _ in range(600):
        if f"kositp_requests_in_flight {float(n)}" in httpx.get(url + "/metrics").text:
            return
        threading.Event().wait(0.05)
    pytest.fail(f"{n} request(s) never got in flight")


def test_while_draining_new_requests_get_503_and_in_flight_ones_finish(tiny_model_dir):
    gate = threading.Event()
    server = _server(tiny_model_dir, gate, drain_timeout_s=120)
    lines: list[str] = []
    try:
        with server as url:
            reader, started = _start_stream(url, lines)
            assert started.wait(60)
            _wait_in_flight(url, 1)
            server.drain()
            for _ in range(200):  # the drain flag is set from this thread at once; wait for /ready to show it
                if httpx.get(url + "/ready").status_code == 503:
                    break
            new = httpx.post(url + "/v1/chat/completions", json=CHAT, timeout=30)  # a new connection: accepted
            assert new.status_code == 503 and new.headers["Retry-After"] == "7"
            assert new.json()["error"]["type"] == "service_unavailable"
            assert httpx.get(url + "/ready").status_code == 503
            assert httpx.get(url + "/health").status_code == 200
            gate.set()
            reader.join(60)
            server.thread.join(60)
            assert not server.thread.is_alive()
    finally:
        gate.set()
    assert lines[-1] == "data: [DONE]"
    assert json.loads(lines[-2][len("data: "):])["choices"][0]["finish_reason"] in ("stop", "length")
    assert server.server.exit_code == 0


def test_drain_timeout_cuts_streams_with_an_error_event_and_exits_3(tiny_model_dir):
    gate = threading.Event()  # never set while the server runs: these requests cannot finish by themselves
    server = _server(tiny_model_dir, gate, drain_timeout_s=0.5)
    lines: list[str] = []
    plain: list[httpx.Response] = []
    try:
        with server as url:
            reader, started = _start_stream(url, lines)
            assert started.wait(60)
            waiting = threading.Thread(target=lambda: plain.append(
                httpx.post(url + "/v1/chat/completions", json=CHAT, timeout=60)))
            waiting.start()
            _wait_in_flight(url, 2)
            server.drain()
            reader.join(60)
            waiting.join(60)
            server.thread.join(60)
            assert not server.thread.is_alive()
    finally:
        gate.set()
    assert lines[-1] == "data: [DONE]", lines[-3:]
    error = json.loads(lines[-2][len("data: "):])["error"]
    assert error["type"] == "service_unavailable" and "shutting down" in error["message"]
    assert plain[0].status_code == 503 and "shutting down" in plain[0].json()["error"]["message"]
    assert server.server.exit_code == DRAIN_INCOMPLETE


@pytest.mark.slow
def test_sigterm_on_the_real_process_cuts_a_long_stream_and_exits_3(tiny_model_dir):
    # drain_timeout_s=0: whatever is in flight at SIGTERM is cut at once. The tiny model's greedy reply
    # runs to max_tokens, so the stream is still going when the signal lands.
    proc = ServeProcess(["--model", str(tiny_model_dir), "--served-model-name", "tiny", "drain_timeout_s=0"])
    lines: list[str] = []
    with proc:
        body = CHAT | {"max_tokens": 1024, "stream": True}
        started = threading.Event()

        def consume():
            with httpx.stream("POST", proc.url + "/v1/chat/completions", json=body, timeout=120) as resp:
                for line in resp.iter_lines():
                    if line:
                        lines.append(line)
                    if '"content"' in line:
                        started.set()

        reader = threading.Thread(target=consume)
        reader.start()
        assert started.wait(60)
        proc.proc.send_signal(signal.SIGTERM)
        reader.join(120)
        code = proc.proc.wait(60)
        log = proc.log()
    assert lines[-1] == "data: [DONE]"
    assert "error" in json.loads(lines[-2][len("data: "):]), lines[-2]
    assert code == DRAIN_INCOMPLETE, log[-2000:]
    assert "Traceback" not in log
