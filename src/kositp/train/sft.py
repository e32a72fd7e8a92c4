"""Supervised fine-tuning (`kositp train sft`): TRL's SFTTrainer with PEFT LoRA, QLoRA or full weights.

Loss is on assistant tokens only (the chat template's `{% generation %}` span, which includes
the end-of-turn token), batches are padding-free by default (sequences are concatenated and
position ids restart per sample, so no sample attends to another), and every run writes the
directory layout documented in `kositp.train.artifacts`.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path

from pydantic import Field

from kositp.errors import KositpError
from kositp.train.common import TrainConfig, filter_by_length, make_trainer, trl_arguments

# transformers' causal mask turns restarting position ids into a block-diagonal mask for these
# attention implementations, so padding-free batches are safe without Flash Attention
# (tests/test_train_sft.py::test_padding_free_batches_do_not_leak_across_samples checks it).
PACKED_MASK_ATTENTION = ("sdpa", "eager")


class SFTConfig(TrainConfig):
    """Recipe for `kositp train sft`. Field names follow TRL's SFTConfig where they overlap."""

    padding_free: bool = Field(True, description="Concatenate each batch into one sequence without padding "
                               "(position ids restart per sample, so samples never attend to each other).")
    packing: bool = Field(False, description="Pack samples into max_length blocks (best-fit decreasing); "
                          "attention stays within each sample via position ids.")
    assistant_only_loss: bool = Field(True, description="Loss only on assistant replies (and their end-of-turn "
                                      "token); false trains on the whole conversation.")


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

    from trl import SFTConfig as TRLSFTConfig
    from trl import SFTTrainer

    from kositp.train.modeling import load_for_training

    loaded = load_for_training(cfg, cfg.max_length)
    train_rows, dropped_train = filter_by_length(train_rows, loaded.tokenizer, cfg.max_length)
    eval_rows, dropped_eval = filter_by_length(eval_rows, loaded.tokenizer, cfg.max_length)
    if not train_rows:
        raise KositpError(f"no training examples left: all {dropped_train} are longer than max_length="
                          f"{cfg.max_length} tokens")

    # Padding-free without packing never truncates inside TRL (max_length must be None there); the
    # length filter above already enforced it.
    trl_max_length = None if (cfg.padding_free and not cfg.packing) else cfg.max_length
    args = trl_arguments(TRLSFTConfig, cfg, out, has_eval=bool(eval_rows), stage_args=dict(
        max_length=trl_max_length,
        padding_free=cfg.padding_free,
        packing=cfg.packing,
        assistant_only_loss=cfg.assistant_only_loss,
        dataset_num_proc=None,
    ))
    with _padding_free_checked(loaded.model):
        trainer = make_trainer(SFTTrainer, loaded, args, train_rows, eval_rows, callbacks)
    stats = {"train_examples": len(train_rows), "eval_examples": len(eval_rows),
             "dropped_too_long": {"train": dropped_train, "validation": dropped_eval}}
    return trainer, loaded, stats


@contextmanager
def _padding_free_checked(model):
    """Drop TRL's "padding-free needs Flash Attention" warning where the block-diagonal mask makes it safe."""
    attention = getattr(model.config, "_attn_implementation", None)
    if attention not in PACKED_MASK_ATTENTION:
        yield
        return
    trl_logger = logging.getLogger("trl.trainer.sft_trainer")

    def checked(record: logging.LogRecord) -> bool:
        return "Padding-free training is enabled, but" not in record.getMessage()  # accelerate prefixes the rank

    trl_logger.addFilter(checked)
    try:
        yield
    finally:
        trl_logger.removeFilter(checked)


def train_sft(cfg: SFTConfig) -> Path:
    """Run SFT as `cfg` says and return the run directory."""
    from kositp.train.modeling import import_unsloth_first

    import_unsloth_first(cfg.backend)  # before the callbacks' transformers import
    from kositp.train.loop import finish_training, run_training

    _, out = cfg.require_paths()
    rows = load_sft_rows(cfg)
    run = run_training(cfg, out, "SFT", lambda callbacks: build_sft_trainer(cfg, out, callbacks, rows))
    (stats,) = run.built
    tokens = int(run.trainer.state.num_input_tokens_seen or 0)
    record = {"kind": "sft", "method": "sft", "base_model": cfg.model, "adapter_type": cfg.adapter_type}
    return finish_training(run, out, cfg.uses_peft(), record=record,
                           summary=stats | {"tokens_seen": tokens}, title=f"SFT {cfg.model}")
