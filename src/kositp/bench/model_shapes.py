"""Models built from published configurations with random weights, for speed and memory benchmarks.

Step time and memory depend on a model's shape, not on its weights, so a GPU benchmark can run
on a machine that cannot download weights: the shapes below copy the configurations of
meta-llama/Llama-3.2-1B, meta-llama/Llama-3.1-8B and google/gemma-3-1b-pt (their `config.json`),
and `write_random_model` saves a randomly initialised model of that shape, in bf16 on CUDA,
beside a tokenizer taken from another model directory (kositp's tiny Korean tokenizer by default).
`llama-tiny` is a few-hundred-thousand-parameter shape for CPU tests of the same code.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from kositp.errors import KositpError

_LLAMA_3 = dict(model_type="llama", hidden_act="silu", rms_norm_eps=1e-5, rope_theta=500000.0,
                max_position_embeddings=131072, vocab_size=128256, attention_bias=False, mlp_bias=False)

SHAPES: dict[str, dict[str, Any]] = {
    "llama-3.2-1b": _LLAMA_3 | dict(
        hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
        num_key_value_heads=8, head_dim=64, tie_word_embeddings=True,
        rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 8192}),
    "llama-3.1-8b": _LLAMA_3 | dict(
        hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
        num_key_value_heads=8, head_dim=128, tie_word_embeddings=False,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 8192}),
    "gemma-3-1b": dict(
        model_type="gemma3_text", vocab_size=262144, hidden_size=1152, intermediate_size=6912,
        num_hidden_layers=26, num_attention_heads=4, num_key_value_heads=1, head_dim=256,
        query_pre_attn_scalar=256, sliding_window=512, max_position_embeddings=32768, rms_norm_eps=1e-6,
        hidden_activation="gelu_pytorch_tanh", rope_theta=1000000.0, rope_local_base_freq=10000.0,
        tie_word_embeddings=True),
    "llama-tiny": dict(
        model_type="llama", hidden_act="silu", vocab_size=4096, hidden_size=64, intermediate_size=128,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
        max_position_embeddings=2048, tie_word_embeddings=True),
}

# Parameter counts of the published checkpoints, which the shapes must reproduce (tests check it).
PUBLISHED_PARAMETERS = {"llama-3.2-1b": 1_235_814_400, "llama-3.1-8b": 8_030_261_248, "gemma-3-1b": 999_885_952}


def shape_config(name: str, vocab_size: int | None = None):
    """The transformers config of shape `name`; `vocab_size` widens the vocabulary (never narrows it)."""
    from transformers import AutoConfig

    if name not in SHAPES:
        raise KositpError(f"unknown model shape '{name}'; choose from {', '.join(SHAPES)}")
    fields = dict(SHAPES[name])
    if vocab_size is not None:
        fields["vocab_size"] = max(fields["vocab_size"], vocab_size)
    return AutoConfig.for_model(fields.pop("model_type"), **fields)


def parameter_count(name: str) -> int:
    """Parameters of shape `name`, counted on the meta device (no memory is allocated)."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(shape_config(name))
    return sum(p.numel() for p in model.parameters())


def write_random_model(name: str, out: Path, tokenizer_from: str, seed: int = 0) -> Path:
    """Save a random model of shape `name` (bf16 on CUDA, fp32 on CPU) with `tokenizer_from`'s tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM

    from kositp.models import load_tokenizer, resolve_model_path

    out = Path(out)
    if (out / "config.json").is_file():
        return out
    tokenizer = load_tokenizer(tokenizer_from)
    config = shape_config(name, vocab_size=len(tokenizer))
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        setattr(config, key, getattr(tokenizer, key))
    cuda = torch.cuda.is_available()
    torch.manual_seed(seed)
    with torch.device("cuda" if cuda else "cpu"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16 if cuda else torch.float32)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    source = Path(resolve_model_path(tokenizer_from))
    for extra in ("kositp_chat.json", "chat_template.jinja"):  # the chat format travels with the tokenizer
        if (source / extra).is_file() and not (partial / extra).exists():
            shutil.copy2(source / extra, partial / extra)
    del model
    if cuda:
        torch.cuda.empty_cache()
    partial.rename(out)
    return out
