"""Loading a run and producing the merged model: base (16-bit, never the 4-bit QLoRA copy) + adapter."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kositp.errors import KositpError
from kositp.train.record import RunRecord, read_run


@dataclass
class RunInfo:
    path: Path
    record: RunRecord

    @property
    def weights_dir(self) -> Path:  # RUN/adapter or RUN/model: holds the tokenizer and kositp_chat.json
        return self.record.weights_dir(self.path)

    @property
    def is_adapter(self) -> bool:
        return self.record.is_adapter


def open_run(run: Path) -> RunInfo:
    """The run in `run`, with run.json checked (`kositp.train.record.read_run`)."""
    return RunInfo(Path(run), read_run(run))


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

    base_name = info.record.base_model_source()
    base = load_model(base_name, dtype="float32")
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
