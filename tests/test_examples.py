"""The scripts in examples/ run as a reader runs them (`python examples/NAME.py`), on the tiny model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name: str, *args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True,
                            cwd=cwd, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_custom_source_feeds_the_task_builders_and_counts_its_rejects(tmp_path: Path):
    result = run_example("custom_source.py", "--out", "custom", cwd=tmp_path)
    data = tmp_path / "custom" / "data"
    records = read_jsonl(data / "train.jsonl")
    assert {r["source"] for r in records} == {"house-articles"}
    tasks = {r["task"] for r in records}
    assert {"extractive_qa_short", "extractive_qa_yes_no", "extractive_qa_yes_no_explanation",
            "title_generation"} <= tasks
    yes_no = next(r for r in records if r["task"] == "extractive_qa_yes_no" and r["doc_id"] == "kimjang")
    assert yes_no["messages"][-1] == {"role": "assistant", "content": "아니요"}
    # the empty article, and the short kimjang passage that is too short to continue as text completion
    rejects = sorted((r["reason"], r["ref"].rsplit(":", 1)[-1]) for r in read_jsonl(data / "rejects.jsonl"))
    assert rejects == [("empty_text", "3"), ("too_few_sentences", "2.p0")]
    assert f"{len(records)} records from" in result.stdout


@pytest.mark.slow
def test_sft_dpo_eval_runs_every_stage_in_python(tmp_path: Path):
    run_example("sft_dpo_eval.py", "--out", "example", "--steps", "4", "--eval-limit", "2", cwd=tmp_path,
                timeout=900)
    out = tmp_path / "example"
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["records"] > 0 and set(summary["scores"]) == {"base", "sft", "dpo"}
    assert all(0.0 <= v <= 1.0 for v in summary["scores"].values())
    sft = json.loads((out / "sft" / "run.json").read_text(encoding="utf-8"))
    dpo = json.loads((out / "dpo" / "run.json").read_text(encoding="utf-8"))
    assert sft["final_step"] == 4 and dpo["method"] == "dpo" and dpo["final_step"] == 4
    assert (tmp_path / dpo["parent_run"]).resolve() == (out / "sft").resolve()  # relative to the cwd
    assert read_jsonl(out / "pairs" / "train.jsonl")
    for name in ("base", "sft", "dpo"):
        report = json.loads((out / "eval" / name / "report.json").read_text(encoding="utf-8"))
        assert report["headline"]["tasks/mean_primary"] == summary["scores"][name]
    export = json.loads((out / "export" / "kositp_export.json").read_text(encoding="utf-8"))
    assert export["logits_check"]["passed"] and export["method"] == "dpo"
