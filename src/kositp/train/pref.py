"""Preference alignment (`kositp train pref`): DPO, ORPO, KTO and SimPO with TRL + PEFT.

Reference model without a second copy of the weights:
* fresh LoRA on the base: TRL computes reference log-probs with the adapter disabled;
* continuing an SFT run (`sft_run=RUN`): the SFT adapter is loaded trainable, and TRL's DPO/KTO
  trainers add a frozen "ref" copy of it (a second small adapter, not a second model). Only the
  trained adapter is saved, so the result is still base + ONE adapter for export.
ORPO and SimPO are reference-free.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal, NamedTuple

from pydantic import Field, model_validator

from kositp.errors import KositpError
from kositp.train.common import TrainConfig, TrainerSettings, filter_by_length, make_trainer, trl_arguments
from kositp.train.record import ADAPTER_DIR, read_run

METHODS = ("dpo", "orpo", "kto", "simpo")
# Settings that only one method reads: set under another method they are an error, not ignored.
METHOD_ONLY = {"loss_type": "dpo", "rpo_alpha": "dpo", "simpo_gamma": "simpo", "desirable_weight": "kto", "undesirable_weight": "kto"}


class PrefTrainerSettings(TrainerSettings):
    """Trainer settings with preference-tuning defaults: a smaller learning rate and batch than SFT."""

    learning_rate: float = Field(5e-5, gt=0, lt=1, description="Peak learning rate (preference tuning wants a "
                                 "smaller one than SFT).")
    per_device_train_batch_size: int = Field(4, ge=1, le=4096, description="Preference pairs per micro-batch.")


class PrefConfig(TrainConfig):
    """Recipe for `kositp train pref`. Field names follow TRL's DPO/KTO/ORPO/CPO configs."""

    method: Literal["dpo", "orpo", "kto", "simpo"] = Field("dpo", description="Preference objective.")
    model: str | None = Field(None, description="Base model; with sft_run it may be omitted (taken from the run) "
                              "and, when given, must be the run's base model.")
    sft_run: str | None = Field(None, description="SFT run directory to continue (its adapter is trained further "
                                "and a frozen copy serves as the reference).")
    beta: float = Field(0.1, gt=0, description="DPO/KTO: KL strength; ORPO: odds-ratio weight (lambda); "
                        "SimPO: reward scale (2.0-2.5 in the paper).")
    loss_type: str = Field("sigmoid", description="DPO only: loss variant (sigmoid, ipo, hinge, robust, ...).")
    rpo_alpha: float | None = Field(None, ge=0, description="DPO only: weight of an SFT term (mean token NLL "
                                    "of the chosen answers) added to the DPO loss, as in RPO (Pang et al. 2024). "
                                    "It keeps the chosen answers' likelihood from falling with the rejected ones. "
                                    "TRL 1.x names it loss_type=[..., 'sft'] with loss_weights=[1, rpo_alpha].")
    simpo_gamma: float = Field(0.5, ge=0, description="SimPO only: target reward margin (gamma / beta ratio in "
                               "TRL's CPO).")
    desirable_weight: float = Field(1.0, gt=0, description="KTO only: weight of desirable (chosen) examples.")
    undesirable_weight: float = Field(1.0, gt=0, description="KTO only: weight of undesirable (rejected) examples.")
    max_length: int | None = Field(1024, ge=8, description="Longest prompt + answer in tokens, on both sides of a "
                                   "pair; longer pairs are left out (and counted in summary.json), not cut.")
    pair_tasks: Literal["all", "checkable"] = Field(
        "all", description="Which pairs to train on. checkable: only those of tasks whose answer the task metric "
        "checks (labels, options, short answers, keywords, simplification); the open-ended ones (titles, long "
        "texts) are left out, since there the gold is often several times longer than the model's reply and "
        "DPO learns length rather than correctness. Records without a task count as open-ended.")
    balance_labels: bool = Field(
        False, description="On each yes/no and answerability task, train on as many pairs choosing each label "
        "as the task's rarer label has (the pairs card's chosen_labels counts them). Every pair of a task whose "
        "pairs choose one label twice as often teaches that label as a prior; a task whose pairs all choose "
        "one label is left out. Which surplus pairs stay is fixed by a hash of their ids.")
    trainer: PrefTrainerSettings = Field(default_factory=PrefTrainerSettings,
                                         description="Optimisation, schedule, checkpoints and logging (TRL names).")

    @model_validator(mode="after")
    def _settings_fit_the_method(self) -> PrefConfig:
        for name, method in METHOD_ONLY.items():
            if name in self.model_fields_set and self.method != method:
                raise ValueError(f"{name} applies to method {method} only, not {self.method}")
        return self


