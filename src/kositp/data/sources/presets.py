"""Named source presets for the public Korean instruction and preference sets the project targets.

A preset is a `SourceConfig` default: format + Hugging Face id + column mapping. A config refers to
one as `format: preset:k_rlhf`; `path`, `columns` (merged key by key) and `name` given beside it
override the preset, so a local copy or a renamed column needs no code:

    sources:
      - {format: "preset:k_rlhf"}                                   # hf:jojo0217/korean_rlhf_dataset
      - {format: "preset:k_rlhf", path: data/k_rlhf.jsonl, columns: {prompt: question}}

On the command line: `--source preset:k_rlhf` or `--source preset:k_rlhf=PATH`.
The column names were checked against the Hub pages where those were readable; `checked` says how
much of each preset was confirmed (see docs/data.md). Nothing is downloaded at run time unless a
build actually names the `hf:` id and the machine can reach the Hub.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PRESET_PREFIX = "preset:"


@dataclass(frozen=True)
class Preset:
    name: str
    format: str
    path: str
    description: str
    columns: dict[str, str] = field(default_factory=dict)
    checked: str = ""


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("k_rlhf", "preference", "hf:jojo0217/korean_rlhf_dataset",
           "Korean RLHF preference pairs (instruction + chosen/rejected answers)",
           columns={"prompt": "instruction", "chosen": "chosen", "rejected": "rejected"},
           checked="hf id, JSONL format and 107k-row train split confirmed; column names not readable on the "
                   "Hub pages available here: `instruction` is assumed, override `columns` if it differs"),
    Preset("every_lm", "alpaca", "hf:ziozzang/EverythingLM-data-V2-Ko",
           "EverythingLM V2 translated to Korean (instruction/input/output)",
           columns={"instruction": "instruction", "input": "input", "output": "output"},
           checked="hf id confirmed; the file is `EverythingLM-data-V2-alpacaformat-KR.json`, i.e. Alpaca "
                   "columns; column list itself not seen"),
    Preset("evolve_instr", "sharegpt", "hf:FreedomIntelligence/evol-instruct-korean",
           "Evol-Instruct translated to Korean (conversations of human/gpt turns)",
           columns={"conversations": "conversations", "role": "from", "content": "value"},
           checked="hf id confirmed (train split, ~10k-100k rows); ShareGPT `conversations`/`from`/`value` "
                   "layout assumed from the publisher's sister sets, not seen"),
)}


def get_preset(name: str) -> Preset:
    from kositp.errors import KositpError

    if name not in PRESETS:
        raise KositpError(f"unknown source preset '{name}'; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name]


def apply_preset(values: dict) -> dict:
    """A raw source mapping with `format: preset:NAME` -> the preset's format/path/columns/name,
    with whatever the mapping sets itself taking precedence (columns merged key by key)."""
    fmt = values.get("format")
    if not isinstance(fmt, str) or not fmt.startswith(PRESET_PREFIX):
        return values
    name = fmt[len(PRESET_PREFIX):]
    if name not in PRESETS:
        raise ValueError(f"unknown source preset '{name}'; choose one of: {', '.join(PRESETS)}")
    preset = PRESETS[name]
    return {**values, "format": preset.format, "path": values.get("path") or preset.path,
            "name": values.get("name") or preset.name, "columns": {**preset.columns, **(values.get("columns") or {})}}
