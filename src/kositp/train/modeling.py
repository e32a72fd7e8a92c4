"""Loading the model to train: backend choice (TRL or Unsloth), chat format, LoRA/QLoRA/full.

The tokenizer always leaves here with kositp's chat template installed (chat.py) and a pad
token distinct from eos, so the end-of-turn token stays inside the loss mask.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any

from kositp.chat import ChatFormat, apply_chat_format, end_of_turn_ids, resolve_chat_format
from kositp.errors import KositpError
from kositp.models import load_model, load_tokenizer, resolve_model_path
from kositp.train.common import TrainConfig

# What "all-linear" means for Unsloth, which wants explicit names (the decoder projections of
# Llama/Gemma/Qwen/Mistral families); TRL/PEFT resolve "all-linear" themselves.
UNSLOTH_ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    chat_format: ChatFormat
    backend: str
    peft_config: Any  # a peft.LoraConfig for the trainer to apply, or None (full / already wrapped)
    base_model_path: str


def unsloth_installed() -> bool:
    return importlib.util.find_spec("unsloth") is not None


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def import_unsloth_first(requested: str) -> None:
    """Import Unsloth before TRL, transformers' trainer and PEFT when it will be used: it patches them
    on import, and patches applied after those imports are partly lost (Unsloth warns so)."""
    if select_backend(requested, cuda_available(), unsloth_installed()) == "unsloth":
        importlib.import_module("unsloth")


def select_backend(requested: str, cuda: bool, has_unsloth: bool) -> str:
    """`auto` -> unsloth only when it can take its real (CUDA) path; an explicit choice is checked."""
    if requested == "auto":
        return "unsloth" if cuda and has_unsloth else "trl"
    if requested == "unsloth":
        if not cuda:
            raise KositpError("backend=unsloth needs a CUDA GPU (its CPU fallback is not its real path); "
                              "use backend=trl or backend=auto")
        if not has_unsloth:
            raise KositpError("backend=unsloth but the `unsloth` package is not installed; "
                              "pip install -e '.[gpu]' in a CUDA environment")
        return "unsloth"
    if requested == "trl":
        return "trl"
    raise KositpError(f"unknown backend '{requested}'; choose auto, trl or unsloth")


def check_adapter_type(adapter_type: str, cuda: bool) -> None:
    if adapter_type == "qlora":
        if not cuda:
            raise KositpError("adapter_type=qlora loads the base in 4-bit with bitsandbytes, which needs a CUDA "
                              "GPU; use adapter_type=lora on CPU")
        if importlib.util.find_spec("bitsandbytes") is None:
            raise KositpError("adapter_type=qlora needs bitsandbytes: pip install -e '.[gpu]'")


def lora_config(cfg: TrainConfig, new_token_ids: list[int] | None = None):
    from peft import LoraConfig

    kwargs: dict[str, Any] = dict(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=cfg.lora.target_modules,
        bias="none",
        task_type="CAUSAL_LM",
    )
    if new_token_ids:
        # Tokens the chat format had to add (e.g. ChatML markers on a base model) start random; train
        # only their embedding rows instead of saving the whole embedding matrix.
        kwargs["trainable_token_indices"] = {"embed_tokens": new_token_ids}
    return LoraConfig(**kwargs)


def prepare_tokenizer(model_name: str, chat_format: str):
    """Tokenizer with the resolved chat format installed; returns (tokenizer, format, ids it had to add)."""
    tokenizer = load_tokenizer(model_name)
    before = len(tokenizer)
    fmt = apply_chat_format(tokenizer, resolve_chat_format(tokenizer, chat_format))
    added = list(range(before, len(tokenizer)))
    return tokenizer, fmt, added


def align_model_with_tokenizer(model, tokenizer, fmt: ChatFormat, added: list[int]) -> None:
    """Fit `model` to the tokenizer `prepare_tokenizer` returned: embedding rows for the tokens it
    `added`, and generation that stops at the chat format's end-of-turn ids and pads with its pad id."""
    if added or len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))
    eot = end_of_turn_ids(tokenizer, fmt)
    # Generation after training (and export, which copies generation_config) stops at the turn end.
    model.generation_config.eos_token_id = eot
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.config.pad_token_id = tokenizer.pad_token_id