class Parent(NamedTuple):
    """What a preference or RL run continues: its base model and, for an SFT adapter run, the adapter."""

    base_name: str
    base_source: str  # where to load the base from
    adapter_dir: Path | None  # the SFT run's adapter; None: train a fresh adapter on the base
    run: str | None  # the SFT run directory
    adapter_type: str | None = None  # how the SFT run trained its adapter (lora, qlora): a QLoRA base reloads in 4-bit


def resolve_parent(cfg: PrefConfig) -> Parent:
    """The base model and SFT adapter `cfg` continues, mismatches refused."""
    from kositp.models import resolve_model_path

    if cfg.sft_run is None:
        if not cfg.model:
            raise KositpError("no model: pass --model M or --adapter SFT_RUN")
        return Parent(cfg.model, cfg.model, None, None)
    run = Path(cfg.sft_run)
    record = read_run(run)
    if record.kind != "sft":
        raise KositpError(f"--adapter {run} is a {record.kind!r} run; it must be an SFT run")
    if not record.is_adapter:  # full fine-tune: its weights are the new base, LoRA goes on top
        model_dir = str(record.weights_dir(run))
        if cfg.model and cfg.model != model_dir:
            raise KositpError(f"--adapter {run} is a full fine-tune; do not pass a different --model ({cfg.model})")
        return Parent(model_dir, model_dir, None, str(run))
    if (cfg.model and cfg.model != record.base_model
            and resolve_model_path(cfg.model) != record.base_model_path):
        raise KositpError(f"adapter/model mismatch: SFT run {run} was trained on {record.base_model!r}, "
                          f"not {cfg.model!r}")
    return Parent(record.base_model, record.base_model_source(), record.weights_dir(run), str(run), record.adapter_type)


def load_with_sft_adapter(cfg: PrefConfig, base: str, adapter_dir: Path, sft_adapter_type: str | None = None):
    """The base with the SFT run's adapter, trainable. A QLoRA SFT run's base (or `adapter_type=qlora`)
    is loaded in 4-bit as SFT loaded it, so continuing it needs no more GPU memory than SFT did."""
    from peft import PeftModel
    from transformers import AutoTokenizer

    from kositp.chat import end_of_turn_ids, load_chat_format
    from kositp.models import load_model, resolve_model_path
    from kositp.train.modeling import LoadedModel, check_adapter_type, cuda_available, four_bit_load_kwargs

    four_bit = cfg.adapter_type == "qlora" or sft_adapter_type == "qlora" and cuda_available()
    if four_bit:
        print(f"loading the base in 4-bit (NF4) under {adapter_dir.parent}'s QLoRA adapter", file=sys.stderr)
    elif sft_adapter_type == "qlora":
        print(f"note: {adapter_dir.parent} is a QLoRA run; without a CUDA GPU its base loads in {cfg.dtype}",
              file=sys.stderr)
    check_adapter_type("qlora" if four_bit else cfg.adapter_type, cuda_available())
    tokenizer = AutoTokenizer.from_pretrained(str(adapter_dir))
    fmt = load_chat_format(adapter_dir, tokenizer)
    model = load_model(base, cfg.dtype, **(four_bit_load_kwargs() if four_bit else {}))
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))
    model.generation_config.eos_token_id = end_of_turn_ids(tokenizer, fmt)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.config.pad_token_id = tokenizer.pad_token_id
    model = PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=True)
    return LoadedModel(model, tokenizer, fmt, "trl", None, resolve_model_path(base))


