"""What SFT and preference runs share: the recipe fields, run-directory checks and trainer arguments.

A recipe has a few top-level fields (model, data, out, adapter type, seed, lengths) and three
groups, as litgpt groups its arguments: `lora` (the adapter's shape), `cpu` (speed and memory
switches, scoped to one training call) and `trainer` (TRL/transformers trainer arguments under
their own names, so `trainer.max_steps=40` reads like the trainer's option; `trainer.extra` passes
any other TRL argument through).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from kositp.config import Config
from kositp.errors import KositpError
from kositp.train.record import ADAPTER_DIR, MODEL_DIR, RUN_FILE

CHECKPOINT_DIR = "checkpoints"


class LoraSettings(Config):
    """The adapter's shape (PEFT LoraConfig names without the `lora_` prefix); used with adapter_type lora/qlora."""

    r: int = Field(8, ge=1, le=1024, description="LoRA rank.")
    alpha: int = Field(32, ge=1, description="LoRA scaling numerator (scale = alpha / r).")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA input.")
    target_modules: str | list[str] = Field(
        "all-linear", description="Modules that get LoRA: `all-linear` (every linear layer except the output "
        "head) or a list of module names such as [q_proj, v_proj].")


class CpuSettings(Config):
    """CPU speed and memory switches. Each is installed for one training call only (kositp/train/speedups.py)
    and what was active is recorded in run.json under `speedups`."""

    fast_lm_head: bool = Field(True, description="Without Triton (CPU): compute the loss with kositp's LM-head "
                               "kernel (logits only at loss-bearing tokens, bf16 matmuls under bf16, hand-written "
                               "backward; kositp/train/fast_lm_head.py) instead of the checkpointed fallback "
                               "(cpu_logprob.py). Same loss and gradients; no effect where TRL's Triton kernel runs.")
    frozen_embedding_dtype: Literal["float32", "bfloat16"] = Field(
        "float32", description="With the fast LM head: hold a frozen token embedding and its tied output head "
        "in bfloat16 while the model computes in float32, widening slices on the fly (gemma-3-270m: 640 -> 320 MB; "
        "kositp/train/frozen_embedding.py). Rounds the embedding to bf16; ignored where the embedding is trained.")
    recompute_mlp: bool = Field(
        False, description="Selective recomputation: gated MLPs keep only their product for the backward pass and "
        "recompute gate/up in it (about half the saved activations for a few more matmuls; "
        "kositp/train/recompute.py). Ignored with gradient_checkpointing, which recomputes everything.")
    malloc_mmap_threshold_kib: int | None = Field(
        None, ge=1, le=32768, description="Linux/glibc: allocations of at least this many KiB get their own "
        "mapping, so freed activations go back to the OS at once instead of fragmenting the heap: lower peak "
        "RSS on CPU, paid in page faults (kositp/train/host_memory.py, figures in docs/training.md). Process-wide "
        "from the start of training on: glibc cannot go back to its dynamic threshold. null keeps glibc's default.")


class TrainerSettings(Config):
    """Trainer arguments kositp promotes to typed fields: each passes to TRL's config under the same name."""

    num_train_epochs: float = Field(1.0, gt=0, description="Epochs over the training split (ignored if max_steps > 0).")
    max_steps: int = Field(-1, description="Total optimizer steps; -1 means run num_train_epochs.")
    per_device_train_batch_size: int = Field(8, ge=1, le=4096, description="Sequences per device per micro-batch.")
    per_device_eval_batch_size: int = Field(8, ge=1, le=4096, description="Sequences per device for evaluation.")
    gradient_accumulation_steps: int = Field(1, ge=1, le=4096, description="Micro-batches per optimizer step.")
    learning_rate: float = Field(2e-4, gt=0, lt=1, description="Peak learning rate.")
    lr_scheduler_type: str = Field("cosine", description="transformers scheduler name: linear, cosine, constant, "
                                   "constant_with_warmup, ...")
    warmup_steps: float = Field(0.03, ge=0, description="Warm-up: a step count (>= 1) or a fraction of all steps (< 1).")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, ge=0, description="Gradient clipping norm (0 disables).")
    optim: str = Field("adamw_torch", description="transformers optimizer name (e.g. adamw_torch, "
                       "paged_adamw_8bit on CUDA).")
    bf16: bool | Literal["auto"] = Field(
        False, description="bfloat16 mixed precision; `auto`: on CUDA where supported, on CPU where a timed probe "
        "finds it faster than fp32 (cached per CPU; KOSITP_CPU_DTYPE pins it; kositp/cpu_dtype.py).")
    gradient_checkpointing: bool = Field(False, description="Recompute activations to save memory.")
    eval_steps: int | None = Field(None, ge=1, description="Evaluate on the validation split every N steps "
                                   "(null: no evaluation during training).")
    save_steps: int = Field(500, ge=1, description="Write checkpoints/checkpoint-N every N steps.")
    save_total_limit: int | None = Field(3, ge=1, description="Keep at most this many checkpoints.")
    logging_steps: int = Field(1, ge=1, description="Log loss, lr, tokens and step time every N steps.")
    extra: dict[str, Any] = Field(
        default_factory=dict, description="Any other argument of the TRL config class, passed through unchanged "
        "and checked against it; an argument kositp already sets (a field above, or one kositp derives) is an "
        "error, never a silent second value.")


