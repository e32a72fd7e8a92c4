"""Writing the run directory that export, serving and evaluation read (see docs/training.md).

RUN/
  run.json         kind, method, base model, adapter/model dir, chat format, final step, parent run,
                   active CPU speed-ups (kositp.train.record.RunRecord)
  adapter/         PEFT adapter + tokenizer with template + kositp_chat.json   (LoRA / QLoRA)
  model/           full weights + tokenizer + kositp_chat.json                 (full fine-tuning)
  config.yaml      the resolved recipe
  summary.json     examples used/dropped, wall time, tokens/s
  metrics.jsonl    loss, lr, tokens seen, step time (+ reward metrics for preference runs)
  loss.png, tb/, checkpoints/checkpoint-N/
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from kositp.chat import ChatFormat, end_of_turn_ids, save_chat_format
from kositp.train.record import ADAPTER_DIR, MODEL_DIR

SUMMARY_FILE = "summary.json"


def save_trained(trainer, tokenizer, fmt: ChatFormat, out: Path, is_peft: bool) -> str:
    """Save the adapter (or full model) with its tokenizer and chat format; return the subdirectory name."""
    name = ADAPTER_DIR if is_peft else MODEL_DIR
    target = out / name
    trainer.save_model(str(target))  # handles unwrapping and distributed/FSDP state gathering
    if not trainer.is_world_process_zero():
        return name
    # DPO/KTO continuing an SFT adapter keep a frozen "ref" copy beside it; PEFT saves extra adapters
    # in subfolders. Export expects exactly one adapter over the base, so drop the reference copy.
    for sub in target.iterdir():
        if sub.is_dir() and (sub / "adapter_config.json").is_file():
            shutil.rmtree(sub)
    tokenizer.save_pretrained(str(target))
    save_chat_format(tokenizer, fmt, target)
    model = trainer.accelerator.unwrap_model(trainer.model)
    generation_config = getattr(model, "generation_config", None)
    if generation_config is not None:
        # TRL re-aligns eos with the tokenizer's plain eos during training; put the turn-ending ids back
        # so export and serving stop where training taught (the adapter carries them too).
        generation_config.eos_token_id = end_of_turn_ids(tokenizer, fmt)
        generation_config.pad_token_id = tokenizer.pad_token_id
        generation_config.save_pretrained(str(target))
    return name


def write_summary(out: Path, summary: dict[str, Any]) -> None:
    """summary.json: what happened (examples used and dropped, wall time, throughput); run.json stays the contract."""
    (out / SUMMARY_FILE).write_text(json.dumps(summary, ensure_ascii=False, indent=2), encoding="utf-8")


def record_rank(out: Path, trainer) -> None:
    """Under a multi-process launch, each rank leaves RUN/ranks/rank-N.json (proof every rank trained)."""
    args = trainer.args
    if args.world_size <= 1:
        return
    ranks = out / "ranks"
    ranks.mkdir(parents=True, exist_ok=True)
    (ranks / f"rank-{args.process_index}.json").write_text(json.dumps({
        "rank": args.process_index,
        "world_size": args.world_size,
        "global_step": trainer.state.global_step,
        # Fewer batches than the whole dataset = this rank saw its own shard; equal checksums on every rank
        # = DDP kept the replicas in sync.
        "batches_per_epoch": len(trainer.get_train_dataloader()),
        "trainable_checksum": float(sum(p.detach().double().sum() for p in trainer.model.parameters()
                                        if p.requires_grad)),
        "logged_losses": [e["loss"] for e in trainer.state.log_history if "loss" in e],
    }), encoding="utf-8")
