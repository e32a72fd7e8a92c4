"""The real `kositp serve` process on the tiny model, driven by the official `openai` client."""

from __future__ import annotations

import json
import threading
import time

import httpx
import openai
import pytest

from kositp.serve.process import ServeProcess

KOREAN_PROMPT = "대한민국의 수도는 어디인가요? 한 문장으로 답하세요."


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    with ServeProcess(["--model", str(tiny_model_dir), "--served-model-name", "tiny-ko", "max_batch_size=4",
                       "batch_wait_ms=20"]) as proc:
        yield proc


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120)


def _chat(client, **kw):
    params = {"model": "tiny-ko", "messages": [{"role": "user", "content": KOREAN_PROMPT}], "max_tokens": 16,
              "temperature": 0} | kw
    return client.chat.completions.create(**params)


def test_models_lists_the_served_name(client):
    assert [m.id for m in client.models.list().data] == ["tiny-ko"]


def test_chat_non_stream_returns_text_and_usage(client, tiny_model_dir):
    from transformers import AutoTokenizer

    from kositp.chat import render

    resp = _chat(client, max_tokens=12)
    choice = resp.choices[0]
    assert choice.message.role == "assistant"
    assert choice.finish_reason in ("stop", "length")
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    prompt = render(tok, [{"role": "user", "content": KOREAN_PROMPT}])
    assert resp.usage.prompt_tokens == len(tok(prompt, add_special_tokens=False)["input_ids"])
    assert 1 <= resp.usage.completion_tokens <= 12
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
    if choice.finish_reason == "length":
        assert resp.usage.completion_tokens == 12


def test_stream_matches_non_stream_and_reports_usage(client):
    full = _chat(client, max_tokens=24).choices[0].message.content
    stream = _chat(client, max_tokens=24, stream=True, stream_options={"include_usage": True})
    pieces, finish, usage = [], None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
            finish = choice.finish_reason or finish
    assert "".join(pieces) == full
    assert finish in ("stop", "length")
    assert usage is not None and usage.completion_tokens >= 1


def test_korean_text_round_trips_without_replacement_characters(client, tiny_model_dir):
    # The random model's reply is arbitrary bytes; the Korean round trip that must hold is the prompt's
    # (the server tokenized exactly our text) and the completion endpoint's streamed vs whole text.
    resp = client.completions.create(model="tiny-ko", prompt=KOREAN_PROMPT, max_tokens=40, temperature=0)
    streamed = "".join(
        c.choices[0].text
        for c in client.completions.create(model="tiny-ko", prompt=KOREAN_PROMPT, max_tokens=40, temperature=0,
                                           stream=True)
        if c.choices
    )
    assert streamed == resp.choices[0].text
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert resp.usage.prompt_tokens == len(tok(KOREAN_PROMPT)["input_ids"])


def test_stop_sequence_truncates_the_reply(client):
    # A seeded sample gives varied text (the random model's greedy reply is mostly newlines).
    sampled = {"temperature": 1.0, "seed": 7, "max_tokens": 30}
    base = _chat(client, **sampled).choices[0].message.content
    assert len(base) >= 8, base
    stop = base[5:7]
    cut = base[: base.find(stop)]
    resp = _chat(client, **sampled, stop=[stop, "절대 나오지 않는 문자열"])
    assert resp.choices[0].message.content == cut
    assert resp.choices[0].finish_reason == "stop"
    streamed = "".join(
        c.choices[0].delta.content or "" for c in _chat(client, **sampled, stop=stop, stream=True) if c.choices
    )
    assert streamed == cut


def test_same_seed_same_sample(client):
    a = _chat(client, temperature=1.0, top_p=0.9, seed=1234, max_tokens=20).choices[0].message.content
    b = _chat(client, temperature=1.0, top_p=0.9, seed=1234, max_tokens=20).choices[0].message.content
    assert a == b


def test_concurrent_requests_are_batched_and_match_solo_results(client, server):
    prompts = ["안녕", "헌법 제1조를 요약하세요.", "오늘 날씨는 어떤가요? 아주 길게 설명해 주세요. " * 3, "예"]

    def ask(p):
        return client.chat.completions.create(model="tiny-ko", messages=[{"role": "user", "content": p}],
                                              max_tokens=12, temperature=0).choices[0].message.content

    solo = [ask(p) for p in prompts]
    results: dict[int, str] = {}
    threads = [threading.Thread(target=lambda i=i, p=p: results.__setitem__(i, ask(p))) for i, p in enumerate(prompts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [results[i] for i in range(len(prompts))] == solo  # left padding does not change greedy output
    metrics = httpx.get(server.url + "/metrics").text
    assert 'kositp_requests_total{endpoint="/v1/chat/completions",status="200"}' in metrics


def test_metrics_count_tokens_and_requests(client, server):
    _chat(client, max_tokens=5)
    text = httpx.get(server.url + "/metrics").text
    values = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines() if line.startswith("kositp_")}
    assert values['kositp_tokens_total{kind="completion"}'] >= 1
    assert values['kositp_tokens_total{kind="prompt"}'] >= 1
    assert "kositp_queue_depth" in values and "kositp_requests_in_flight" in values
    assert any(k.startswith("kositp_request_latency_seconds_count") for k in values)


def test_health_and_ready(server):
    assert httpx.get(server.url + "/health").json() == {"status": "ok"}
    ready = httpx.get(server.url + "/ready").json()
    assert ready["status"] == "ready" and ready["models"] == ["tiny-ko"]


def test_client_disconnect_cancels_generation(server):
    body = {"model": "tiny-ko", "messages": [{"role": "user", "content": "길게"}], "max_tokens": 1024,
            "temperature": 0.8, "stream": True}
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=body, timeout=60) as resp:
        assert resp.status_code == 200
        for line in resp.iter_lines():
            if line.startswith("data: ") and '"content"' in line:
                break  # leave after the first chunk
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = httpx.get(server.url + "/metrics").text
        line = next((ln for ln in text.splitlines() if ln.startswith("kositp_cancelled_total")), "x 0")
        if float(line.split(" ")[1]) >= 1:
            break
        time.sleep(0.2)
    else:
        pytest.fail("the server did not notice the disconnect")
    # the freed server still answers
    assert httpx.post(server.url + "/v1/chat/completions", timeout=60, json=body | {"stream": False, "max_tokens": 3}
                      ).status_code == 200


def test_sse_wire_format_is_openai_style(server):
    body = {"model": "tiny-ko", "messages": [{"role": "user", "content": "안녕"}], "max_tokens": 4, "stream": True}
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=body, timeout=60) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        events = [ln for ln in resp.iter_lines() if ln]
    assert events[-1] == "data: [DONE]"
    first = json.loads(events[0][len("data: "):])
    assert first["object"] == "chat.completion.chunk" and first["choices"][0]["delta"]["role"] == "assistant"
