"""Loading a run and producing the merged model: base (16-bit, never the 4-bit QLoRA copy) + adapter."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from kositp.errors import KositpError

REQUIRED_RUN_KEYS = ("kind", "base_model", "adapter", "model")


@dataclass
class RunInfo:
    path: Path
    record: dict
    weights_dir: Path  # RUN/adapter or RUN/model: holds the tokenizer and kositp_chat.json

    @property
    def is_adapter(self) -> bool:
        return bool(self.record.get("adapter"))


def read_run(run: Path) -> RunInfo:
    run = Path(run)
    path = run / "run.json"
    if not path.is_file():
        raise KositpError(f"{run} is not a training run directory (no run.json)")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise KositpError(f"{path} is not valid UTF-8 JSON: {exc}") from None
    if not isinstance(record, dict):
        raise KositpError(f"{path} must hold a JSON object")
    missing = [k for k in REQUIRED_RUN_KEYS if k not in record]
    if missing:
        raise KositpError(f"{path} lacks {', '.join(missing)}")
    sub = record.get("adapter") or record.get("model")
    if not sub:
        raise KositpError(f"{path} names neither an adapter nor a model directory")
    weights = run / sub
    if not weights.is_dir():
        raise KositpError(f"{weights} (named in run.json) does not exist")
    if record.get("adapter") and not (weights / "adapter_config.json").is_file():
        raise KositpError(f"{weights} has no adapter_config.json; is the run complete?")
    return RunInfo(run, record, weights)


def load_run_tokenizer(info: RunInfo):
    """The tokenizer saved with the run, with the chat format it was trained with installed."""
    from kositp.chat import load_chat_format
    from kositp.models import load_tokenizer

    tokenizer = load_tokenizer(str(info.weights_dir))
    fmt = load_chat_format(info.weights_dir, tokenizer)
    tokenizer.chat_template = fmt.template
    return tokenizer, fmt


def load_reference(info: RunInfo, tokenizer):
    """What training produced, in fp32: base + unmerged adapter (a PeftModel), or the full model."""
    from kositp.models import load_model

    if not info.is_adapter:
        return load_model(str(info.weights_dir), dtype="float32")
    from peft import PeftModel

    base_name = info.record["base_model"]
    try:
        base = load_model(base_name, dtype="float32")
    except KositpError:
        base_path = info.record.get("base_model_path")
        if not base_path or not Path(base_path).is_dir():
            raise
        base = load_model(base_path, dtype="float32")
    if len(tokenizer) > base.get_input_embeddings().num_embeddings:
        base.resize_token_embeddings(len(tokenizer))  # training added tokens (e.g. ChatML markers)
    try:
        return PeftModel.from_pretrained(base, str(info.weights_dir))
    except (RuntimeError, ValueError) as exc:
        raise KositpError(f"the adapter in {info.weights_dir} does not fit base model '{base_name}': "
                          f"{str(exc).splitlines()[0]}") from None


def merge_in_place(reference):
    """The plain merged model (W + scale * B @ A in every adapted layer). Consumes the reference, so
    only one copy of the weights is ever in memory; take reference logits first."""
    if not hasattr(reference, "merge_and_unload"):
        return reference
    return reference.merge_and_unload()
