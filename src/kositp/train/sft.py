"""Supervised fine-tuning (`kositp train sft`): TRL's SFTTrainer with PEFT LoRA, QLoRA or full weights.

Loss is on assistant tokens only (the chat template's `{% generation %}` span, which includes
the end-of-turn token), batches are padding-free by default (sequences are concatenated and
position ids restart per sample, so no sample attends to another), and every run writes the
directory layout documented in `kositp.train.artifacts`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from kositp.config import dump_config
from kositp.errors import KositpError
from kositp.train.common import (
    TrainConfig,
    build_trl_args,
    drop_printer,
    prepare_run_dir,
    trainer_common_args,
)


class SFTConfig(TrainConfig):
    """Recipe for `kositp train sft`. Field names follow TRL's SFTConfig where they overlap."""

    padding_free: bool = Field(True, description="Concatenate each batch into one sequence without padding "
                               "(position ids restart per sample, so samples never attend to each other).")
    packing: bool = Field(False, description="Pack samples into max_length blocks (best-fit decreasing); "
                          "attention stays within each sample via position ids.")
    assistant_only_loss: bool = Field(True, description="Loss only on assistant replies (and their end-of-turn "
                                      "token); false trains on the whole conversation.")
    fast_lm_head: bool = Field(True, description="Without Triton (CPU): compute the loss with kositp's LM-head "
                               "kernel (logits only at loss-bearing tokens, bf16 matmuls under bf16, hand-written "
                               "backward; kositp/train/fast_lm_head.py) instead of the checkpointed fallback. Same "
                               "loss and gradients; no effect where TRL's Triton kernel runs.")
    frozen_embedding_dtype: Literal["float32", "bfloat16"] = Field(
        "float32", description="With the fast LM head (CPU): hold a frozen token embedding and its tied output head "
        "in bfloat16 while the model computes in float32, widening slices on the fly (gemma-3-270m: 640 -> 320 MB; "
        "kositp/train/frozen_embedding.py). Rounds the embedding to bf16; ignored where the embedding is trained.")


def _length_filter(rows: list[dict[str, Any]], tokenizer, max_length: int | None) -> tuple[list[dict], int]:
    """Drop (and count) conversations longer than max_length tokens, instead of cutting their answers."""
    if max_length is None:
        return rows, 0
    kept = []
    for row in rows:
        text = tokenizer.apply_chat_template(row["messages"], tokenize=False)
        if len(tokenizer(text, add_special_tokens=False)["input_ids"]) <= max_length:
            kept.append(row)
    return kept, len(rows) - len(kept)


def load_sft_rows(cfg: SFTConfig) -> tuple[list[dict], list[dict]]:
    """Read and validate the train/validation records (light imports only, so bad data fails fast)."""
    from kositp.train.data import load_records, sft_rows

    data, _ = cfg.require_paths()
    records = load_records(data)
    train_rows = sft_rows(records["train"])[: cfg.max_train_samples]
    eval_rows = sft_rows(records.get("validation", []))[: cfg.max_eval_samples]
    return train_rows, eval_rows


