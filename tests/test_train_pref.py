"""Preference training on the tiny model with the real TRL trainers (DPO, ORPO, KTO, SimPO)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kositp.recipes import RECIPES_DIR

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "train"


def _cfg(out: Path, config: str | None = "tiny-dpo.yaml", trainer: dict | None = None, **over):
    from kositp.config import load_config
    from kositp.train.pref import PrefConfig

    cfg = load_config(PrefConfig, RECIPES_DIR / "pref" / config) if config else PrefConfig()
    for key, value in ({"data": str(FIXTURES / "pref"), "out": str(out), "progress": False} | over).items():
        setattr(cfg, key, value)
    for key, value in (trainer or {}).items():
        setattr(cfg.trainer, key, value)
    return cfg


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory, tiny_model_dir) -> Path:
    from kositp.config import load_config
    from kositp.train.sft import SFTConfig, train_sft

    cfg = load_config(SFTConfig, "sft/tiny")
    cfg.data = str(FIXTURES / "sft")
    cfg.out = str(tmp_path_factory.mktemp("sft") / "run")
    cfg.trainer.max_steps = 4
    cfg.progress = False
    return train_sft(cfg)


def test_dpo_raises_reward_accuracy_on_separable_pairs(tmp_path, tiny_model_dir):
    from kositp.train.pref import train_pref

    run = train_pref(_cfg(tmp_path / "dpo", model="tiny"))
    rows = [r for r in _metrics(run) if "rewards/accuracies" in r and r["split"] == "train"]
    assert len(rows) == 12
    assert rows[0]["rewards/margins"] == pytest.approx(0.0, abs=1e-6)  # step 1: policy == reference
    late = rows[-4:]
    assert sum(r["rewards/accuracies"] for r in late) / len(late) > 0.5
    assert sum(r["rewards/margins"] for r in late) / len(late) > 0.0
    record = json.loads((run / "run.json").read_text())
    assert record["kind"] == "pref" and record["method"] == "dpo" and record["parent_run"] is None
    assert record["adapter"] == "adapter" and record["final_step"] == 12
    assert (run / "loss.png").stat().st_size > 1000
    # The reference was the adapter-disabled base: no second model, one adapter saved.
    assert not [p for p in (run / "adapter").iterdir() if p.is_dir()]


@pytest.mark.parametrize("method", ["orpo", "kto", "simpo"])
def test_other_methods_run_a_few_steps(tmp_path, tiny_model_dir, method):
    from kositp.train.pref import train_pref

    run = train_pref(_cfg(tmp_path / method, model="tiny", method=method, trainer={"max_steps": 3, "save_steps": 3}))
    losses = [r["loss"] for r in _metrics(run) if "loss" in r and r["split"] == "train"]
    assert len(losses) == 3 and all(loss == loss for loss in losses)  # finite, logged every step
    assert json.loads((run / "run.json").read_text())["method"] == method
    assert (run / "adapter" / "adapter_model.safetensors").is_file()


def test_dpo_continues_the_sft_adapter_and_saves_one_adapter(tmp_path, sft_run):
    import trl.trainer.utils as trl_utils
    from safetensors.torch import load_file

    from kositp.train.pref import train_pref
    from kositp.train.speedups import FAST_KERNEL, PLAIN_KERNEL, TRL_KERNEL

    # SFT ran in this process (the sft_run fixture) and left TRL's kernel slot as TRL set it
    original = trl_utils._ChunkedLogProbFunction
    assert original is None or original.__module__.startswith("trl.")
    cfg = _cfg(tmp_path / "dpo", model=None, sft_run=str(sft_run), trainer={"max_steps": 3, "save_steps": 3})
    cfg.cpu.fast_lm_head = False
    run = train_pref(cfg)
    assert trl_utils._ChunkedLogProbFunction is original  # and so does DPO
    record = json.loads((run / "run.json").read_text())
    assert record["parent_run"] == str(sft_run) and record["base_model"] == "tiny"
    # what this run used is recorded, and it is what it asked for, whatever ran before it
    assert record["speedups"]["lm_head"] == (PLAIN_KERNEL if original is None else TRL_KERNEL)
    assert json.loads((sft_run / "run.json").read_text())["speedups"]["lm_head"] in (FAST_KERNEL, TRL_KERNEL)
    assert not [p for p in (run / "adapter").iterdir() if p.is_dir()]  # the frozen "ref" copy is not saved
    before = load_file(sft_run / "adapter" / "adapter_model.safetensors")
    after = load_file(run / "adapter" / "adapter_model.safetensors")
    assert before.keys() == after.keys()  # same single adapter, continued
    assert any(not (before[k] == after[k]).all() for k in before)
    config = json.loads((run / "adapter" / "adapter_config.json").read_text())
    assert config["r"] == json.loads((sft_run / "adapter" / "adapter_config.json").read_text())["r"]


def test_adapter_model_mismatch_is_refused(tmp_path, sft_run):
    from kositp.errors import KositpError
    from kositp.train.pref import train_pref

    with pytest.raises(KositpError, match="adapter/model mismatch"):
        train_pref(_cfg(tmp_path / "x", model="tiny:3", sft_run=str(sft_run)))
    assert not (tmp_path / "x" / "config.yaml").exists()


@pytest.mark.parametrize("bad", ["unknown_method", "missing_data", "not_a_run"])
def test_pref_cli_errors(tmp_path, tiny_model_dir, bad, monkeypatch, capsys):
    import sys

    from kositp.cli import main

    args = ["train", "pref", "--model", "tiny", "--out", str(tmp_path / "run")]
    if bad == "unknown_method":
        args += ["--method", "ppo", "--data", str(FIXTURES / "pref")]
        expect = "unknown preference method 'ppo'"
    elif bad == "missing_data":
        args += ["--method", "dpo", "--data", str(tmp_path / "nope.jsonl")]
        expect = "data not found"
    else:
        args += ["--method", "dpo", "--data", str(FIXTURES / "pref"), "--adapter", str(tmp_path)]
        expect = "not a kositp training run directory"
    monkeypatch.setattr(sys, "argv", ["kositp", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    err = capsys.readouterr().err.strip().splitlines()
    assert exited.value.code == 2 and len(err) == 1 and expect in err[0], err


def test_pairs_from_the_sft_runs_own_answers_then_dpo_on_them(tmp_path, sft_run):
    """The loop the issue describes: the SFT model answers, its wrong answers become rejected replies, DPO follows."""
    from kositp.train.pairs import build_pairs
    from kositp.train.pref import train_pref

    card = build_pairs(FIXTURES / "sft", tmp_path / "pairs", model=str(sft_run), splits=("train",),
                       max_records=8, max_new_tokens=6, progress=False)
    info = card["splits"]["train"]
    assert info["pairs"] == 8 and sum(info["rejected_from"].values()) == 8
    assert info["rejected_from"].get("model", 0) > 0
    run = train_pref(_cfg(tmp_path / "dpo", model=None, sft_run=str(sft_run), data=str(tmp_path / "pairs"),
                          trainer={"max_steps": 2, "save_steps": 2}))
    assert json.loads((run / "run.json").read_text())["final_step"] == 2


def test_pref_reads_the_preference_file_of_a_data_build_directory(tmp_path, tiny_model_dir):
    from kositp.train.pref import train_pref

    build = tmp_path / "build"
    build.mkdir()
    (build / "train.jsonl").write_text((FIXTURES / "sft" / "train.jsonl").read_text(encoding="utf-8"),
                                       encoding="utf-8")
    (build / "preference.jsonl").write_text((FIXTURES / "pref" / "train.jsonl").read_text(encoding="utf-8"),
                                            encoding="utf-8")
    run = train_pref(_cfg(tmp_path / "dpo", model="tiny", data=str(build), trainer={"max_steps": 1, "save_steps": 1}))
    assert json.loads((run / "summary.json").read_text())["train_records"] == 24


def test_a_qlora_sft_run_is_continued_on_a_4bit_base_only_where_cuda_allows(tmp_path, sft_run, capsys):
    """The SFT run's record says how it trained; continuing a QLoRA run loads its base in 4-bit on a
    GPU, while on a CPU it loads in the preference config's dtype and says so (an explicit
    `adapter_type=qlora` there is refused, as for a fresh QLoRA run)."""
    import shutil

    from kositp.errors import KositpError
    from kositp.train.pref import load_with_sft_adapter
    from kositp.train.record import read_run

    assert read_run(sft_run).adapter_type == "lora"
    assert json.loads((sft_run / "summary.json").read_text())["peak_gpu_memory_mib"] is None  # no GPU here
    qlora_run = tmp_path / "qlora-sft"
    shutil.copytree(sft_run, qlora_run)
    record = json.loads((qlora_run / "run.json").read_text())
    (qlora_run / "run.json").write_text(json.dumps(record | {"adapter_type": "qlora"}))
    assert read_run(qlora_run).adapter_type == "qlora"

    cfg = _cfg(tmp_path / "dpo", model=None, sft_run=str(qlora_run))
    loaded = load_with_sft_adapter(cfg, "tiny", qlora_run / "adapter", read_run(qlora_run).adapter_type)
    assert "is a QLoRA run; without a CUDA GPU its base loads in float32" in capsys.readouterr().err
    assert not getattr(loaded.model, "is_loaded_in_4bit", False)
    assert {p.dtype for p in loaded.model.parameters()} == {__import__("torch").float32}

    cfg.adapter_type = "qlora"
    with pytest.raises(KositpError, match="needs a CUDA GPU"):
        load_with_sft_adapter(cfg, "tiny", qlora_run / "adapter", "lora")


def test_pairs_longer_than_max_length_are_counted_not_cut_or_lost(tmp_path, tiny_model_dir, capsys):
    """TRL cuts a pair past max_length inside its answers and drops one whose prompt alone fills it
    without a word; kositp leaves both out first and counts them, as SFT does."""
    from kositp.train.pref import build_pref_trainer

    pairs = [json.loads(line) for line in (FIXTURES / "pref" / "train.jsonl").read_text("utf-8").splitlines()]
    long_text = "서울은 대한민국의 수도이며 가장 큰 도시이다. " * 40
    long_prompt = dict(pairs[0], id="long-prompt", prompt=[{"role": "user", "content": long_text}])
    long_rejected = dict(pairs[1], id="long-rejected", rejected=[{"role": "assistant", "content": long_text}])
    data = tmp_path / "pairs"
    data.mkdir()
    (data / "train.jsonl").write_text("".join(json.dumps(p, ensure_ascii=False) + "\n"
                                              for p in [*pairs, long_prompt, long_rejected]), encoding="utf-8")
    trainer, _, stats, _, _ = build_pref_trainer(_cfg(tmp_path / "dpo", model="tiny", data=str(data)), tmp_path / "dpo")
    assert stats["dropped_too_long"] == {"train": 2, "validation": 0}
    assert stats["train_records"] == len(pairs) == len(trainer.train_dataset)  # TRL had nothing left to drop
    assert "max_length=256: leaving out 2 training" in capsys.readouterr().err
