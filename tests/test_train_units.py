"""Fast unit tests of the training stage's pieces: backend choice, the CPU log-prob kernel, data checks,
accelerate configs and rule-based preference negatives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kositp.errors import KositpError
from kositp.recipes import RECIPES_DIR

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("requested", "cuda", "has_unsloth", "expected"),
    [
        ("auto", True, True, "unsloth"),
        ("auto", True, False, "trl"),
        ("auto", False, True, "trl"),  # Unsloth's CPU fallback is not its real path
        ("auto", False, False, "trl"),
        ("trl", True, True, "trl"),
        ("unsloth", True, True, "unsloth"),
    ],
)
def test_backend_selection(requested, cuda, has_unsloth, expected):
    from kositp.train.modeling import select_backend

    assert select_backend(requested, cuda, has_unsloth) == expected


@pytest.mark.parametrize(("cuda", "has_unsloth", "imported"), [(True, True, ["unsloth"]), (False, True, []),
                                                                (True, False, [])])
def test_unsloth_is_imported_first_only_when_it_will_train(cuda, has_unsloth, imported, monkeypatch):
    from kositp.train import modeling

    seen = []
    monkeypatch.setattr(modeling, "cuda_available", lambda: cuda)
    monkeypatch.setattr(modeling, "unsloth_installed", lambda: has_unsloth)
    monkeypatch.setattr(modeling.importlib, "import_module", seen.append)
    modeling.import_unsloth_first("auto")
    assert seen == imported


@pytest.mark.parametrize(("cuda", "has_unsloth", "message"), [(False, True, "needs a CUDA GPU"),
                                                               (True, False, "not installed")])
def test_explicit_unsloth_without_its_requirements_is_a_clear_error(cuda, has_unsloth, message):
    from kositp.train.modeling import select_backend

    with pytest.raises(KositpError, match=message):
        select_backend("unsloth", cuda, has_unsloth)


def test_qlora_needs_cuda():
    from kositp.train.modeling import check_adapter_type

    with pytest.raises(KositpError, match="CUDA"):
        check_adapter_type("qlora", cuda=False)
    check_adapter_type("lora", cuda=False)
    check_adapter_type("full", cuda=False)


@pytest.mark.parametrize("softcap", [None, 30.0])
def test_cpu_logprob_matches_log_softmax_and_its_gradient(softcap):
    import torch

    from kositp.train import cpu_logprob

    torch.manual_seed(0)
    hidden = torch.randn(700, 16, requires_grad=True)  # > one token chunk
    weight = torch.randn(50, 16, requires_grad=True)
    targets = torch.randint(0, 50, (700,))
    out = cpu_logprob.ChunkedLogProb.apply(hidden, weight, None, targets, 0.7, 4096, softcap, 0.5,
                                           ("entropy", "is_top1"))
    logits = (hidden @ weight.T) * 0.5
    if softcap:
        logits = softcap * torch.tanh(logits / softcap)
    logp = torch.log_softmax(logits / 0.7, -1)
    ref = logp.gather(-1, targets[:, None]).squeeze(-1)
    torch.testing.assert_close(out[0], ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[1], -(logp.exp() * logp).sum(-1), atol=1e-4, rtol=1e-4)
    assert out[2] is None and out[3] is None
    assert torch.equal(out[4], logp.argmax(-1) == targets)
    grads = torch.autograd.grad((out[0].sum() + out[1].sum()), (hidden, weight))
    ref_grads = torch.autograd.grad((ref.sum() - (logp.exp() * logp).sum()), (hidden, weight))
    for got, want in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_lm_head_kernel_is_installed_for_the_block_and_restored(monkeypatch):
    import trl.trainer.utils as trl_utils

    from kositp.train import speedups
    from kositp.train.cpu_logprob import ChunkedLogProb
    from kositp.train.fast_lm_head import FastLabelLogProb

    monkeypatch.setattr(trl_utils, "_ChunkedLogProbFunction", None)  # TRL without Triton
    with speedups.lm_head_kernel("fast") as kernel:
        assert kernel == speedups.FAST_KERNEL and trl_utils._ChunkedLogProbFunction is FastLabelLogProb
    assert trl_utils._ChunkedLogProbFunction is None
    with pytest.raises(RuntimeError, match="boom"), speedups.lm_head_kernel("plain"):
        assert trl_utils._ChunkedLogProbFunction is ChunkedLogProb
        raise RuntimeError("boom")
    assert trl_utils._ChunkedLogProbFunction is None  # restored on an error too

    triton_kernel = object()  # where TRL has its own kernel, nothing is replaced
    monkeypatch.setattr(trl_utils, "_ChunkedLogProbFunction", triton_kernel)
    with speedups.lm_head_kernel("fast") as kernel:
        assert kernel == speedups.TRL_KERNEL and trl_utils._ChunkedLogProbFunction is triton_kernel


def test_another_trl_release_without_triton_is_one_clear_error(monkeypatch):
    import trl
    import trl.trainer.utils as trl_utils

    from kositp.train import speedups

    monkeypatch.setattr(trl_utils, "_ChunkedLogProbFunction", None)
    monkeypatch.setattr(trl, "__version__", "1.16.0")
    with pytest.raises(KositpError, match=r"TRL 1.16.0 is outside .*>=1.15.0,<1.16.*install the pinned trl"), \
            speedups.lm_head_kernel("fast"):
        pass
    assert trl_utils._ChunkedLogProbFunction is None
    monkeypatch.setattr(trl, "__version__", "1.15.2")
    assert speedups.trl_version_problem() is None


def test_frozen_embedding_is_held_for_the_block_then_restored(tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM

    from kositp.train.speedups import frozen_embedding_held

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    model.get_input_embeddings().weight.requires_grad_(False)
    embedding = model.get_input_embeddings()
    before = embedding.weight.detach().clone()
    with frozen_embedding_held(model, "bfloat16") as what:
        assert what == "stored in bfloat16" and embedding.weight.dtype == torch.bfloat16
        assert "forward" in vars(embedding)
    assert embedding.weight.dtype == torch.float32 and "forward" not in vars(embedding)
    # loaded from safetensors, the original file-backed weights come back exactly
    assert torch.equal(embedding.weight, before)
    embedding.weight.requires_grad_(True)
    with frozen_embedding_held(model, "bfloat16") as what:
        assert what.startswith("kept in the model's dtype") and embedding.weight.dtype == torch.float32


def test_instruction_records_are_validated(tmp_path):
    from kositp.train.data import load_records, sft_rows

    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "robot", "content": "x"}]}) + "\n", encoding="utf-8")
    with pytest.raises(KositpError, match=r"train.jsonl:1: message 0 has role 'robot'"):
        sft_rows(load_records(str(path))["train"])
    (tmp_path / "d").mkdir()
    with pytest.raises(KositpError, match="has no train.jsonl"):
        load_records(str(tmp_path / "d"))


def test_preference_records_paired_and_unpaired(tmp_path):
    from kositp.train.data import load_records, preference_rows

    recs = load_records(str(REPO / "tests/fixtures/train/pref"))["train"][:2]
    paired = preference_rows(recs, unpaired=False)
    assert set(paired[0]) == {"prompt", "chosen", "rejected"}
    unpaired = preference_rows(recs, unpaired=True)
    assert [r["label"] for r in unpaired] == [True, False, True, False]
    bad = [{"_where": "x:1", "prompt": [{"role": "user", "content": "q"}], "chosen": "a"}]
    with pytest.raises(KositpError, match="x:1: missing 'rejected'"):
        preference_rows(bad, unpaired=False)


def test_pair_tasks_checkable_keeps_only_the_pairs_whose_answer_the_metric_checks():
    from kositp.config import load_config
    from kositp.train.pref import PrefConfig, _select_pairs

    records = [{"task": t, "prompt": "p"} for t in ("extractive_qa_short", "answerability_classification",
                                                      "title2contents", "title_generation", "text_simplification")]
    records.append({"prompt": "a pair without a task"})
    assert _select_pairs(records, "all") == (records, {})
    kept, left_out = _select_pairs(records, "checkable")
    assert [r["task"] for r in kept] == ["extractive_qa_short", "answerability_classification", "text_simplification"]
    assert left_out == {"open_ended": 3}
    assert load_config(PrefConfig, None, ["pair_tasks=checkable"]).pair_tasks == "checkable"
    with pytest.raises(KositpError, match="pair_tasks"):
        load_config(PrefConfig, None, ["pair_tasks=short"])


def _pair(i: int, task: str, chosen, rejected: str = "x") -> dict:
    return {"id": f"p{i}", "task": task, "prompt": [{"role": "user", "content": f"q{i}"}],
            "chosen": chosen, "rejected": [{"role": "assistant", "content": rejected}]}


def test_balance_labels_keeps_as_many_pairs_per_label_as_the_rarer_label_has():
    from kositp.config import load_config
    from kositp.train.pref import PrefConfig, _select_pairs

    yes_no = [_pair(i, "extractive_qa_yes_no", [{"role": "assistant", "content": "예"}], "아니요") for i in range(6)]
    yes_no += [_pair(6 + i, "extractive_qa_yes_no", "아니요", "예") for i in range(2)]  # the plain-string form
    explained = [_pair(10 + i, "extractive_qa_yes_no_explanation",
                       [{"role": "assistant", "content": "아니요\n근거: 글에 없다."}]) for i in range(3)]
    answerability = [_pair(20, "answerability_classification", [{"role": "assistant", "content": "답변할 수 없음"}]),
                     _pair(21, "answerability_classification", [{"role": "assistant", "content": "답변할 수 있음"}]),
                     _pair(22, "answerability_classification", [{"role": "assistant", "content": "장제스"}])]
    short = [_pair(30 + i, "extractive_qa_short", [{"role": "assistant", "content": "예"}]) for i in range(3)]
    records = yes_no + explained + answerability + short

    kept, left_out = _select_pairs(records, "all", balance_labels=True)
    assert left_out == {"label_balance": {"extractive_qa_yes_no": 4, "extractive_qa_yes_no_explanation": 3}}
    kept_yes_no = [r for r in kept if r["task"] == "extractive_qa_yes_no"]
    assert sum(r["rejected"][0]["content"] == "아니요" for r in kept_yes_no) == 2  # two chose 예
    assert [r for r in kept_yes_no if isinstance(r["chosen"], str)] == yes_no[6:]
    assert not any(r["task"] == "extractive_qa_yes_no_explanation" for r in kept)  # one label only: all out
    assert [r for r in kept if r["task"] != "extractive_qa_yes_no"] == answerability + short  # in their order
    again, _ = _select_pairs(list(reversed(records)), "all", balance_labels=True)
    assert sorted(r["id"] for r in again) == sorted(r["id"] for r in kept)  # by id, not by position
    assert _select_pairs(records, "all") == (records, {})
    assert load_config(PrefConfig, None, ["balance_labels=true"]).balance_labels


@pytest.mark.parametrize("name", ["ddp.yaml", "cpu-ddp.yaml", "fsdp.yaml", "zero2.yaml", "zero3.yaml"])
def test_accelerate_configs_load_with_accelerate(name):
    from kositp.train.accelerate_configs import validate

    config = validate(RECIPES_DIR / "accelerate" / name)
    assert config.num_processes == 2


def test_bad_accelerate_config_is_rejected(tmp_path):
    from kositp.train.accelerate_configs import validate

    bad = tmp_path / "bad.yaml"
    bad.write_text("distributed_type: DEEPSPEED\ncompute_environment: LOCAL_MACHINE\nnum_procs: 2\n")
    with pytest.raises(KositpError, match="unknown keys"):
        validate(bad)


@pytest.mark.parametrize(
    ("task", "gold", "prompt", "rule", "rejected"),
    [
        ("extractive_qa_yes_no", "예", "질문?", "flip_label", "아니요"),
        ("extractive_qa_yes_no_explanation", "아니요\n근거: 글에 없다.", "질문?", "flip_label", "예\n근거: 글에 없다."),
        ("answerability_classification", "답변할 수 없음", "질문?", "flip_label", "답변할 수 있음"),
        ("extractive_qa_objective", "서울", "질문?\n보기: 부산, 서울, 대구", "wrong_option", None),
    ],
)
def test_rule_negatives_follow_the_answer_conventions(task, gold, prompt, rule, rejected):
    from kositp.train.pairs import rule_negative

    name, text = rule_negative(task, gold, prompt, key="k")
    assert name == rule
    if rejected is not None:
        assert text == rejected
    else:
        assert text in ("부산", "대구")


def test_generic_negatives_are_never_the_gold(tmp_path):
    from kositp.train.pairs import rule_negative

    gold = "서울은 대한민국의 수도이며 가장 큰 도시이다."
    seen = {rule_negative("summarization", gold, "요약하세요.", key=str(i)) for i in range(30)}
    assert {name for name, _ in seen} == {"truncated", "english", "repetitive"}
    assert all(text.strip() and text != gold for _, text in seen)


def test_build_pairs_with_rules_only_writes_records_and_card(tmp_path):
    from kositp.train.data import load_records, preference_rows
    from kositp.train.pairs import build_pairs

    card = build_pairs(REPO / "tests/fixtures/train/sft", tmp_path / "pairs", progress=False)
    assert card["splits"]["train"]["pairs"] == 32 and card["splits"]["validation"]["pairs"] == 8
    rows = preference_rows(load_records(str(tmp_path / "pairs"))["train"], unpaired=False)
    assert all(r["chosen"] != r["rejected"] for r in rows)
    yes_no = [r for r in rows if r["chosen"][0]["content"] == "예"]
    assert yes_no and all(r["rejected"][0]["content"] == "아니요" for r in yes_no)
    assert (tmp_path / "pairs" / "card.md").read_text().startswith("# Preference pairs")


def test_pairs_take_an_equal_share_of_every_task_spread_over_its_records():
    from kositp.train.pairs import spread_over_tasks

    records = [{"task": t, "i": i} for t, n in (("a", 5), ("b", 1), ("c", 3)) for i in range(n)]
    picked = spread_over_tasks(records, 6)
    # shares dealt in turns: a 3, b 1 (all it has), c 2; each at evenly spaced positions
    assert [(r["task"], r["i"]) for r in picked] == [("a", 0), ("a", 2), ("a", 4), ("b", 0), ("c", 0), ("c", 2)]
    assert spread_over_tasks(records, None) == records and spread_over_tasks(records, 100) == records


def test_pairs_from_a_task_whose_records_run_by_label_get_both_labels():
    from kositp.train.pairs import spread_over_tasks

    # as the KorQuAD adapter writes them: runs of one label per passage
    labels = ["답변할 수 없음"] * 23 + ["답변할 수 있음"] * 77 + ["답변할 수 없음"] * 23 + ["답변할 수 있음"] * 12
    records = [{"task": "answerability_classification", "label": label} for label in labels]
    picked = spread_over_tasks(records + [{"task": "other"}] * 50, 20)
    chosen = [r["label"] for r in picked if r["task"] == "answerability_classification"]
    assert len(chosen) == 10 and 3 <= chosen.count("답변할 수 없음") <= 7


def test_build_pairs_uses_the_models_wrong_answers(tmp_path, tiny_model_dir):
    from kositp.train.pairs import build_pairs

    card = build_pairs(REPO / "tests/fixtures/train/sft", tmp_path / "pairs", model="tiny", splits=("train",),
                       max_records=6, max_new_tokens=6, progress=False)
    # The random tiny model is wrong on every item, so each rejected reply is its own answer.
    assert card["splits"]["train"]["rejected_from"] == {"model": 6}
    first = json.loads((tmp_path / "pairs" / "train.jsonl").read_text().splitlines()[0])
    assert first["rejected_from"] == "model" and first["rejected"][0]["content"] != first["chosen"][0]["content"]
    # 6 new tokens end no answer of the random model: every rejected reply is a cut one, and says so
    assert first["rejected_finished"] is False and card["splits"]["train"]["unfinished_rejected"] == 6
    assert "6 rejected replies are model answers cut at the token limit" in (tmp_path / "pairs" / "card.md").read_text()


def test_run_directory_guard(tmp_path):
    from kositp.train.common import prepare_run_dir

    out = tmp_path / "run"
    assert prepare_run_dir(out, resume=False, overwrite=False) is None
    (out / "metrics.jsonl").write_text('{"step": 1}\n')
    (out / "checkpoints" / "checkpoint-3").mkdir(parents=True)
    (out / "notes.txt").write_text("mine")
    with pytest.raises(KositpError, match="not empty"):
        prepare_run_dir(out, resume=False, overwrite=False)
    with pytest.raises(KositpError, match="no checkpoint-N"):  # checkpoint-3 lacks trainer_state.json
        prepare_run_dir(out, resume=True, overwrite=False)
    (out / "checkpoints" / "checkpoint-3" / "trainer_state.json").write_text("{}")
    assert prepare_run_dir(out, resume=True, overwrite=False).endswith("checkpoint-3")
    assert prepare_run_dir(out, resume=False, overwrite=True) is None
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]  # old metrics and checkpoints are gone


def test_trainer_extra_passes_through_but_never_repeats_a_setting(tmp_path):
    from trl import SFTConfig as TRLSFTConfig

    from kositp.train.common import trl_arguments
    from kositp.train.sft import SFTConfig

    def build(extra):
        cfg = SFTConfig(trainer={"max_steps": 3, "extra": extra})
        return trl_arguments(TRLSFTConfig, cfg, tmp_path, has_eval=False, stage_args={"packing": False})

    assert build({"neftune_noise_alpha": 5.0}).neftune_noise_alpha == 5.0
    with pytest.raises(KositpError, match="did you mean 'neftune_noise_alpha'"):
        build({"neftune_alpha": 5.0})
    with pytest.raises(KositpError, match="trainer.extra.max_steps repeats the field trainer.max_steps"):
        build({"max_steps": 9})
    with pytest.raises(KositpError, match="trainer.extra.packing: kositp sets packing itself"):
        build({"packing": True})
    with pytest.raises(KositpError, match="trainer.extra.seed: kositp sets seed itself"):
        build({"seed": 1})


@pytest.mark.parametrize(("method", "setting", "value"), [
    ("dpo", "simpo_gamma", 1.0), ("kto", "loss_type", "ipo"), ("simpo", "desirable_weight", 2.0),
])
def test_a_setting_of_another_preference_method_is_rejected(method, setting, value):
    from kositp.config import load_config
    from kositp.train.pref import PrefConfig

    with pytest.raises(KositpError, match=f"{setting} applies to method .* only, not {method}"):
        load_config(PrefConfig, None, [f"method={method}", f"{setting}={value}"])
    assert load_config(PrefConfig, None, [f"method={method}"]).method == method  # defaults are fine


def test_demo_recipes_resolve_to_the_pinned_trainer_arguments(tmp_path, monkeypatch):
    """The grouped recipes give TRL the values the demo was measured with (README, docs/training.md)."""
    from trl import DPOConfig
    from trl import SFTConfig as TRLSFTConfig

    from kositp.config import load_config
    from kositp.train import common
    from kositp.train.pref import PrefConfig, _method_args
    from kositp.train.sft import SFTConfig

    monkeypatch.setattr(common, "resolve_bf16", lambda value: value == "auto")  # as on a bf16-capable CPU
    sft_cfg = load_config(SFTConfig, "sft/demo")
    sft = common.trl_arguments(TRLSFTConfig, sft_cfg, tmp_path, True, {"max_length": None, "padding_free": True})
    pinned = {"max_steps": 32, "per_device_train_batch_size": 8, "gradient_accumulation_steps": 1,
              "learning_rate": 2e-4, "warmup_steps": 0.03, "num_train_epochs": 1, "weight_decay": 0.0,
              "max_grad_norm": 1.0, "optim": "adamw_torch", "bf16": True, "save_steps": 16, "eval_steps": 16,
              "eval_strategy": "steps", "logging_steps": 5, "seed": 42, "data_seed": 42, "save_total_limit": 3,
              "gradient_checkpointing": False, "padding_free": True, "lr_scheduler_type": "cosine"}
    assert {k: getattr(sft, k) for k in pinned} == pinned
    assert (sft_cfg.lora.r, sft_cfg.lora.alpha, sft_cfg.lora.dropout) == (8, 32, 0.0)
    assert (sft_cfg.cpu.fast_lm_head, sft_cfg.cpu.frozen_embedding_dtype, sft_cfg.max_length) == (True, "bfloat16", 512)

    dpo_cfg = load_config(PrefConfig, "pref/demo-dpo")
    dpo = common.trl_arguments(DPOConfig, dpo_cfg, tmp_path, True, _method_args(dpo_cfg))
    pinned = {"max_steps": 16, "per_device_train_batch_size": 1, "gradient_accumulation_steps": 2,
              "learning_rate": 5e-5, "lr_scheduler_type": "constant_with_warmup", "warmup_steps": 1, "bf16": True,
              "save_steps": 8, "logging_steps": 2, "seed": 42, "beta": 0.1, "loss_type": ["sigmoid", "sft"],
              "loss_weights": [1.0, 1.0], "max_length": 512, "eval_strategy": "no"}
    assert {k: getattr(dpo, k) for k in pinned} == pinned
    assert (dpo_cfg.lora.r, dpo_cfg.lora.alpha, dpo_cfg.lora.dropout) == (8, 32, 0.05)
