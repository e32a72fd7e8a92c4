"""`time_budget_minutes`: training stops cleanly at the budget, saves its adapter and says so in run.json."""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SFT_DATA = REPO / "tests" / "fixtures" / "train" / "sft"


def _cfg(out: Path, **over):
    from kositp.config import load_config
    from kositp.train.sft import SFTConfig

    cfg = load_config(SFTConfig, "sft/tiny", [f"{k}={v}" for k, v in over.items()])
    cfg.data, cfg.out, cfg.progress = str(SFT_DATA), str(out), False
    return cfg


def test_a_zero_budget_stops_after_the_first_step_and_a_resume_finishes_the_plan(tmp_path, tiny_model_dir):
    import torch

    from kositp.train.record import read_run
    from kositp.train.sft import train_sft

    torch.set_num_threads(1)
    run = train_sft(_cfg(tmp_path / "run", time_budget_minutes=0, **{"trainer.max_steps": 6,
                                                                     "trainer.save_steps": 100}))
    record = json.loads((run / "run.json").read_text(encoding="utf-8"))
    assert record["final_step"] == 1
    budget = record["time_budget"]
    assert budget["minutes"] == 0 and budget["stopped_on_budget"] is True
    assert (budget["steps_done"], budget["steps_planned"]) == (1, 6)
    assert read_run(run).is_adapter and (run / "adapter" / "adapter_model.safetensors").is_file()
    assert (run / "checkpoints" / "checkpoint-1" / "trainer_state.json").is_file()  # saved at the stop
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    assert summary["time_budget"] == budget and summary["final_step"] == 1

    # the checkpoint written at the stop continues the planned schedule; a budget it stays under is recorded
    resumed = train_sft(_cfg(tmp_path / "run", resume=True, time_budget_minutes=600,
                             **{"trainer.max_steps": 6, "trainer.save_steps": 100}))
    record = json.loads((resumed / "run.json").read_text(encoding="utf-8"))
    assert record["final_step"] == 6
    assert record["time_budget"]["stopped_on_budget"] is False and record["time_budget"]["steps_done"] == 6
