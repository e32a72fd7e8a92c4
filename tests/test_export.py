"""`kositp export` on runs built with PEFT directly on the tiny model (the training stage's layout)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml


def make_run(tiny_dir: Path, run: Path, base_model: str = "tiny", data_dir: Path | None = None) -> Path:
    """A LoRA run like `kositp train sft` writes: run.json, adapter/ (+ tokenizer, kositp_chat.json), config.yaml.

    The adapter's B matrices are random (init_lora_weights=False), so merging really changes the weights.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kositp.chat import CHATML, save_chat_format

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_dir)
    tok = AutoTokenizer.from_pretrained(tiny_dir)
    model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "down_proj"],
                                            init_lora_weights=False, task_type="CAUSAL_LM"))
    adapter = run / "adapter"
    model.save_pretrained(adapter)
    tok.save_pretrained(adapter)
    save_chat_format(tok, CHATML, adapter)
    (run / "run.json").write_text(json.dumps({
        "kind": "sft", "method": "lora", "base_model": base_model, "base_model_path": str(tiny_dir),
        "adapter": "adapter", "model": None, "chat_format": "chatml", "final_step": 3, "parent_run": None}))
    config = {"model": base_model, "method": "lora", "lr": 2e-4}
    if data_dir is not None:
        config["data"] = str(data_dir)
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    (run / "metrics.jsonl").write_text('{"step": 1, "loss": 3.2}\n')
    return run


@pytest.fixture(scope="module")
def run_dir(tiny_model_dir, tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    (data / "card.json").write_text(json.dumps({
        "counts": {"instructions": 120, "preferences": 0},
        "splits": {"train": 100, "validation": 10, "test": 10},
        "per_task": {"extractive_qa": {"train": 60, "validation": 5, "test": 5},
                     "summarization": {"train": 40, "validation": 5, "test": 5}}}))
    run = make_run(tiny_model_dir, tmp_path_factory.mktemp("run"), data_dir=data)
    report = run / "eval-tasks"
    report.mkdir()
    (report / "report.json").write_text(json.dumps({"headline": {"tasks/mean_primary": 0.123}}))
    return run


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory):
    from kositp.export import ExportConfig, export

    out = tmp_path_factory.mktemp("exports") / "tiny-sft"
    record = export(ExportConfig(run=run_dir, out=out, max_shard_size="200KB"))
    return out, record


def test_export_writes_sharded_safetensors_tokenizer_template_and_card(exported):
    out, record = exported
    shards = sorted(out.glob("model-*.safetensors"))
    assert len(shards) > 1 and (out / "model.safetensors.index.json").is_file()
    assert not list(out.glob("adapter_*")), "the export must be a plain model, not an adapter"
    tok_cfg = json.loads((out / "tokenizer_config.json").read_text())
    template = tok_cfg.get("chat_template") or (out / "chat_template.jinja").read_text()
    assert "<|im_start|>" in template
    chat = json.loads((out / "kositp_chat.json").read_text())
    assert chat["name"] == "chatml" and chat["end_of_turn_ids"] == record["end_of_turn_ids"]
    card = (out / "README.md").read_text()
    assert "tasks/mean_primary" in card and "0.123" in card  # eval table
    assert "extractive_qa" in card and "70" in card  # data card summary
    assert "lora" in card and "chatml" in card


def test_generation_config_lists_every_end_of_turn_id(exported, tiny_model_dir):
    from transformers import AutoTokenizer

    out, record = exported
    gen = json.loads((out / "generation_config.json").read_text())
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    expected = [tok.convert_tokens_to_ids("<|im_end|>"), tok.eos_token_id]
    assert gen["eos_token_id"] == expected == record["end_of_turn_ids"]


def test_merged_weights_match_base_plus_adapter(exported, run_dir, tiny_model_dir):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out, record = exported
    assert record["logits_check"]["passed"] and record["logits_check"]["max_abs_diff"] < 1e-3
    # Independent of the export's own check: the adapter really changes the logits, and the merge keeps them.
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    x = torch.tensor([[5, 17, 300, 42, 7]])
    plain = base(input_ids=x).logits
    with_adapter = PeftModel.from_pretrained(base, run_dir / "adapter")(input_ids=x).logits
    merged = AutoModelForCausalLM.from_pretrained(out)(input_ids=x).logits
    assert (plain - with_adapter).abs().max() > 1e-2
    torch.testing.assert_close(merged, with_adapter, atol=1e-4, rtol=1e-4)