def _trainer_classes(method: str):
    if method == "dpo":
        from trl import DPOConfig, DPOTrainer

        return DPOConfig, DPOTrainer
    if method == "kto":
        from trl import KTOConfig, KTOTrainer

        return KTOConfig, KTOTrainer
    if method == "orpo":
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

        return ORPOConfig, ORPOTrainer
    if method == "simpo":  # SimPO is CPO's reference-free loss with a length-normalised reward and a margin
        from trl.experimental.cpo import CPOConfig, CPOTrainer

        return CPOConfig, CPOTrainer
    raise KositpError(f"unknown preference method '{method}'; choose one of: {', '.join(METHODS)}")


def _method_args(cfg: PrefConfig) -> dict[str, Any]:
    args: dict[str, Any] = {"beta": cfg.beta, "max_length": cfg.max_length}
    if cfg.method == "dpo":
        args["loss_type"] = [cfg.loss_type]
        if cfg.rpo_alpha:
            args |= {"loss_type": [cfg.loss_type, "sft"], "loss_weights": [1.0, cfg.rpo_alpha]}
    elif cfg.method == "kto":
        args |= {"desirable_weight": cfg.desirable_weight, "undesirable_weight": cfg.undesirable_weight}
    elif cfg.method == "simpo":
        args |= {"loss_type": "simpo", "cpo_alpha": 0.0, "simpo_gamma": cfg.simpo_gamma}
    if cfg.method in ("orpo", "simpo"):
        args["remove_unused_columns"] = False  # their collator needs the prompt/chosen/rejected columns
    return args


def _preference_source(data: str) -> str:
    """A `kositp data build` directory keeps its pairs in preference.jsonl beside the instruction splits."""
    path = Path(data)
    if path.is_dir() and (path / "preference.jsonl").is_file():
        first = (path / "train.jsonl").read_text(encoding="utf-8").split("\n", 1)[0] \
            if (path / "train.jsonl").is_file() else ""
        if '"prompt"' not in first:
            return str(path / "preference.jsonl")
    return data


def _select_pairs(records: list[dict], pair_tasks: str, balance_labels: bool = False) -> tuple[list[dict], dict]:
    """(the records `pair_tasks` and `balance_labels` keep, how many each leaves out)."""
    from kositp.eval.stats import is_checkable
    from kositp.train.pairs import balance_chosen_labels

    left_out: dict = {}
    if pair_tasks != "all":
        kept = [r for r in records if is_checkable(str(r.get("task")))]  # an unknown task counts as open-ended
        left_out["open_ended"] = len(records) - len(kept)
        records = kept
    if balance_labels:
        records, left_out["label_balance"] = balance_chosen_labels(records)
    return records, left_out


def _sequences(row: dict) -> list[list[dict]]:
    """The conversations a preference row trains on: prompt + chosen and prompt + rejected (KTO: + completion)."""
    if "completion" in row:
        return [row["prompt"] + row["completion"]]
    return [row["prompt"] + row["chosen"], row["prompt"] + row["rejected"]]