def four_bit_load_kwargs() -> dict[str, Any]:
    """`from_pretrained` arguments of a QLoRA base: NF4 with double quantization, bf16 compute, on GPU 0."""
    import torch
    from transformers import BitsAndBytesConfig

    return {"quantization_config": BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                      bnb_4bit_use_double_quant=True,
                                                      bnb_4bit_compute_dtype=torch.bfloat16),
            "device_map": {"": 0}}


def load_for_training(cfg: TrainConfig, max_seq_length: int | None = None) -> LoadedModel:
    """Model + tokenizer for `cfg`, wrapped the way the chosen backend and adapter type need."""
    cuda = cuda_available()
    backend = select_backend(cfg.backend, cuda, unsloth_installed())
    check_adapter_type(cfg.adapter_type, cuda)
    base_path = resolve_model_path(cfg.model)
    if backend == "unsloth":
        return _load_unsloth(cfg, base_path, max_seq_length)

    tokenizer, fmt, added = prepare_tokenizer(cfg.model, cfg.chat_format)
    kwargs = four_bit_load_kwargs() if cfg.adapter_type == "qlora" else {}
    model = load_model(cfg.model, cfg.dtype, **kwargs)
    align_model_with_tokenizer(model, tokenizer, fmt, added)
    # No PEFT `prepare_model_for_kbit_training` on a 4-bit base: TRL's trainers (SFT, DPO, KTO, GRPO;
    # ORPO and CPO call it themselves) already freeze the base, make the inputs require grad for
    # checkpointing and keep the adapter in bf16, while that function would also upcast every weight
    # left in 16 bits (embeddings, output layer, norms) to fp32: on an 8B Llama about 2 GiB more.
    if cfg.cpu.recompute_mlp and not cfg.trainer.gradient_checkpointing:  # full checkpointing recomputes everything anyway
        from kositp.train.recompute import recompute_gated_mlps

        recompute_gated_mlps(model)
    peft_config = lora_config(cfg, added) if cfg.uses_peft() else None
    return LoadedModel(model, tokenizer, fmt, "trl", peft_config, base_path)


def _load_unsloth(cfg: TrainConfig, base_path: str, max_seq_length: int | None) -> LoadedModel:
    """Unsloth's own loader and LoRA wrapper (its fused kernels are why it is faster on CUDA)."""
    from unsloth import FastLanguageModel

    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=base_path,
        max_seq_length=max_seq_length or 2048,
        dtype=None,  # Unsloth picks bf16 where supported, else fp16
        load_in_4bit=cfg.adapter_type == "qlora",
        full_finetuning=cfg.adapter_type == "full",
    )
    before = len(tokenizer)
    fmt = apply_chat_format(tokenizer, resolve_chat_format(tokenizer, cfg.chat_format))
    added = list(range(before, len(tokenizer)))
    align_model_with_tokenizer(model, tokenizer, fmt, added)
    if cfg.uses_peft():
        targets = UNSLOTH_ALL_LINEAR if cfg.lora.target_modules == "all-linear" else cfg.lora.target_modules
        model = FastLanguageModel.get_peft_model(
            model,
            r=cfg.lora.r,
            target_modules=targets,
            lora_alpha=cfg.lora.alpha,
            lora_dropout=cfg.lora.dropout,
            bias="none",
            use_gradient_checkpointing="unsloth" if cfg.trainer.gradient_checkpointing else False,
            random_state=cfg.seed,
        )
    return LoadedModel(model, tokenizer, fmt, "unsloth", None, base_path)
