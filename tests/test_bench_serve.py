"""`kositp bench serve` end to end on the tiny model, transformers backend only: structure and sanity.

No timing is asserted (speed is what the command measures); the test checks that every request
succeeded, tokens were generated and counted, and the ratios and goals follow from the figures in
the file.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_bench_serve_tiny_transformers(tmp_path):
    out = tmp_path / "bench"
    cmd = [sys.executable, "-m", "kositp.cli", "bench", "serve", "--out", str(out), "--model", "tiny",
           "--backends", "transformers", "--concurrency", "1,4", "--prompts", "4", "--max-new-tokens", "8",
           "--runs", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "bench_serve.json").read_text(encoding="utf-8"))
    md = (out / "bench_serve.md").read_text(encoding="utf-8")

    s = report["settings"]
    assert s["prompts"] == 4 and s["concurrency"] == [1, 4] and s["max_new_tokens"] == 8
    assert len(s["prompt_texts"]) == 4 and all(any("가" <= ch <= "힣" for ch in t) for t in s["prompt_texts"])
    assert report["machine"]["cores"] >= 1 and len(report["load_before"]) == 3
    assert s["dtype"] == "float32" and s["vllm_dtype"] == "auto"  # each backend's own default
    # a line per measured run, so a log file shows progress
    assert "baseline float32 run 1/1:" in proc.stderr and "transformers run 1/1 concurrency 4:" in proc.stderr

    baselines = {b["dtype"]: b for b in report["baselines"]}
    assert list(baselines) == ["float32", "bfloat16"]
    for b in baselines.values():
        run = b["runs"][0]
        assert len(run["tokens_per_prompt"]) == 4 and all(1 <= n <= 8 for n in run["tokens_per_prompt"])
        assert run["tokens"] == sum(run["tokens_per_prompt"]) and run["seconds"] > 0
        assert b["tokens_per_s"] == pytest.approx(run["tokens"] / run["seconds"], rel=1e-2)

    tf = report["backends"]["transformers"]
    assert set(tf["levels"]) == {"1", "4"}
    for c, level in tf["levels"].items():
        assert level["requests"] == 4 and level["succeeded"] == 4 and level["failed"] == 0
        assert 4 <= level["completion_tokens"] <= 4 * 8
        raw = tf["raw"][c][0]
        assert raw["temperature"] == 0.0 and raw["max_tokens"] == 8 and raw["statuses"] == {"200": 4}
        assert level["tokens_per_s"] == pytest.approx(raw["completion_tokens"] / raw["wall_s"])
        assert 0 < level["ttft_p50_s"] <= level["ttft_p95_s"] and 0 < level["latency_p50_s"] <= level["latency_p95_s"]
    assert tf["backend_stats"]["batched_requests"] >= 4 + 4 + 4  # warm-up burst and both levels
    stats = tf["backend_stats"]
    assert stats["dense_linears"] + stats["onednn_linears"] + stats["split_linears"] > 0  # the kernel of every linear
    served = tf["served_settings"]  # what the server logged it used, with the CPU it was chosen for
    assert served["max_batch_size"] == stats["max_batch_size"] and served["threads"] == stats["threads"] >= 1
    assert served["cpu"] == report["machine"]["cpu"] and served["cpu_flags"] == report["machine"]["cpu_flags"]
    assert f"threads {served['threads']}, max_batch_size {served['max_batch_size']}" in md
    anatomy = report["anatomy"]
    assert [s["batch"] for s in anatomy["steps"]] == [c["batch"] for c in anatomy["ceilings"]] == [1, 4]
    for step in anatomy["steps"]:
        assert step["output_projection_s"] > 0 and step["output_projection_fraction"] == pytest.approx(
            step["output_projection_s"] / step["step_s"])
    assert anatomy["bandwidth_gbs"] > 0 and anatomy["matmul_peak_gflops"] > 0
    assert anatomy["traffic"]["bytes_per_step"] > anatomy["traffic"]["output_projection_bytes"] > 0

    rows = {(r["backend"], r["concurrency"]): r for r in report["summary"]["rows"]}
    assert set(rows) == {("transformers", 1), ("transformers", 4)}
    for (_, c), row in rows.items():
        for dtype, b in baselines.items():
            assert row["ratio"][dtype] == pytest.approx(tf["levels"][str(c)]["tokens_per_s"] / b["tokens_per_s"])
            assert f"{row['ratio'][dtype]:.2f}×" in md
    goals = {g["backend"]: g for g in report["summary"]["goals"]}
    assert goals["transformers"]["met"] is None and "concurrency 16 not measured" in goals["transformers"]["note"]
    assert goals["vllm"]["met"] is None
    assert "| transformers | 4 | 4 / 0 |" in md


def test_bench_serve_bad_options_are_one_line_errors(tmp_path):
    for args, needle in [(["--backends", "tgi"], "unknown backend"), (["--concurrency", "1,x"], "--concurrency"),
                         (["--dtype", "int8"], "--dtype"), (["--vllm-dtype", "fp8"], "--vllm-dtype"),
                         (["--model", str(tmp_path / "nope")], "not a directory")]:
        proc = subprocess.run([sys.executable, "-m", "kositp.cli", "bench", "serve", "--out", str(tmp_path / "o"),
                               *args], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and needle in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