class TrainConfig(Config):
    """Fields every training recipe has: model, data, output, adapter, and the grouped settings."""

    # --- what to train, on what, into where
    model: str = Field("tiny", description="Base model: `tiny`, `tiny:SEED`, `default` (gemma-3-270m), a local "
                       "directory or a Hugging Face Hub id (offline: use a local copy).")
    data: str | None = Field(None, description="Training data: a directory with train.jsonl (+ validation.jsonl), "
                             "one .jsonl file, or a `datasets` id available offline.")
    out: str | None = Field(None, description="Run directory to create (adapter/model, metrics, checkpoints).")
    chat_format: str = Field("auto", description="Chat template: `auto` (the model's own family, else ChatML), "
                             "`chatml` or `gemma`. Recorded beside the tokenizer for export and serving.")
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = Field(
        "float32", description="Weight dtype when loading the base model. CPU runs keep float32 master weights; "
        "use `trainer.bf16: true` for bfloat16 autocast.")
    backend: Literal["auto", "trl", "unsloth"] = Field(
        "auto", description="`auto` uses Unsloth when CUDA and the `unsloth` package are present, else TRL.")
    adapter_type: Literal["lora", "qlora", "full"] = Field(
        "lora", description="LoRA, QLoRA (4-bit NF4 base, CUDA + bitsandbytes only) or full fine-tuning.")
    seed: int = Field(42, description="Seed for model init of the adapter, data order and dropout.")
    max_length: int | None = Field(1024, ge=8, description="Longest tokenized example; longer ones are dropped "
                                   "(and counted) rather than cut mid-answer. null keeps everything.")
    max_train_samples: int | None = Field(None, ge=1, description="Use only the first N training records.")
    max_eval_samples: int | None = Field(None, ge=1, description="Use only the first N validation records.")
    resume: bool = Field(False, description="Continue from the latest checkpoint in out/checkpoints.")
    overwrite: bool = Field(False, description="Allow writing into a non-empty run directory without resuming.")
    progress: bool = Field(True, description="Show a rich progress bar on the terminal (stderr).")
    time_budget_minutes: float | None = Field(
        None, ge=0, description="Stop training cleanly once this many minutes of training steps have passed "
        "(counted from the first step; loading and the final save are not counted): the step under way finishes, "
        "a checkpoint and the adapter/model are saved, and run.json records `time_budget` with the steps done and "
        "planned. 0 stops after the first step. null: no budget (trainer.max_steps or the epochs decide).")

    # --- grouped settings
    lora: LoraSettings = Field(default_factory=LoraSettings, description="LoRA rank, scale, dropout and targets.")
    cpu: CpuSettings = Field(default_factory=CpuSettings, description="CPU speed and memory switches.")
    trainer: TrainerSettings = Field(default_factory=TrainerSettings,
                                     description="Optimisation, schedule, checkpoints and logging (TRL names).")

    # ------------------------------------------------------------------ helpers

    def require_paths(self) -> tuple[str, Path]:
        if not self.data:
            raise KositpError("no training data: pass --data DIR (or data=... in the config)")
        if not self.out:
            raise KositpError("no run directory: pass --out RUN (or out=... in the config)")
        return self.data, Path(self.out)

    def uses_peft(self) -> bool:
        return self.adapter_type in ("lora", "qlora")


def prepare_run_dir(out: Path, resume: bool, overwrite: bool) -> str | None:
    """Create `out`; return the checkpoint to resume from (or None). Refuse to mix two runs silently."""
    ckpt_root = out / CHECKPOINT_DIR
    latest = latest_checkpoint(ckpt_root)
    if resume:
        if latest is None:
            raise KositpError(f"resume=true but {ckpt_root} holds no checkpoint-N directory to resume from")
        return str(latest)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise KositpError(f"run directory {out} is not empty; pass resume=true to continue it or "
                              "overwrite=true to start again there")
        _clear_run_artifacts(out)
    out.mkdir(parents=True, exist_ok=True)
    return None


# What a run writes; overwrite=true removes exactly these (never unrelated files a user keeps there).
RUN_ARTIFACTS = (RUN_FILE, "summary.json", "config.yaml", "metrics.jsonl", "loss.png", "tb", "ranks",
                 CHECKPOINT_DIR, ADAPTER_DIR, MODEL_DIR)