def test_served_export_uses_its_template_and_stops_at_end_of_turn(exported):
    from kositp.serve.backends.transformers import load_for_serving

    out, record = exported
    _, tok, eot = load_for_serving(str(out), "float32")
    assert eot == record["end_of_turn_ids"]
    assert tok.apply_chat_template([{"role": "user", "content": "안녕"}], tokenize=False,
                                   add_generation_prompt=True).endswith("<|im_start|>assistant\n")


def test_bf16_export_from_a_recipe_is_checked_with_a_dtype_tolerance(run_dir, tmp_path):
    """`dtype: bf16` in the export recipe holds when the command line gives no --dtype."""
    import torch
    from transformers import AutoModelForCausalLM

    proc = _cli("--config", "export/bf16", "--run", str(run_dir), "--out", str(tmp_path / "bf16"))
    assert proc.returncode == 0, proc.stderr
    record = json.loads((tmp_path / "bf16" / "kositp_export.json").read_text())
    assert record["dtype"] == "bf16" and record["logits_check"]["passed"]
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "bf16", dtype="auto")
    assert model.dtype == torch.bfloat16


def test_the_base_model_comes_from_one_rule(run_dir, tmp_path):
    """The directory training resolved when it is still here (the exact weights), else the recipe's name."""
    from kositp.train.record import read_run

    record = read_run(run_dir)
    assert record.base_model_source() == record.base_model_path
    moved = record.model_copy(update={"base_model_path": str(tmp_path / "elsewhere")})
    assert moved.base_model_source() == "tiny"


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kositp.cli", "export", *args], capture_output=True, text=True,
                          timeout=300)


def test_cli_exports_and_prints_the_logits_check(run_dir, tmp_path):
    proc = _cli("--run", str(run_dir), "--out", str(tmp_path / "m"))
    assert proc.returncode == 0, proc.stderr
    assert "logits check" in proc.stderr and "PASSED" in proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["logits_check_passed"] is True


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing", "no run.json"),
        ("bad_json", "not valid UTF-8 JSON"),
        ("no_adapter", "does not exist"),
        ("both_dirs", "exactly one of 'adapter' and 'model'"),
        ("no_kind", "kind: Field required"),
    ],
)
def test_cli_bad_runs_fail_with_one_line(tmp_path, setup, message):
    run = tmp_path / "run"
    run.mkdir()
    if setup == "bad_json":
        (run / "run.json").write_text("{not json")
    elif setup in ("no_adapter", "both_dirs", "no_kind"):
        record = {"kind": "sft", "method": "sft", "base_model": "tiny", "adapter": "adapter", "model": None,
                  "chat_format": "chatml", "final_step": 1}
        if setup == "both_dirs":
            record["model"] = "model"
        if setup == "no_kind":
            del record["kind"]
        (run / "run.json").write_text(json.dumps(record))
    proc = _cli("--run", str(run), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_cli_refuses_to_overwrite_and_rejects_bad_dtype(run_dir, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    proc = _cli("--run", str(run_dir), "--out", str(out))
    assert proc.returncode == 2 and "already exists" in proc.stderr
    assert (out / "keep.txt").exists()
    proc = _cli("--run", str(run_dir), "--out", str(tmp_path / "o"), "--dtype", "int3")
    assert proc.returncode == 2 and "dtype" in proc.stderr and "Traceback" not in proc.stderr


def test_chat_format_record_round_trips_and_a_corrupt_one_is_one_error(run_dir, tmp_path):
    from transformers import AutoTokenizer

    from kositp.chat import CHAT_FORMAT_FILE, CHATML, ChatFormatRecord, load_chat_format
    from kositp.errors import KositpError

    tokenizer = AutoTokenizer.from_pretrained(run_dir / "adapter")
    assert load_chat_format(run_dir / "adapter", tokenizer) == CHATML
    record = ChatFormatRecord.model_validate_json((run_dir / "adapter" / CHAT_FORMAT_FILE).read_text())
    assert record.end_of_turn_ids and record.chat_format() == CHATML
    (tmp_path / CHAT_FORMAT_FILE).write_text('{"name": "chatml"}')
    with pytest.raises(KositpError, match="not a valid chat format record: template: Field required"):
        load_chat_format(tmp_path, tokenizer)
    (tmp_path / CHAT_FORMAT_FILE).write_text("{broken")
    with pytest.raises(KositpError, match="not a valid chat format record"):
        load_chat_format(tmp_path, tokenizer)
