"""`kositp demo --quick`: every stage runs for real on the tiny model, and a re-run reuses them all.

The tiny model is random, so its scores are noise; what a broken pipeline would change is checked
instead: SFT lowers its loss, DPO starts from its reference (loss log 2) and moves away from it, the
pairs contrast a gold answer with a different one, the export reproduces the DPO model's logits,
and every stage and task shows up in the reports.
"""

from __future__ import annotations

import json
import math

import pytest

from kositp.data.task_names import TASKS
from kositp.demo import DemoConfig, run_demo

STAGES = ["data", "sft", "pairs", "dpo", "eval/base", "eval/sft", "eval/dpo", "export"]


def _train_losses(run_dir) -> list[float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    return [r["loss"] for r in rows if r["split"] == "train" and "loss" in r]


@pytest.mark.slow
def test_quick_demo_runs_every_stage_then_reuses_them(tmp_path):
    from rich.console import Console

    cfg = DemoConfig(quick=True, out=tmp_path / "demo", serve=False, eval_limit=2)
    console = Console(record=True, width=120)
    first = run_demo(cfg, console)
    out = cfg.out
    assert [s["name"] for s in first["stages"]] == STAGES
    assert all(not s["reused"] and s["seconds"] > 0 for s in first["stages"])

    # SFT learned something: the last steps' loss is below the first steps' (fixed seed, no dropout)
    sft = _train_losses(out / "sft")
    assert len(sft) >= 8 and all(math.isfinite(x) for x in sft)
    assert sum(sft[-4:]) / 4 < sum(sft[:4]) / 4, sft

    # pairs: a gold answer against a different (model or rule-made) one, for every record read
    card = json.loads((out / "pairs" / "card.json").read_text(encoding="utf-8"))["splits"]["train"]
    assert card["pairs"] > 0 and card["pairs"] + card["skipped"] == card["records"]
    pairs = [json.loads(line) for line in (out / "pairs" / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(pairs) == card["pairs"] and all(p["chosen"] != p["rejected"] for p in pairs)

    # DPO starts from the SFT model as its own reference (loss log 2) and moves towards the chosen answers
    run = json.loads((out / "dpo" / "run.json").read_text(encoding="utf-8"))
    assert run["method"] == "dpo" and run["parent_run"]
    dpo = _train_losses(out / "dpo")
    assert dpo[0] == pytest.approx(math.log(2), abs=1e-4), dpo
    assert min(dpo[1:]) < math.log(2), dpo

    # the export answers like the DPO model, and stops on the training template's end-of-turn ids
    exported = json.loads((out / "export" / "kositp_export.json").read_text(encoding="utf-8"))
    assert exported["logits_check"]["passed"] and exported["merged_adapter"]
    generation = json.loads((out / "export" / "generation_config.json").read_text(encoding="utf-8"))
    assert generation["eos_token_id"] == exported["end_of_turn_ids"] != []

    # every evaluation scored every task; the primary scores are shares in [0, 1]
    for name in ("base", "sft", "dpo"):
        headline = json.loads((out / "eval" / name / "report.json").read_text(encoding="utf-8"))["headline"]
        scored = {key.split("/")[1] for key in headline if key.startswith("tasks/") and key.count("/") == 2}
        assert scored == set(TASKS), set(TASKS) ^ scored
        assert all(0.0 <= v <= 1.0 for v in headline.values()), headline
    assert set(first["scores"]) == {"base", "sft", "dpo"}
    assert all(0.0 <= v <= 1.0 for v in first["scores"].values()), first["scores"]
    assert first["sft_beats_base"] == (first["scores"]["sft"] > first["scores"]["base"])

    # the comparison table has a column per model and a row per task with a figure in each cell
    table = (out / "demo.md").read_text(encoding="utf-8")
    assert "| metric | examples | base | sft | dpo |" in table
    for task in TASKS:
        row = next(line for line in table.splitlines() if line.startswith(f"| tasks/{task}/"))
        assert len(row.strip("|").split("|")) == 5, row
    # the headline states the sample size and the paired SFT - base and DPO - SFT intervals
    assert f"n = {first['test_records']} test records" in table and "| sft − base | dpo − sft |" in table
    demo_json = json.loads((out / "demo.json").read_text(encoding="utf-8"))
    assert demo_json["scores"] == first["scores"] and [s["name"] for s in demo_json["stages"]] == STAGES

    second = run_demo(cfg, console)
    assert all(s["reused"] and s["seconds"] == 0 for s in second["stages"])
    assert second["scores"] == first["scores"]
