"""run.json: the record a training run leaves for export, evaluation, preference pairs and serving.

One model (`RunRecord`), one writer (`RunRecord.write`) and one reader (`read_run`) that checks what
every reader needs: the file is there and valid, it names exactly one of `adapter/` or `model/`,
that directory exists, and an adapter directory holds an adapter. The base model a LoRA run is
loaded on comes from one rule, `RunRecord.base_model_source`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from kositp.errors import KositpError

RUN_FILE = "run.json"
ADAPTER_DIR = "adapter"
MODEL_DIR = "model"


class RunRecord(BaseModel):
    """What a finished training run is: how it was trained, on which base, and where its weights are."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    kind: Literal["sft", "pref", "rl"] = Field(description="Training stage that wrote the run.")
    method: str = Field(description="sft, the preference method (dpo, orpo, kto, simpo) or the RL method (grpo).")
    base_model: str = Field(description="The base model as the recipe named it (alias, hub id or directory).")
    base_model_path: str | None = Field(None, description="The local directory that name resolved to when training.")
    adapter: str | None = Field(None, description="Subdirectory with the LoRA adapter (LoRA/QLoRA runs).")
    adapter_type: Literal["lora", "qlora", "full"] | None = Field(
        None, description="How the run trained (SFT runs; absent in older records): a QLoRA run's base was "
                          "loaded in 4-bit, and a preference run continuing it loads it so again.")
    model: str | None = Field(None, description="Subdirectory with full weights (full fine-tuning).")
    chat_format: str = Field(description="Chat format name; the template itself is in kositp_chat.json.")
    final_step: int = Field(ge=0, description="Optimizer steps done.")
    parent_run: str | None = Field(None, description="The SFT run a preference or RL run continued, if any.")
    tasks: list[str] | None = Field(None, description="RL runs: the tasks whose training prompts were used.")
    speedups: dict[str, str] = Field(default_factory=dict, description="CPU speed-ups active during training "
                                     "(kositp/train/speedups.py).")
    time_budget: dict | None = Field(None, description="With time_budget_minutes: the budget, whether training "
                                     "stopped on it, steps done and planned, training seconds.")

    @model_validator(mode="after")
    def _one_weights_dir(self) -> RunRecord:
        if bool(self.adapter) == bool(self.model):
            raise ValueError("exactly one of 'adapter' and 'model' must name the weights directory")
        return self

    @property
    def is_adapter(self) -> bool:
        return self.adapter is not None

    def weights_dir(self, run_dir: str | Path) -> Path:
        """RUN/adapter or RUN/model: the weights, the tokenizer and kositp_chat.json."""
        return Path(run_dir) / (self.adapter or self.model)

    def base_model_source(self) -> str:
        """What to load the base from: the directory training resolved when it exists on this machine
        (the exact weights trained on), else the recipe's name (a run moved here from elsewhere)."""
        if self.base_model_path and Path(self.base_model_path).is_dir():
            return self.base_model_path
        return self.base_model

    def write(self, run_dir: str | Path) -> None:
        Path(run_dir, RUN_FILE).write_text(json.dumps(self.model_dump(mode="json"), ensure_ascii=False, indent=2),
                                           encoding="utf-8")


def is_run_dir(path: str | Path) -> bool:
    return Path(path, RUN_FILE).is_file()


def read_run(run_dir: str | Path) -> RunRecord:
    """The record of the run in `run_dir`, checked; any problem is one KositpError line."""
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise KositpError(f"{run_dir} is not a kositp training run directory (no {RUN_FILE})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise KositpError(f"{path} is not valid UTF-8 JSON: {exc}") from None
    if not isinstance(data, dict):
        raise KositpError(f"{path} must hold a JSON object, not {type(data).__name__}")
    try:
        record = RunRecord.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(record)"
        raise KositpError(f"{path}: {where}: {first['msg']}") from None
    weights = record.weights_dir(run_dir)
    if not weights.is_dir():
        raise KositpError(f"{weights} (named in {RUN_FILE}) does not exist")
    if record.is_adapter and not (weights / "adapter_config.json").is_file():
        raise KositpError(f"{weights} has no adapter_config.json; is the run complete?")
    return record