def _clear_run_artifacts(out: Path) -> None:
    import shutil

    for name in RUN_ARTIFACTS:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def latest_checkpoint(ckpt_root: Path) -> Path | None:
    """The complete checkpoint with the highest step. Kept beside transformers' `get_last_checkpoint`, which
    also returns a checkpoint killed mid-write (no trainer_state.json) that cannot be resumed."""
    if not ckpt_root.is_dir():
        return None
    done = [p for p in ckpt_root.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()
            and (p / "trainer_state.json").is_file()]
    return max(done, key=lambda p: int(p.name.split("-")[-1]), default=None)


def resolve_bf16(value: bool | str) -> bool:
    import torch

    if value == "auto":
        if torch.cuda.is_available():
            return torch.cuda.is_bf16_supported()
        from kositp.cpu_dtype import resolve_cpu_dtype

        return resolve_cpu_dtype("train") == "bfloat16"
    return bool(value)


def trl_arguments(config_cls, cfg: TrainConfig, out: Path, has_eval: bool, stage_args: dict[str, Any]):
    """The TRL config object for `cfg`: the `trainer` fields under their own names, what kositp derives
    (run layout, seed, evaluation, logging, device), the stage's own arguments, then `trainer.extra`."""
    import dataclasses

    import torch

    promoted = cfg.trainer.model_dump(exclude={"extra"})
    promoted["bf16"] = resolve_bf16(cfg.trainer.bf16)
    derived: dict[str, Any] = dict(
        output_dir=str(out / CHECKPOINT_DIR),
        seed=cfg.seed,
        data_seed=cfg.seed,
        eval_strategy="steps" if has_eval and cfg.trainer.eval_steps else "no",
        save_strategy="steps",
        logging_first_step=True,
        report_to="none",  # callbacks.py adds metrics.jsonl, the PNG and TensorBoard (in RUN/tb)
        disable_tqdm=True,  # replaced by the rich progress bar
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
        include_num_input_tokens_seen="non_padding",
        save_only_model=False,
        ddp_find_unused_parameters=False,  # LoRA uses every adapter weight each step; the extra graph walk is waste
    ) | stage_args
    if cfg.trainer.gradient_checkpointing:
        derived["gradient_checkpointing_kwargs"] = {"use_reentrant": False}

    extra = cfg.trainer.extra
    for key in sorted(extra):
        if key in promoted:
            raise KositpError(f"trainer.extra.{key} repeats the field trainer.{key}: set it there")
        if key in derived:
            raise KositpError(f"trainer.extra.{key}: kositp sets {key} itself (to {derived[key]!r}, from the "
                              "recipe's own fields); change those instead")
    valid = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(extra) - valid)
    if unknown:
        import difflib

        hint = difflib.get_close_matches(unknown[0], sorted(valid), n=1, cutoff=0.6)
        suffix = f"; did you mean '{hint[0]}'?" if hint else ""
        raise KositpError(f"unknown trainer.extra key(s) for {config_cls.__name__}: {', '.join(unknown)}{suffix}")
    try:
        return config_cls(**(promoted | derived | extra))
    except (ValueError, TypeError) as exc:
        raise KositpError(f"invalid trainer arguments: {str(exc).splitlines()[0]}") from None


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def filter_by_length(rows: list[dict[str, Any]], tokenizer, max_length: int | None,
                     sequences: Callable[[dict], list[list[dict]]] = lambda row: [row["messages"]],
                     ) -> tuple[list[dict], int]:
    """Drop (and count) rows with a conversation longer than `max_length` tokens, instead of cutting answers.

    `sequences` gives the conversations a row trains on (a preference pair: prompt + chosen and prompt +
    rejected). Returns (kept rows, dropped count). The tokenizer must carry the chat template training
    uses, so the lengths are those of the training sequences; `None` keeps everything.
    """
    if max_length is None:
        return rows, 0
    kept = []
    for row in rows:
        texts = [tokenizer.apply_chat_template(messages, tokenize=False) for messages in sequences(row)]
        if all(len(tokenizer(text, add_special_tokens=False)["input_ids"]) <= max_length for text in texts):
            kept.append(row)
    return kept, len(rows) - len(kept)


def make_trainer(trainer_cls, loaded, args, train_rows: list[dict], eval_rows: list[dict], callbacks: list | None):
    """A TRL trainer on `loaded`'s model and tokenizer with the given rows and callbacks.

    With tqdm disabled, transformers prints every log dict to stdout; metrics.jsonl and the progress
    bar replace that, so its printer is removed.
    """
    from datasets import Dataset
    from transformers.trainer_callback import PrinterCallback

    trainer = trainer_cls(
        model=loaded.model,
        args=args,
        train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(eval_rows) if eval_rows else None,
        processing_class=loaded.tokenizer,
        peft_config=loaded.peft_config,
        callbacks=callbacks or [],
    )
    trainer.remove_callback(PrinterCallback)
    return trainer