def build_pref_trainer(cfg: PrefConfig, out: Path, callbacks: list | None = None):
    """Data, model and TRL trainer for `cfg`; returns (trainer, loaded, stats, base model name, parent_run)."""
    from kositp.train.data import load_records, preference_rows

    data, _ = cfg.require_paths()
    parent = resolve_parent(cfg)
    records = load_records(_preference_source(data))
    train_records, left_out = _select_pairs(records["train"], cfg.pair_tasks, cfg.balance_labels)
    eval_records, _ = _select_pairs(records.get("validation", []), cfg.pair_tasks, cfg.balance_labels)
    unpaired = cfg.method == "kto"
    train_rows = preference_rows(train_records, unpaired)[: cfg.max_train_samples]
    eval_rows = preference_rows(eval_records, unpaired)[: cfg.max_eval_samples]
    if not train_rows:
        raise KositpError(f"no preference records in {data}"
                          + (f" after pair_tasks={cfg.pair_tasks} and balance_labels={cfg.balance_labels}"
                             if left_out else ""))
    if left_out.get("open_ended"):
        print(f"pair_tasks={cfg.pair_tasks}: leaving out {left_out['open_ended']} pairs of open-ended tasks",
              file=sys.stderr)
    if left_out.get("label_balance"):
        print("balance_labels: leaving out " + ", ".join(f"{n} of {task}" for task, n in
                                                       left_out["label_balance"].items())
              + " (the surplus of each task's more often chosen label)", file=sys.stderr)

    from kositp.train.modeling import import_unsloth_first, load_for_training

    import_unsloth_first(cfg.backend)
    config_cls, trainer_cls = _trainer_classes(cfg.method)
    if parent.adapter_dir is not None:
        loaded = load_with_sft_adapter(cfg, parent.base_source, parent.adapter_dir, parent.adapter_type)
    else:
        loaded = load_for_training(cfg.model_copy(update={"model": parent.base_source}), cfg.max_length)
    # TRL would cut a pair past max_length inside its answers, and silently drop one whose prompt alone fills it
    train_rows, dropped_train = filter_by_length(train_rows, loaded.tokenizer, cfg.max_length, _sequences)
    eval_rows, dropped_eval = filter_by_length(eval_rows, loaded.tokenizer, cfg.max_length, _sequences)
    if not train_rows:
        raise KositpError(f"no preference pairs left: all {dropped_train} are longer than max_length="
                          f"{cfg.max_length} tokens")
    if dropped_train or dropped_eval:
        print(f"max_length={cfg.max_length}: leaving out {dropped_train} training and {dropped_eval} validation "
              "pairs whose prompt and answer do not fit", file=sys.stderr)
    args = trl_arguments(config_cls, cfg, out, has_eval=bool(eval_rows), stage_args=_method_args(cfg))
    trainer = make_trainer(trainer_cls, loaded, args, train_rows, eval_rows, callbacks)
    stats = {"train_records": len(train_rows), "eval_records": len(eval_rows), "method": cfg.method,
             "dropped_too_long": {"train": dropped_train, "validation": dropped_eval},
             "pairs_left_out": left_out.get("open_ended", 0), "pairs_left_out_for_balance":
             left_out.get("label_balance", {})}
    return trainer, loaded, stats, parent.base_name, parent.run


def train_pref(cfg: PrefConfig) -> Path:
    """Run preference alignment as `cfg` says and return the run directory."""
    from kositp.train.modeling import import_unsloth_first

    import_unsloth_first(cfg.backend)  # before the callbacks' transformers import
    from kositp.train.loop import finish_training, run_training

    if cfg.method not in METHODS:  # pragma: no cover - pydantic already restricts it
        raise KositpError(f"unknown preference method '{cfg.method}'")
    _, out = cfg.require_paths()
    run = run_training(cfg, out, cfg.method.upper(), lambda callbacks: build_pref_trainer(cfg, out, callbacks))
    stats, base_name, parent = run.built
    is_peft = cfg.uses_peft() or parent is not None and (Path(parent) / ADAPTER_DIR).is_dir()
    record = {"kind": "pref", "method": cfg.method, "base_model": base_name, "parent_run": parent}
    return finish_training(run, out, is_peft, record=record, summary=stats, title=f"{cfg.method.upper()} {base_name}")
