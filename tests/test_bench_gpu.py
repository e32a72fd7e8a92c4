"""`kositp bench gpu` as far as a CPU takes it: the published shapes' parameter counts (on the meta
device, nothing allocated), the real plain-TRL and kositp variants on the tiny shape, and failures
recorded per case instead of ending the run. The GPU figures themselves come from running the
command on a GPU (scripts/gpu_check.sh); no timing is asserted here."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from kositp.bench.model_shapes import PUBLISHED_PARAMETERS, parameter_count, shape_config

RECORDS = [
    ("한국의 수도는 어디인가요?", "한국의 수도는 서울입니다."),
    ("다음 단어의 반대말은? 크다", "작다"),
    ("부산은 어느 나라의 도시인가요?", "부산은 대한민국의 도시입니다."),
    ("질문에 예 또는 아니요로 답하세요: 물은 100도에서 끓나요?", "예"),
    ("'바다'를 넣어 짧은 문장을 만드세요.", "여름에는 가족과 함께 바다에 갑니다."),
]


@pytest.fixture
def data(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    with open(folder / "train.jsonl", "w", encoding="utf-8") as fh:
        for i, (question, answer) in enumerate(RECORDS):
            messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
            fh.write(json.dumps({"id": f"r{i}", "task": "t", "messages": messages}, ensure_ascii=False) + "\n")
    return folder


@pytest.mark.parametrize("shape", sorted(PUBLISHED_PARAMETERS))
def test_shapes_have_the_published_parameter_counts(shape):
    assert parameter_count(shape) == PUBLISHED_PARAMETERS[shape]


def test_shape_vocabulary_widens_for_a_larger_tokenizer_but_never_narrows():
    assert shape_config("llama-tiny", vocab_size=5000).vocab_size == 5000
    assert shape_config("llama-3.2-1b", vocab_size=4096).vocab_size == 128256


def test_cpu_run_measures_plain_trl_and_kositp_and_records_each_failure(data, tmp_path, tiny_model_dir):
    out = tmp_path / "bench"
    proc = subprocess.run(
        [sys.executable, "-m", "kositp.cli", "bench", "gpu", "--out", str(out), "--shapes", "llama-tiny",
         "--adapters", "lora", "--data", str(data), "--tokenizer", str(tiny_model_dir), "--steps", "2",
         "--batch-size", "2", "--budget", "600"],
        capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "bench_gpu.json").read_text(encoding="utf-8"))
    cases = {c["variant"]: c for c in report["cases"]}
    plain, ours, unsloth = cases["trl-plain"], cases["kositp-trl"], cases["kositp-unsloth"]
    for case in (plain, ours):
        assert case["status"] == "ok" and case["steps"] == 2 and len(case["losses"]) == 2
        assert case["tokens_per_s"] > 0 and 0 < case["loss_tokens"] < case["non_pad_tokens"]
        assert len(case["step_tokens"]) == 2 and sum(case["step_tokens"]) == case["non_pad_tokens"]
    # the same records and loss mask on both sides; padded batches hold more positions
    assert plain["mask_sha256"] == ours["mask_sha256"] and plain["loss_tokens"] == ours["loss_tokens"]
    assert plain["positions"] > ours["positions"] == ours["non_pad_tokens"] == plain["non_pad_tokens"]
    assert not plain["padding_free"] and ours["padding_free"]
    assert ours["final_loss"] == pytest.approx(plain["final_loss"], rel=0.03)
    # Unsloth has no CPU path: that case fails with kositp's one-line reason, the run goes on
    assert unsloth["status"] == "failed (exit 1)" and "needs a CUDA GPU" in unsloth["error"]
    # the end-to-end chain stops at QLoRA (CUDA only) and says why; later steps are skipped, not run
    steps = report["extras"]["steps"]
    assert steps["sft_qlora"]["status"] == "failed (exit 2)" and "CUDA" in steps["sft_qlora"]["error"]
    assert steps["dpo_step"]["status"] == steps["export_merge"]["status"] == "skipped: an earlier step failed"
    assert (out / "work" / "models" / "llama-tiny" / "config.json").is_file()
    md = (out / "bench_gpu.md").read_text(encoding="utf-8")
    assert "| llama-tiny | lora | trl-plain | ok |" in md and "sft_qlora: failed" in md


def test_a_model_write_that_runs_out_of_time_skips_its_cases_and_says_why(data, tmp_path, tiny_model_dir):
    out = tmp_path / "bench"
    proc = subprocess.run(
        [sys.executable, "-m", "kositp.cli", "bench", "gpu", "--out", str(out), "--shapes", "llama-tiny",
         "--adapters", "lora", "--variants", "trl-plain", "--data", str(data), "--tokenizer", str(tiny_model_dir),
         "--case-timeout", "1", "--budget", "120"],  # 1 s: not even enough to import torch
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "bench_gpu.json").read_text(encoding="utf-8"))
    assert report["models"]["llama-tiny"]["status"] == "timeout"
    assert [c["status"] for c in report["cases"]] == ["skipped: the model could not be written (timeout)"]


def test_unknown_shape_is_one_line_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "kositp.cli", "bench", "gpu", "--out", str(tmp_path),
                           "--shapes", "llama-9b"], capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [
        "error: unknown shape(s) llama-9b; choose from llama-3.2-1b, llama-3.1-8b, gemma-3-1b, llama-tiny"]


def test_comparisons_pair_each_kositp_case_with_plain_trl_and_judge_the_8b_goal():
    from kositp.bench.gpu import comparisons

    def case(adapter, variant, tokens_per_s, peak_mb, shape="llama-3.1-8b", step_time_s=None):
        return {"shape": shape, "adapter": adapter, "variant": variant, "status": "ok", "tokens_per_s": tokens_per_s,
                "peak_vram_mb": peak_mb, "final_loss": 2.0, "mask_sha256": "same",
                "step_time_s": step_time_s or 1000 / tokens_per_s if tokens_per_s else None}

    rows = comparisons([case("lora", "trl-plain", 1000, 30000), case("qlora", "trl-plain", 700, 14000),
                        case("qlora", "kositp-unsloth", 1900, 9000), case("lora", "kositp-trl", 1200, 29000),
                        case("lora", "kositp-trl", 900, 3000, shape="llama-3.2-1b"),  # no 1B baseline: no row
                        case("qlora", "kositp-trl", 0, 0) | {"status": "timeout"}])
    found = {(r["adapter"], r["variant"], r["baseline"]): r for r in rows}
    assert set(found) == {("qlora", "kositp-unsloth", "trl-plain qlora"), ("qlora", "kositp-unsloth", "trl-plain lora"),
                          ("lora", "kositp-trl", "trl-plain lora")}
    against_lora = found[("qlora", "kositp-unsloth", "trl-plain lora")]
    assert against_lora["tokens_per_s_ratio"] == pytest.approx(1.9) and against_lora["memory_ratio"] == pytest.approx(0.3)
    assert against_lora["meets_goal"] and not found[("qlora", "kositp-unsloth", "trl-plain qlora")]["meets_goal"]


def test_goal_needs_the_median_step_speedup_too_so_a_few_stalled_baseline_steps_cannot_meet_it():
    from kositp.bench.gpu import comparisons, render_markdown

    # Plain TRL stalled on two of its steps: twice the tokens/s for Unsloth overall, the same median step.
    plain = {"shape": "llama-3.1-8b", "adapter": "qlora", "variant": "trl-plain", "status": "ok", "tokens_per_s": 600,
             "step_time_s": 0.70, "peak_vram_mb": 20000, "final_loss": 2.0, "mask_sha256": "same"}
    unsloth = plain | {"variant": "kositp-unsloth", "tokens_per_s": 1200, "step_time_s": 0.69, "peak_vram_mb": 6000}
    (row,) = comparisons([plain, unsloth])
    assert row["tokens_per_s_ratio"] == pytest.approx(2.0) and row["median_step_speedup"] == pytest.approx(0.70 / 0.69)
    assert row["memory_ratio"] == pytest.approx(0.3) and row["meets_goal"] is False
    report = {"settings": {"steps": 8, "batch_size": 4, "max_length": 1024, "optim": "adamw_torch", "recipe": "r",
                           "overrides": []}, "command": "kositp bench gpu", "machine": {"torch": "2.11"},
              "cases": [plain, unsloth], "comparisons": [row], "extras": {}}
    assert "| llama-3.1-8b | qlora | kositp-unsloth | trl-plain qlora | 2.00× | 1.01× | 0.30× | yes | 0.00% | not met |" \
        in render_markdown(report)
