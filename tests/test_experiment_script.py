"""`scripts/experiment_public.sh --quick`: every stage of the public-corpus experiment on the tiny model."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
KORQUAD = REPO.parent / "shared" / "data" / "corpora" / "korquad" / "KorQuAD_v1.0_dev.json"


@pytest.mark.slow
def test_quick_experiment_runs_every_stage_and_writes_the_comparison(tmp_path, benchmarks_dir):
    if not KORQUAD.is_file() and not os.environ.get("KOSITP_CORPORA"):
        pytest.skip(f"the public corpus is not at {KORQUAD} (set KOSITP_CORPORA)")
    env = os.environ | {"OUT": str(tmp_path / "runs"), "KOSITP": str(REPO / ".venv" / "bin" / "kositp"),
                        "KOSITP_BENCHMARKS": str(benchmarks_dir), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([str(REPO / "scripts" / "experiment_public.sh"), "--quick"], env=env, capture_output=True,
                          text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    docs = tmp_path / "runs" / "compare"  # --quick never writes into docs/
    comparison = json.loads((docs / "comparison.json").read_text(encoding="utf-8"))
    assert [r["name"] for r in comparison["runs"]] == ["base", "sft", "dpo"]
    assert [p["suite"] for p in comparison["figure"]["panels"]] == ["tasks", "seed4", "kobest"]
    assert [(c["run"], c["versus"]) for c in comparison["paired_bootstrap"]["comparisons"]] == [
        ("sft", "base"), ("dpo", "base"), ("dpo", "sft")]
    stages = (docs / "stages.md").read_text(encoding="utf-8")
    for name in ("data", "sft", "pairs", "dpo", "eval/base", "eval/sft", "eval/dpo"):
        row = next(line for line in stages.splitlines() if line.startswith(f"| {name} | "))
        assert row.split("|")[2].strip().isdigit(), row  # its wall time in seconds
    sft = json.loads((tmp_path / "runs" / "sft" / "run.json").read_text(encoding="utf-8"))
    assert sft["time_budget"]["steps_planned"] == sft["final_step"] == 3

    again = subprocess.run([str(REPO / "scripts" / "experiment_public.sh"), "--quick"], env=env,
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and again.stdout.count(": reused (") == 7  # a continued run redoes nothing
    first_started = next(line for line in stages.splitlines() if line.startswith("- first started: "))
    stages_again = (docs / "stages.md").read_text(encoding="utf-8")
    assert first_started in stages_again.splitlines()  # a continued run keeps when the experiment began
    assert "- this invocation: " in stages_again
