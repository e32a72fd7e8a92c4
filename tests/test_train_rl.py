"""GRPO on the tiny model with TRL's real GRPOTrainer: finite logged rewards and loss, adapter usable by
eval and export, resume, continuing an SFT adapter, and the CPU LM head's log-probabilities."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# 15 extractive yes/no prompts (verifiable) beside 17 title prompts (open-ended, left out by default)
DATA = REPO / "tests" / "fixtures" / "train" / "sft"


def _cfg(out: Path, trainer: dict | None = None, **over):
    from kositp.config import load_config
    from kositp.train.rl import RLConfig

    cfg = load_config(RLConfig, "rl/tiny-grpo")
    for key, value in ({"data": str(DATA), "out": str(out), "progress": False} | over).items():
        setattr(cfg, key, value)
    for key, value in (trainer or {}).items():
        setattr(cfg.trainer, key, value)
    return cfg


def _train_rows(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["split"] == "train" and "loss" in r]


@pytest.fixture(scope="module")
def grpo_run(tmp_path_factory, tiny_model_dir) -> Path:
    from kositp.train.rl import train_rl

    return train_rl(_cfg(tmp_path_factory.mktemp("rl") / "run"))


def test_grpo_logs_each_reward_and_a_finite_loss_every_step(grpo_run):
    rows = _train_rows(grpo_run)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    for row in rows:
        for key in ("loss", "reward", "rewards/task/mean", "rewards/format/mean", "rewards/korean/mean"):
            assert math.isfinite(row[key]), (key, row)
        assert "rewards/length/mean" not in row  # weight 0: not computed
        assert 0.0 <= row["rewards/korean/mean"] <= 1.0
        # the logged total is the weighted sum of the separately logged means
        expected = row["rewards/task/mean"] + 0.5 * row["rewards/format/mean"] + 0.5 * row["rewards/korean/mean"]
        assert row["reward"] == pytest.approx(expected, abs=1e-5)
    record = json.loads((grpo_run / "run.json").read_text())
    assert record["kind"] == "rl" and record["method"] == "grpo" and record["final_step"] == 4
    assert record["tasks"] == ["extractive_qa_yes_no"]  # title_generation is open-ended: left out
    summary = json.loads((grpo_run / "summary.json").read_text())
    assert summary["prompts_per_task"] == {"extractive_qa_yes_no": 15}
    assert summary["skipped_records"] == {"task not used": 17}
    assert (grpo_run / "loss.png").stat().st_size > 1000


def test_grpo_adapter_loads_for_eval_and_export(grpo_run, tmp_path):
    from kositp.eval.run import EvalConfig, evaluate
    from kositp.export.config import ExportConfig
    from kositp.export.run import export

    report = evaluate(EvalConfig(model=str(grpo_run), data=REPO / "tests" / "fixtures" / "eval", limit=1,
                                 max_new_tokens=8, out=tmp_path / "eval"), show_progress=False)
    assert report["model"]["run"]["kind"] == "rl"
    assert math.isfinite(report["headline"]["tasks/mean_primary"])
    export(ExportConfig(run=str(grpo_run), out=str(tmp_path / "export")))
    assert (tmp_path / "export" / "config.json").is_file()
    card = (tmp_path / "export" / "README.md").read_text(encoding="utf-8")
    assert "rl / grpo" in card and "RL prompts came from the tasks extractive_qa_yes_no" in card


def test_grpo_resumes_from_its_last_checkpoint(tmp_path, tiny_model_dir):
    from kositp.errors import KositpError
    from kositp.train.rl import train_rl

    out = tmp_path / "run"
    train_rl(_cfg(out, trainer={"max_steps": 2, "save_steps": 2}))
    assert (out / "checkpoints" / "checkpoint-2" / "trainer_state.json").is_file()
    with pytest.raises(KositpError, match="not empty"):
        train_rl(_cfg(out))
    run = train_rl(_cfg(out, resume=True))
    assert json.loads((run / "run.json").read_text())["final_step"] == 4
    assert json.loads((run / "summary.json").read_text())["resumed_from"].endswith("checkpoint-2")
    assert [r["step"] for r in _train_rows(run)] == [1, 2, 3, 4]  # steps 1-2 kept, 3-4 new, none twice


def test_grpo_continues_an_sft_adapter_with_a_frozen_reference(tmp_path, tiny_model_dir):
    from safetensors.torch import load_file

    from kositp.config import load_config
    from kositp.train.rl import train_rl
    from kositp.train.sft import SFTConfig, train_sft

    sft = load_config(SFTConfig, "sft/tiny")
    sft.data, sft.out, sft.progress = str(DATA), str(tmp_path / "sft"), False
    sft.trainer.max_steps = 2
    sft_run = train_sft(sft)
    run = train_rl(_cfg(tmp_path / "rl", model=None, sft_run=str(sft_run), beta=0.1,
                        trainer={"max_steps": 2, "save_steps": 2}))
    record = json.loads((run / "run.json").read_text())
    assert record["parent_run"] == str(sft_run) and record["base_model"] == "tiny"
    assert not [p for p in (run / "adapter").iterdir() if p.is_dir()]  # the frozen "ref" copy is not saved
    assert all(math.isfinite(r["kl"]) for r in _train_rows(run))  # beta > 0: the KL to the reference is logged
    before = load_file(sft_run / "adapter" / "adapter_model.safetensors")
    after = load_file(run / "adapter" / "adapter_model.safetensors")
    assert before.keys() == after.keys()
    assert any(not (before[k] == after[k]).all() for k in before)


def test_grpo_continues_a_qlora_sft_run_as_dpo_does(tmp_path, tiny_model_dir, capsys):
    """The SFT run's record says it trained QLoRA: GRPO reloads that base as the preference stage does
    (4-bit on a GPU; here, without one, in the config's dtype with a note)."""
    from kositp.config import load_config
    from kositp.train.rl import build_rl_trainer
    from kositp.train.sft import SFTConfig, train_sft

    sft = load_config(SFTConfig, "sft/tiny")
    sft.data, sft.out, sft.progress = str(DATA), str(tmp_path / "sft"), False
    sft.trainer.max_steps = 1
    sft_run = train_sft(sft)
    record = json.loads((sft_run / "run.json").read_text())
    (sft_run / "run.json").write_text(json.dumps(record | {"adapter_type": "qlora"}))
    capsys.readouterr()
    build_rl_trainer(_cfg(tmp_path / "rl", model=None, sft_run=str(sft_run), trainer={"max_steps": 1}), tmp_path / "rl")
    assert "is a QLoRA run; without a CUDA GPU its base loads in" in capsys.readouterr().err


def test_cpu_lm_head_gives_grpo_the_models_own_log_probabilities(tmp_path, tiny_model_dir, monkeypatch):
    """GRPO scores completions through TRL's fused LM-head slot at the sampling temperature; kositp's CPU
    kernels there must give exactly log_softmax(logits / T) of the model's own forward."""
    import torch
    import trl.trainer.utils as trl_utils

    from kositp.train.rl import build_rl_trainer
    from kositp.train.speedups import lm_head_kernel

    trainer, *_ = build_rl_trainer(_cfg(tmp_path / "run", temperature=0.7), tmp_path / "run")
    # sampling keeps its KV cache although the Trainer turns model.config.use_cache off for training
    assert trainer.model.config.use_cache is False and trainer.generation_config.use_cache is True
    model = trainer.model
    model.eval()
    torch.manual_seed(0)
    ids = torch.randint(5, 200, (3, 12))
    mask = torch.ones_like(ids)
    mask[0, :4] = 0  # left padding, as GRPO batches prompts
    keep = 6
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits[:, -keep - 1:-1] / 0.7
        expected = torch.log_softmax(logits.float(), -1).gather(-1, ids[:, -keep:, None]).squeeze(-1)
    monkeypatch.setattr(trl_utils, "_ChunkedLogProbFunction", None)  # a CPU without Triton
    for kind in ("fast", "plain"):
        with lm_head_kernel(kind), torch.no_grad():
            logps, _, _ = trainer._get_per_token_logps_and_entropies(model, ids, mask, keep)
        torch.testing.assert_close(logps, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("args, expect", [
    (["--method", "ppo"], "unknown RL method 'ppo'"),
    (["tasks=[summarization_x]"], "unknown task(s) summarization_x"),
    (["rewards={task: 0, format: 0, korean: 0}"], "every reward weight is 0"),
    (["rewards={fluency: 1}"], "unknown reward(s) fluency"),
    (["prompts_per_step=3", "num_generations=2", "trainer.per_device_train_batch_size=4"], "must divide"),
    (["tasks=[summarization]"], "no training records of the RL tasks"),
])
def test_rl_cli_errors_are_one_line(tmp_path, tiny_model_dir, args, expect, capsys, monkeypatch):
    import sys

    from kositp.cli import main

    argv = ["train", "rl", "--config", "rl/tiny-grpo", "--data", str(DATA), "--out", str(tmp_path / "run"), *args]
    monkeypatch.setattr(sys, "argv", ["kositp", *argv])
    with pytest.raises(SystemExit) as exited:
        main()
    err = capsys.readouterr().err.strip().splitlines()
    assert exited.value.code == 2 and len(err) == 1 and expect in err[0], err


def test_rl_rows_keep_the_gold_answer_out_of_the_prompt_and_need_a_task():
    from kositp.errors import KositpError
    from kositp.train.rl import rl_rows

    record = {"task": "extractive_qa_yes_no", "messages": [
        {"role": "system", "content": "예 또는 아니요로 답하세요."}, {"role": "user", "content": "서울은 수도인가요?"},
        {"role": "assistant", "content": "예"}]}
    rows, skipped = rl_rows([record, record | {"task": "summarization"}], ["extractive_qa_yes_no"])
    assert rows == [{"prompt": record["messages"][:2], "task": "extractive_qa_yes_no", "gold": "예"}]
    assert skipped == {"task not used": 1}
    with pytest.raises(KositpError, match="train.jsonl:3: missing 'task'"):
        rl_rows([{"messages": record["messages"], "_where": "train.jsonl:3"}], ["extractive_qa_yes_no"])
