"""`kositp bench train --quick`: the real CLI, real TRL trainers in child processes, on the tiny model.

Checks that plain TRL and kositp trained on the same loss-bearing tokens (identical mask checksums)
with losses that agree step by step, and that every ratio and line of the report follows from the
measured figures. No timing is asserted: speed is what the benchmark itself reports.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from kositp.bench.train import LOSS_TOLERANCE
from kositp.cli import app

RECORDS = [
    ("한국의 수도는 어디인가요?", "한국의 수도는 서울입니다."),
    ("다음 문장이 긍정인지 부정인지 답하세요: 영화가 정말 재미있었다.", "긍정"),
    ("'바다'를 넣어 짧은 문장을 만드세요.", "여름에는 가족과 함께 바다에 갑니다."),
    ("다음 글의 제목을 지으세요: 오늘 서울에는 비가 많이 내렸다.", "서울에 많은 비"),
    ("질문에 예 또는 아니요로 답하세요: 물은 100도에서 끓나요?", "예"),
    ("다음 단어의 반대말은? 크다", "작다"),
    ("부산은 어느 나라의 도시인가요?", "부산은 대한민국의 도시입니다."),
    ("다음 문장을 쉽게 바꾸세요: 강수 확률이 높다.", "비가 올 가능성이 크다."),
]


def _write_data(path):
    path.mkdir()
    with open(path / "train.jsonl", "w", encoding="utf-8") as fh:
        for i, (question, answer) in enumerate(RECORDS):
            messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
            fh.write(json.dumps({"id": f"r{i}", "task": "t", "messages": messages}, ensure_ascii=False) + "\n")
    return path


def test_quick_bench_reports_both_sides_with_identical_masks(tmp_path, tiny_model_dir):
    data = _write_data(tmp_path / "data")
    out = tmp_path / "bench"
    result = CliRunner().invoke(app, ["bench", "train", "--quick", "--out", str(out), "--data", str(data),
                                      "--threads", "1"])
    assert result.exit_code == 0, result.output

    report = json.loads((out / "bench_train.json").read_text(encoding="utf-8"))
    assert report["settings"]["model"] == "tiny"
    assert report["settings"]["steps"] == 2 and report["settings"]["runs"] == 1
    assert [r["variant"] for r in report["runs"]] == ["baseline", "kositp"]
    for run in report["runs"]:
        assert run["steps"] == 2 and len(run["step_times_s"]) == 2 and len(run["losses"]) == 2
        assert run["tokens_per_s"] > 0 and run["peak_rss_mb"] >= run["rss_loaded_mb"] > 0
        # assistant-only loss: some tokens carry loss, far fewer than the sequences hold
        assert 0 < run["loss_tokens"] < run["non_pad_tokens"]
    base, ours = report["runs"]
    # padded batches hold more positions than the padding-free ones, but the same real tokens
    assert base["positions"] >= ours["positions"] == ours["non_pad_tokens"] == base["non_pad_tokens"]

    cmp_ = report["summary"]["comparison"]
    assert cmp_["masks_match"] and cmp_["loss_tokens_match"]
    assert base["mask_sha256"] == ours["mask_sha256"]
    # both sides start from the same weights on the same tokens: finite losses that agree step by step
    for run in report["runs"]:
        assert all(math.isfinite(loss) and loss > 0 for loss in run["losses"]), run["losses"]
        assert run["final_loss"] == run["losses"][-1]
    assert ours["losses"] == pytest.approx(base["losses"], rel=LOSS_TOLERANCE)
    assert cmp_["losses_agree"], (base["losses"], ours["losses"])

    # every ratio follows from the per-variant figures (medians of one run = that run's figures)
    summary = report["summary"]["variants"]
    for name, run in (("baseline", base), ("kositp", ours)):
        for key in ("tokens_per_s", "step_time_s", "peak_rss_mb", "final_loss"):
            assert summary[name][key] == run[key]
        # the speed figure is the counted tokens over the timed steps (the first step left out)
        assert run["tokens_per_s"] * sum(run["step_times_s"][1:]) < run["non_pad_tokens"]
    assert cmp_["tokens_per_s_ratio"] == pytest.approx(ours["tokens_per_s"] / base["tokens_per_s"])
    assert cmp_["step_time_ratio"] == pytest.approx(ours["step_time_s"] / base["step_time_s"])
    assert cmp_["memory_metric"] == "peak_rss_mb"
    assert cmp_["memory_ratio"] == pytest.approx(ours["peak_rss_mb"] / base["peak_rss_mb"])
    assert cmp_["final_loss_rel_diff"] == pytest.approx(
        abs(ours["final_loss"] - base["final_loss"]) / base["final_loss"])
    assert cmp_["goal_met"] == (cmp_["tokens_per_s_ratio"] >= 2.0 and cmp_["memory_ratio"] <= 0.6)

    md = (out / "bench_train.md").read_text(encoding="utf-8")
    assert "| baseline |" in md and "| kositp |" in md
    assert f"tokens/s ratio (kositp / baseline): **{cmp_['tokens_per_s_ratio']:.2f}×**" in md
    assert f"memory ratio (peak_rss_mb): **{cmp_['memory_ratio']:.2f}×**" in md
    assert "loss masks: identical" in md


def test_unknown_variant_is_one_line_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "kositp.cli", "bench", "train", "--quick", "--out", str(tmp_path),
                             "--variants", "nope"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: unknown variant(s) nope; choose from baseline, kositp, kositp-fp32, kositp-bf16, trl-fused"]


def test_dtype_variants_pin_bf16_and_check_what_auto_picks(tmp_path, tiny_model_dir, monkeypatch):
    """`--variants kositp-fp32,kositp-bf16` trains the kositp side in each dtype and reports whether
    `bf16: auto`'s choice on this CPU (pinned here, so the test does not depend on the machine) matches."""
    monkeypatch.setenv("KOSITP_CPU_DTYPE", "float32")
    data = _write_data(tmp_path / "data")
    out = tmp_path / "bench"
    result = CliRunner().invoke(app, ["bench", "train", "--quick", "--out", str(out), "--data", str(data),
                                      "--threads", "1", "--variants", "kositp-fp32,kositp-bf16"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "bench_train.json").read_text(encoding="utf-8"))
    assert {r["variant"]: r["bf16"] for r in report["runs"]} == {"kositp-fp32": False, "kositp-bf16": True}
    per, dtype = report["summary"]["variants"], report["summary"]["dtype"]
    ratio = per["kositp-bf16"]["tokens_per_s"] / per["kositp-fp32"]["tokens_per_s"]
    assert dtype["bf16_over_fp32_tokens_per_s"] == pytest.approx(ratio)
    assert dtype["measured_choice"] == ("bfloat16" if ratio >= dtype["margin"] else "float32")
    assert dtype["auto_choice"] == "float32"
    assert dtype["auto_agrees"] == (dtype["measured_choice"] == "float32")
    # the same mask on both sides: only the dtype differs
    assert len({r["mask_sha256"] for r in report["runs"]}) == 1
    md = (out / "bench_train.md").read_text(encoding="utf-8")
    assert f"**{ratio:.2f}×** tokens/s" in md
    assert "`bf16: auto` picks float32 on this CPU: " + ("agrees" if dtype["auto_agrees"] else "DISAGREES") in md


@pytest.mark.parametrize(("before", "after", "busy"), [
    ([1.5, 1.2, 1.0], [1.9, 1.4, 1.1], False),   # the bench's own two threads
    ([3.2, 2.0, 1.0], [1.9, 1.4, 1.1], True),    # another job running when it started
    ([1.0, 1.0, 1.0], [4.1, 2.0, 1.0], True),
    ([], [], False),                              # no load average on this OS: no claim either way
])
def test_busy_machine_is_a_load_above_the_cores(before, after, busy):
    from kositp.bench.train import busy_machine

    report = {"machine": {"cores": 2}, "load_before": before, "load_after": after}
    assert busy_machine(report) is busy
