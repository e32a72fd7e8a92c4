"""`scripts/experiment_public.sh --quick` and `scripts/sweep_public_pref.sh --quick`: every stage of the
public-corpus experiment and its preference sweep, on the tiny model."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
KORQUAD = REPO.parent / "shared" / "data" / "corpora" / "korquad" / "KorQuAD_v1.0_dev.json"


def run_script(name: str, env: dict, timeout: int, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(REPO / "scripts" / name), *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def quick_experiment(tmp_path_factory, benchmarks_dir) -> tuple[Path, dict]:
    """`experiment_public.sh --quick` run once: its OUT folder and the environment it ran in."""
    if not KORQUAD.is_file() and not os.environ.get("KOSITP_CORPORA"):
        pytest.skip(f"the public corpus is not at {KORQUAD} (set KOSITP_CORPORA)")
    runs = tmp_path_factory.mktemp("experiment") / "runs"
    env = os.environ | {"OUT": str(runs), "KOSITP": str(REPO / ".venv" / "bin" / "kositp"),
                        "KOSITP_BENCHMARKS": str(benchmarks_dir), "OMP_NUM_THREADS": "1"}
    done = run_script("experiment_public.sh", env, 1800, "--quick")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return runs, env


@pytest.mark.slow
@pytest.mark.xdist_group("quick_experiment")  # one worker runs the module fixture's experiment once
def test_quick_experiment_runs_every_stage_and_writes_the_comparison(quick_experiment):
    runs, env = quick_experiment
    docs = runs / "compare"  # --quick never writes into docs/
    comparison = json.loads((docs / "comparison.json").read_text(encoding="utf-8"))
    assert [r["name"] for r in comparison["runs"]] == ["base", "sft", "dpo"]
    assert [p["suite"] for p in comparison["figure"]["panels"]] == ["tasks", "seed4", "kobest"]
    assert [(c["run"], c["versus"]) for c in comparison["paired_bootstrap"]["comparisons"]] == [
        ("sft", "base"), ("dpo", "base"), ("dpo", "sft")]
    stages = (docs / "stages.md").read_text(encoding="utf-8")
    for name in ("data", "sft", "pairs", "dpo", "eval/base", "eval/sft", "eval/dpo"):
        row = next(line for line in stages.splitlines() if line.startswith(f"| {name} | "))
        assert row.split("|")[2].strip().isdigit(), row  # its wall time in seconds
    sft = json.loads((runs / "sft" / "run.json").read_text(encoding="utf-8"))
    assert sft["time_budget"]["steps_planned"] == sft["final_step"] == 3
    for run in ("base", "sft", "dpo"):  # both side-by-side processes' suites made it into the one report
        info = json.loads((runs / "eval" / run / "run_info.json").read_text(encoding="utf-8"))
        assert info["reused_suites"] == ["tasks", "seed4", "kobest"], (run, info["reused_suites"])

    again = run_script("experiment_public.sh", env, 600, "--quick")
    assert again.returncode == 0 and again.stdout.count(": reused (") == 7  # a continued run redoes nothing
    first_started = next(line for line in stages.splitlines() if line.startswith("- first started: "))
    stages_again = (docs / "stages.md").read_text(encoding="utf-8")
    assert first_started in stages_again.splitlines()  # a continued run keeps when the experiment began
    assert "- this invocation: " in stages_again


@pytest.mark.slow
def test_preference_sweep_needs_the_experiment_first(tmp_path):
    env = os.environ | {"OUT": str(tmp_path / "runs"), "KOSITP": str(REPO / ".venv" / "bin" / "kositp")}
    done = run_script("sweep_public_pref.sh", env, 60, "--quick")
    assert done.returncode == 2 and "run scripts/experiment_public.sh first" in done.stderr


@pytest.mark.slow
@pytest.mark.xdist_group("quick_experiment")
def test_quick_preference_sweep_trains_each_variant_and_compares_them_with_sft(quick_experiment):
    runs, env = quick_experiment
    done = run_script("sweep_public_pref.sh", env, 1800, "--quick")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    variants = ["lr1e-5", "epoch", "rpo0", "checkable", "checkable-rpo0"]
    comparison = json.loads((runs / "compare" / "sweep" / "comparison.json").read_text(encoding="utf-8"))
    assert [r["name"] for r in comparison["runs"]] == ["sft", *variants]
    validation = sum(1 for line in (runs / "data" / "validation.jsonl").open(encoding="utf-8") if line.strip())
    assert 0 < comparison["suite_sizes"]["tasks"]["sft"] <= min(validation, 2 * 22)  # LIMIT=2 per task
    # answerability again on every validation record, beyond LIMIT
    full = json.loads((runs / "compare" / "sweep" / "comparison-full.json").read_text(encoding="utf-8"))
    answerability = sum(1 for line in (runs / "data" / "validation.jsonl").open(encoding="utf-8")
                         if json.loads(line)["task"] == "answerability_classification")
    assert [r["name"] for r in full["runs"]] == ["sft", *variants]
    assert full["suite_sizes"]["tasks"]["sft"] == answerability > 2
    configs = {name: (runs / "sweep" / f"dpo-{name}" / "config.yaml").read_text(encoding="utf-8")
               for name in variants}
    assert "rpo_alpha: 0.0" in configs["rpo0"] and "rpo_alpha: 1.0" in configs["lr1e-5"]
    assert "rpo_alpha: 0.0" in configs["checkable-rpo0"] and "rpo_alpha: 1.0" in configs["checkable"]
    assert [name for name in variants if "pair_tasks: checkable" in configs[name]] == ["checkable", "checkable-rpo0"]
    assert all("learning_rate: 1.0e-05" in config for config in configs.values())
    for name in variants:  # --quick's step limit wins over the epoch variant's 150 steps
        assert json.loads((runs / "sweep" / f"dpo-{name}" / "run.json").read_text(encoding="utf-8"))["final_step"] == 2
    trained = {name: (runs / "sweep" / f"dpo-{name}" / "run.json").stat().st_mtime_ns for name in variants}
    again = run_script("sweep_public_pref.sh", env, 600, "--quick")
    assert again.returncode == 0 and again.stdout.count(": done (") == len(variants), again.stdout + again.stderr
    assert {name: (runs / "sweep" / f"dpo-{name}" / "run.json").stat().st_mtime_ns for name in variants} == trained