def build_sft_trainer(cfg: SFTConfig, out: Path, callbacks: list | None = None, rows=None):
    """Everything up to `trainer.train()`: data, model, TRL arguments. Returns (trainer, loaded, stats)."""
    from kositp.train.modeling import import_unsloth_first

    import_unsloth_first(cfg.backend)
    train_rows, eval_rows = rows if rows is not None else load_sft_rows(cfg)

    from datasets import Dataset
    from trl import SFTConfig as TRLSFTConfig
    from trl import SFTTrainer

    from kositp.train import cpu_logprob, fast_lm_head
    from kositp.train.modeling import load_for_training

    cpu_logprob.install()
    fast_lm_head.install() if cfg.fast_lm_head else fast_lm_head.uninstall()
    loaded = load_for_training(cfg, cfg.max_length)
    train_rows, dropped_train = _length_filter(train_rows, loaded.tokenizer, cfg.max_length)
    eval_rows, dropped_eval = _length_filter(eval_rows, loaded.tokenizer, cfg.max_length)
    if not train_rows:
        raise KositpError(f"no training examples left: all {dropped_train} are longer than max_length="
                          f"{cfg.max_length} tokens")

    # Padding-free without packing never truncates inside TRL (max_length must be None there); the
    # length filter above already enforced it.
    trl_max_length = None if (cfg.padding_free and not cfg.packing) else cfg.max_length
    args = build_trl_args(
        TRLSFTConfig,
        trainer_common_args(cfg, out, has_eval=bool(eval_rows))
        | dict(
            max_length=trl_max_length,
            padding_free=cfg.padding_free,
            packing=cfg.packing,
            assistant_only_loss=cfg.assistant_only_loss,
            dataset_num_proc=None,
        ),
        cfg.trainer_args,
    )
    trainer = SFTTrainer(
        model=loaded.model,
        args=args,
        train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(eval_rows) if eval_rows else None,
        processing_class=loaded.tokenizer,
        peft_config=loaded.peft_config,
        callbacks=callbacks or [],
    )
    drop_printer(trainer)
    stats = {"train_examples": len(train_rows), "eval_examples": len(eval_rows),
             "dropped_too_long": {"train": dropped_train, "validation": dropped_eval}}
    if cfg.frozen_embedding_dtype != "float32":
        stats["frozen_embedding"] = _store_frozen_embedding(cfg, trainer)
    return trainer, loaded, stats


def _store_frozen_embedding(cfg: SFTConfig, trainer) -> str:
    """Apply `frozen_embedding_dtype` where the fast LM head consumes the head; say what was done."""
    from trl.trainer import utils as trl_utils

    from kositp.train import fast_lm_head
    from kositp.train.frozen_embedding import store_frozen_embedding

    if not cfg.fast_lm_head or getattr(trl_utils, "_ChunkedLogProbFunction", None) is not fast_lm_head.FastLabelLogProb:
        return "kept in the model's dtype: the fast LM head is not in use (CUDA/Triton, or fast_lm_head=false)"
    why_not = store_frozen_embedding(trainer.model, cfg.frozen_embedding_dtype)
    return f"kept in the model's dtype: {why_not}" if why_not else f"stored in {cfg.frozen_embedding_dtype}"


def train_sft(cfg: SFTConfig) -> Path:
    """Run SFT as `cfg` says and return the run directory."""
    from kositp.train.modeling import import_unsloth_first

    import_unsloth_first(cfg.backend)  # before the callbacks' transformers import
    from kositp.train.artifacts import record_rank, save_trained, write_run_record, write_summary
    from kositp.train.callbacks import MetricsCallback, RichProgressCallback, plot_metrics, truncate_metrics
    from kositp.train.common import is_main_process

    _, out = cfg.require_paths()
    rows = load_sft_rows(cfg)
    resume_from = prepare_run_dir(out, cfg.resume, cfg.overwrite)
    if resume_from and is_main_process():
        truncate_metrics(out, int(Path(resume_from).name.split("-")[-1]))

    callbacks: list = [MetricsCallback(out)]
    if cfg.progress:
        callbacks.append(RichProgressCallback("SFT"))
    trainer, loaded, stats = build_sft_trainer(cfg, out, callbacks, rows)
    if is_main_process():  # written only once the recipe loaded, so a failed start leaves the directory reusable
        dump_config(cfg, out / "config.yaml")
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume_from)
    wall = time.perf_counter() - started

    record_rank(out, trainer)
    saved = save_trained(trainer, loaded.tokenizer, loaded.chat_format, out, cfg.uses_peft())
    if trainer.is_world_process_zero():
        write_run_record(
            out, kind="sft", method="sft", base_model=cfg.model, base_model_path=loaded.base_model_path,
            saved=saved, chat_format=loaded.chat_format.name, final_step=trainer.state.global_step, parent_run=None,
        )
        tokens = int(trainer.state.num_input_tokens_seen or 0)
        write_summary(out, stats | {
            "backend": loaded.backend, "final_step": trainer.state.global_step, "train_loss": result.training_loss,
            "resumed_from": resume_from, "wall_time_s": round(wall, 3), "tokens_seen": tokens,
            "world_size": trainer.args.world_size,
        })
        plot_metrics(out, f"SFT {cfg.model}")
    return out
