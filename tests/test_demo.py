"""`kositp demo --quick`: every stage runs for real on the tiny model, and a re-run reuses them all."""

from __future__ import annotations

import json

import pytest

from kositp.demo import DemoConfig, run_demo


@pytest.mark.slow
def test_quick_demo_runs_every_stage_then_reuses_them(tmp_path):
    from rich.console import Console

    cfg = DemoConfig(quick=True, out=tmp_path / "demo", serve=False, eval_limit=2)
    console = Console(record=True, width=120)
    first = run_demo(cfg, console)
    names = [s["name"] for s in first["stages"]]
    assert names == ["data", "sft", "pairs", "dpo", "eval/base", "eval/sft", "eval/dpo", "export"]
    assert not any(s["reused"] for s in first["stages"])
    out = cfg.out
    run = json.loads((out / "dpo" / "run.json").read_text(encoding="utf-8"))
    assert run["method"] == "dpo" and run["parent_run"]
    assert (out / "export" / "generation_config.json").is_file()
    assert set(first["scores"]) == {"base", "sft", "dpo"}
    assert all(isinstance(v, float) for v in first["scores"].values())
    table = (out / "demo.md").read_text(encoding="utf-8")
    assert "tasks/mean_primary" in table and "| metric |" in table

    second = run_demo(cfg, console)
    assert all(s["reused"] for s in second["stages"])
    assert second["scores"] == first["scores"]
