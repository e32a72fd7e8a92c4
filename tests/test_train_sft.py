"""SFT on the tiny model with the real TRL SFTTrainer: masks, padding-free isolation, loss values, layout, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "train"
SFT_DATA = FIXTURES / "sft"
EXPECTED = FIXTURES / "expected_losses.json"


def _tiny_cfg(out: Path, trainer: dict | None = None, **over):
    from kositp.config import load_config
    from kositp.train.sft import SFTConfig

    cfg = load_config(SFTConfig, "sft/tiny")
    for key, value in ({"data": str(SFT_DATA), "out": str(out), "progress": False} | over).items():
        setattr(cfg, key, value)
    for key, value in (trainer or {}).items():
        setattr(cfg.trainer, key, value)
    return cfg


def _env() -> dict[str, str]:
    return os.environ | {"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_model_dir) -> Path:
    import torch

    from kositp.train.sft import train_sft

    torch.set_num_threads(1)
    return train_sft(_tiny_cfg(tmp_path_factory.mktemp("sft") / "run"))


def test_assistant_mask_is_exactly_the_answer_and_end_of_turn(tmp_path, tiny_model_dir):
    from kositp.train.sft import build_sft_trainer

    data = tmp_path / "one.jsonl"
    record = {"id": "x", "task": "extractive_qa_yes_no", "source": "t", "doc_id": "d", "messages": [
        {"role": "system", "content": "예 또는 아니요로 답하세요."},
        {"role": "user", "content": "한글은 세종대왕이 만들었나요?"},
        {"role": "assistant", "content": "예, 그렇습니다."},
    ]}
    data.write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
    cfg = _tiny_cfg(tmp_path / "run", data=str(data), trainer={"max_steps": 1})
    trainer, loaded, _ = build_sft_trainer(cfg, tmp_path / "run")
    tok = loaded.tokenizer
    assert tok.pad_token_id != tok.eos_token_id
    row = trainer.train_dataset[0]
    batch = trainer.data_collator([row])
    labels = batch["labels"][0].tolist()
    kept = [t for t in labels if t != -100]
    # Exactly the reply and its <|im_end|>: no prompt, no role header, no trailing newline.
    assert kept == tok("예, 그렇습니다.", add_special_tokens=False)["input_ids"] + [tok.convert_tokens_to_ids("<|im_end|>")]
    assert tok.decode(kept) == "예, 그렇습니다.<|im_end|>"
    # The labels are the inputs at those positions (the model shifts them itself).
    ids = batch["input_ids"][0].tolist()
    assert [i for i, t in zip(ids, labels, strict=True) if t != -100] == kept


def test_padding_free_batches_do_not_leak_across_samples(tmp_path, tiny_model_dir, caplog):
    """The flattened batch gives each sample the same log-probs as running it alone, so TRL's warning that
    padding-free needs Flash Attention is not shown for this attention implementation."""
    import torch

    from kositp.train.sft import PACKED_MASK_ATTENTION, build_sft_trainer

    cfg = _tiny_cfg(tmp_path / "run", trainer={"max_steps": 1})
    with caplog.at_level("WARNING"):
        trainer, _, _ = build_sft_trainer(cfg, tmp_path / "run")
    assert trainer.model.config._attn_implementation in PACKED_MASK_ATTENTION
    assert not [r for r in caplog.records if "Padding-free training is enabled" in r.getMessage()]
    model = trainer.model.eval()
    a, b = trainer.train_dataset[0], trainer.train_dataset[1]
    packed = trainer.data_collator([a, b])
    assert "attention_mask" not in packed and packed["input_ids"].shape[0] == 1
    with torch.no_grad():
        together = model(input_ids=packed["input_ids"], position_ids=packed["position_ids"]).logits[0]
        alone_b = model(input_ids=torch.tensor([b["input_ids"]])).logits[0]
    n_a = len(a["input_ids"])
    torch.testing.assert_close(together[n_a:n_a + len(b["input_ids"])], alone_b, atol=1e-4, rtol=1e-4)


def test_sft_loss_falls_and_matches_stored_values(tiny_run: Path):
    rows = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if r["split"] == "train" and "loss" in r]
    assert len(losses) == 16
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4 - 0.3
    expected = json.loads(EXPECTED.read_text())["sft_tiny"]
    assert losses == pytest.approx(expected["losses"], abs=expected["abs_tolerance"])
    assert all(r["tokens_seen"] > 0 and r["step_time_s"] > 0 and "lr" in r
               for r in rows if r["split"] == "train" and "loss" in r)
    assert any(r["split"] == "eval" and "eval_loss" in r for r in rows)


def test_sft_run_directory_layout(tiny_run: Path):
    import trl.trainer.utils as trl_utils

    from kositp.chat import CHAT_FORMAT_FILE
    from kositp.train.speedups import FAST_KERNEL, TRL_KERNEL

    record = json.loads((tiny_run / "run.json").read_text())
    trl_has_a_kernel = trl_utils._ChunkedLogProbFunction is not None  # Triton: TRL's own kernel runs
    assert record == {
        "kind": "sft", "method": "sft", "base_model": "tiny", "base_model_path": record["base_model_path"],
        "adapter": "adapter", "adapter_type": "lora", "model": None, "chat_format": "chatml", "final_step": 16, "parent_run": None, "tasks": None,
        "speedups": {"lm_head": TRL_KERNEL if trl_has_a_kernel else FAST_KERNEL}, "time_budget": None,
    }
    adapter = tiny_run / "adapter"
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", CHAT_FORMAT_FILE,
                 "generation_config.json"):
        assert (adapter / name).is_file(), name
    gen = json.loads((adapter / "generation_config.json").read_text())
    assert gen["eos_token_id"] == json.loads((adapter / CHAT_FORMAT_FILE).read_text())["end_of_turn_ids"]
    assert (tiny_run / "config.yaml").is_file() and (tiny_run / "loss.png").stat().st_size > 1000
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tiny_run / "tb"))
    events.Reload()
    losses = [e.value for e in events.Scalars("train/loss")]
    assert len(losses) == 16 and not (tiny_run / "checkpoints" / "runs").exists()
    assert sorted(p.name for p in (tiny_run / "checkpoints").glob("checkpoint-*")) == ["checkpoint-16", "checkpoint-8"]


def test_trained_adapter_changes_generations(tiny_run: Path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kositp.chat import render

    record = json.loads((tiny_run / "run.json").read_text())
    tok = AutoTokenizer.from_pretrained(tiny_run / "adapter")
    prompt = render(tok, [{"role": "user", "content": "다음 글의 제목을 지으세요.\n서울은 대한민국의 수도이다."}])
    ids = tok(prompt, return_tensors="pt", add_special_tokens=False)
    base = AutoModelForCausalLM.from_pretrained(record["base_model_path"])
    with torch.no_grad():
        before = base.generate(**ids, max_new_tokens=8, do_sample=False)
        tuned = PeftModel.from_pretrained(base, tiny_run / "adapter")
        after = tuned.generate(**ids, max_new_tokens=8, do_sample=False)
    assert before.tolist() != after.tolist()


def _cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kositp.cli", *args], capture_output=True, text=True,
                          env=_env(), timeout=300, **kw)


@pytest.mark.parametrize(
    "case",
    ["missing_data", "bad_json", "unknown_key", "no_assistant", "qlora_on_cpu", "not_utf8"],
)
def test_bad_input_is_one_clear_line(tmp_path, tiny_model_dir, case, monkeypatch, capsys):
    data = tmp_path / "data.jsonl"
    args = ["train", "sft", "--model", "tiny", "--data", str(data), "--out", str(tmp_path / "run")]
    expect = {"missing_data": "data not found", "bad_json": "data.jsonl:2: not valid JSON",
              "unknown_key": "did you mean 'trainer.learning_rate'", "no_assistant": "no assistant message",
              "qlora_on_cpu": "needs a CUDA GPU", "not_utf8": "not UTF-8"}[case]
    good = json.dumps({"messages": [{"role": "user", "content": "안녕"}, {"role": "assistant", "content": "네"}]},
                      ensure_ascii=False)
    if case == "bad_json":
        data.write_text(good + "\n{broken\n", encoding="utf-8")
    elif case == "unknown_key":
        data.write_text(good + "\n", encoding="utf-8")
        args.append("learning_rat=1e-3")
    elif case == "no_assistant":
        data.write_text(json.dumps({"messages": [{"role": "user", "content": "안녕"}]}) + "\n", encoding="utf-8")
    elif case == "qlora_on_cpu":
        data.write_text(good + "\n", encoding="utf-8")
        args.append("adapter_type=qlora")
    elif case == "not_utf8":
        data.write_bytes(good.encode("cp949") + b"\n")
    from kositp.cli import main

    monkeypatch.setattr(sys, "argv", ["kositp", *args])  # the real entry point, in-process (fast)
    with pytest.raises(SystemExit) as exited:
        main()
    stderr = capsys.readouterr().err
    assert exited.value.code == 2, stderr
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and expect in lines[0], stderr


@pytest.mark.slow
def test_sigkill_mid_training_then_resume_reaches_planned_step(tmp_path, tiny_model_dir):
    run = tmp_path / "run"
    args = ["train", "sft", "--config", "sft/tiny", "--data", str(SFT_DATA),
            "--out", str(run), "trainer.max_steps=60", "trainer.save_steps=5", "trainer.eval_steps=1000",
            "trainer.per_device_train_batch_size=2", "trainer.save_total_limit=2", "progress=false"]
    proc = subprocess.Popen([sys.executable, "-m", "kositp.cli", *args], env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while not (run / "checkpoints" / "checkpoint-5" / "trainer_state.json").is_file():
            assert proc.poll() is None, "the run ended before writing checkpoint-5"
            assert time.time() < deadline, "no checkpoint-5 within 240 s"
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (run / "run.json").exists()
    from kositp.train.common import latest_checkpoint

    killed_at = int(latest_checkpoint(run / "checkpoints").name.split("-")[1])
    assert 5 <= killed_at < 60

    refused = _cli(*args)  # same command without resume must not silently mix two runs
    assert refused.returncode == 2 and "resume=true" in refused.stderr

    resumed = _cli(*args, "resume=true")
    assert resumed.returncode == 0, resumed.stderr
    record = json.loads((run / "run.json").read_text())
    assert record["final_step"] == 60
    summary = json.loads((run / "summary.json").read_text())
    assert summary["resumed_from"].endswith(f"checkpoint-{killed_at}")
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()
             if '"loss"' in line and '"split": "train"' in line]
    assert steps == list(range(1, 61))  # each step logged once, no gap and no repeat across the kill


def test_full_fine_tuning_writes_a_model_directory(tmp_path, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from kositp.chat import CHAT_FORMAT_FILE
    from kositp.train.sft import train_sft

    run = train_sft(_tiny_cfg(tmp_path / "run", adapter_type="full",
                              trainer={"max_steps": 2, "save_steps": 2, "eval_steps": 100, "learning_rate": 1e-3}))
    record = json.loads((run / "run.json").read_text())
    assert record["model"] == "model" and record["adapter"] is None
    model_dir = run / "model"
    assert (model_dir / CHAT_FORMAT_FILE).is_file() and (model_dir / "tokenizer.json").is_file()
    tuned = AutoModelForCausalLM.from_pretrained(model_dir)
    base = AutoModelForCausalLM.from_pretrained(record["base_model_path"])
    changed = [n for n, p in tuned.state_dict().items() if not (p == base.state_dict()[n]).all()]
    assert changed  # every weight is trainable in full fine-tuning


@pytest.mark.slow
def test_gemma_mask_keeps_end_of_turn_and_drops_the_model_header(tmp_path, default_model_dir):
    """On gemma-3-270m (Gemma template, system folded into the first user turn) the loss covers the reply and
    <end_of_turn> only."""
    from kositp.train.sft import build_sft_trainer

    data = tmp_path / "one.jsonl"
    data.write_text(json.dumps({"messages": [
        {"role": "system", "content": "짧게 답하세요."},
        {"role": "user", "content": "대한민국의 수도는?"},
        {"role": "assistant", "content": "서울입니다."},
    ]}, ensure_ascii=False) + "\n", encoding="utf-8")
    cfg = _tiny_cfg(tmp_path / "run", model="default", chat_format="auto", data=str(data),
                    trainer={"max_steps": 1})
    trainer, loaded, _ = build_sft_trainer(cfg, tmp_path / "run")
    assert loaded.chat_format.name == "gemma"
    tok = loaded.tokenizer
    labels = trainer.data_collator([trainer.train_dataset[0]])["labels"][0].tolist()
    kept = [t for t in labels if t != -100]
    assert kept[-1] == tok.convert_tokens_to_ids("<end_of_turn>") == 106
    assert tok.decode(kept) == "서울입니다.<end_of_turn>"
    assert tok.pad_token_id not in (tok.eos_token_id, 106)
