"""Load what `--model` names, the way serving would: model, tokenizer and the one chat format.

Accepted values:
* `tiny`, `tiny:SEED`, `default`: the aliases of `kositp.models`;
* a training RUN directory (has `run.json`): `model/` for full fine-tunes, else the base model
  (`RunRecord.base_model_source`) with the LoRA `adapter/` applied through PEFT;
* an export directory or any Hugging Face model directory.
The chat format comes from `kositp_chat.json` beside the tokenizer when present (training wrote
it), so evaluation prompts are byte-identical to training and serving prompts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kositp.chat import ChatFormat, end_of_turn_ids, load_chat_format, resolve_chat_format
from kositp.errors import KositpError
from kositp.train.record import is_run_dir, read_run


@dataclass
class LoadedModel:
    model: object
    tokenizer: object
    chat_format: ChatFormat
    stop_ids: list[int]
    description: dict = field(default_factory=dict)  # what was loaded, for the report


def load_for_eval(spec: str, dtype: str = "float32", chat_format: str = "auto",
                  onednn_linears: bool = True) -> LoadedModel:
    """Load `spec` (alias, RUN dir, export dir or HF dir) for generation and scoring, in eval mode.

    In float32 on the CPU the linear layers run through oneDNN (`kositp.cpu_linear`), as serving does.
    """
    from kositp.models import load_model, load_tokenizer, resolve_model_path

    path = Path(resolve_model_path(spec))
    description: dict = {"model": spec}
    if is_run_dir(path):
        run = read_run(path)
        description["run"] = {"kind": run.kind, "method": run.method, "base_model": run.base_model,
                              "final_step": run.final_step}
        tokenizer_dir = run.weights_dir(path)
        if not run.is_adapter:
            model = load_model(str(tokenizer_dir), dtype=dtype)
        else:
            model = load_model(run.base_model_source(), dtype=dtype)
            tokenizer = load_tokenizer(str(tokenizer_dir))
            if len(tokenizer) > model.get_input_embeddings().num_embeddings:
                model.resize_token_embeddings(len(tokenizer))  # training added chat tokens
            from peft import PeftModel

            # Merged for inference: the same weights `kositp export` writes (checked there to 1e-6),
            # without PEFT's extra per-layer matmuls at every decoding step.
            model = PeftModel.from_pretrained(model, str(tokenizer_dir)).merge_and_unload()
            description["adapter"] = str(tokenizer_dir)
    else:
        if not path.exists() and spec not in ("tiny", "default"):
            raise KositpError(f"model '{spec}' is not a directory (expected an export, HF model or RUN dir)")
        tokenizer_dir = path
        model = load_model(str(path), dtype=dtype)
    tokenizer = load_tokenizer(str(tokenizer_dir))
    fmt = resolve_chat_format(tokenizer, chat_format) if chat_format != "auto" else load_chat_format(
        tokenizer_dir, tokenizer
    )
    # Install the template text only: adding tokens here would change the vocabulary the model knows.
    tokenizer.chat_template = fmt.template
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # padding is masked out; any id works
    tokenizer.padding_side = "left"
    model.eval()
    if onednn_linears:
        from kositp.cpu_linear import use_onednn_linears

        use_onednn_linears(model)
    description["chat_format"] = fmt.name
    return LoadedModel(model, tokenizer, fmt, end_of_turn_ids(tokenizer, fmt), description)
