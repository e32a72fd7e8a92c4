"""`kositp bench train --quick`: the real CLI, real TRL trainers in child processes, on the tiny model.

Checks that the JSON and Markdown reports are complete and that plain TRL and kositp trained on the
same loss-bearing tokens (identical mask checksums). No timing is asserted: speed is what the
benchmark itself reports.
"""

from __future__ import annotations

import json
import subprocess
import sys

from typer.testing import CliRunner

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
    assert cmp_["losses_agree"], (base["losses"], ours["losses"])
    for key in ("tokens_per_s_ratio", "step_time_ratio", "memory_ratio", "final_loss_rel_diff"):
        assert cmp_[key] >= 0

    md = (out / "bench_train.md").read_text(encoding="utf-8")
    assert "| baseline |" in md and "| kositp |" in md
    assert "tokens/s ratio" in md and "loss masks: identical" in md


def test_unknown_variant_is_one_line_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "kositp.cli", "bench", "train", "--quick", "--out", str(tmp_path),
                             "--variants", "nope"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: unknown variant(s) nope; choose from baseline, kositp, trl-fused"]
