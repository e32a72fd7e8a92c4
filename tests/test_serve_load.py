"""Bounded load on loopback, and SIGTERM while streaming: the real server process on the tiny model."""

from __future__ import annotations

import asyncio
import json
import threading

import httpx
import pytest

from kositp.serve.loadtest import run_load
from kositp.serve.process import ServeProcess

pytestmark = pytest.mark.slow


def test_200_requests_at_concurrency_16_all_succeed(tiny_model_dir):
    with ServeProcess(["--model", str(tiny_model_dir), "--served-model-name", "tiny"]) as proc:
        result = asyncio.run(run_load(proc.url, n=200, concurrency=16, max_tokens=8))
        metrics = httpx.get(proc.url + "/metrics").text
    assert result["failed"] == 0, result["statuses"]
    assert result["succeeded"] == 200 and result["completion_tokens"] > 0
    assert 'kositp_requests_total{endpoint="/v1/chat/completions",status="200"} 200.0' in metrics
    # the batcher really ran requests together under load: fewer batches than requests
    stats = {ln.split('"')[1]: float(ln.split()[-1]) for ln in metrics.splitlines()
             if ln.startswith("kositp_backend{")}
    assert stats["batched_requests"] == 200
    assert stats["largest_batch"] > 1 and stats["batches"] < 200


def test_sigterm_during_a_stream_finishes_it_then_exits_cleanly(tiny_model_dir):
    proc = ServeProcess(["--model", str(tiny_model_dir), "--served-model-name", "tiny", "drain_timeout_s=60"])
    with proc:
        body = {"model": "tiny", "messages": [{"role": "user", "content": "길게 써 주세요"}], "max_tokens": 600,
                "temperature": 1.0, "seed": 3, "stream": True, "stream_options": {"include_usage": True}}
        lines: list[str] = []
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
        proc.terminate()  # SIGTERM mid-stream
        reader.join(120)
        code = proc.proc.wait(60)
        log = proc.log()
    assert lines[-1] == "data: [DONE]", lines[-3:]
    usage = json.loads(lines[-2][len("data: "):])["usage"]
    finish = json.loads(lines[-3][len("data: "):])["choices"][0]["finish_reason"]
    assert finish in ("stop", "length")
    assert usage["completion_tokens"] >= 1
    assert code == 0
    assert "draining" in log
