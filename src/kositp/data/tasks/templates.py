"""Korean instruction templates: one YAML file per task under kositp/data/templates/.

Each file holds the task's SuperNI-style `definition`, the placeholders every template must use
(`fields`), and at least ten `templates` that place the instruction before, after or between
the context and the question, as real instruction data varies.
"""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass
from functools import cache
from importlib import resources

import yaml

from kositp.data.task_names import OPTIONS_PREFIX, TASKS

# Placeholders filled from other fields rather than by the builders themselves.
DERIVED_FIELDS = {"options_label", "options_list"}


@dataclass(frozen=True)
class TaskTemplates:
    task: str
    name: str
    definition: str
    fields: tuple[str, ...]
    templates: tuple[str, ...]


def placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


@cache
def load_templates(task: str) -> TaskTemplates:
    if task not in TASKS:
        raise KeyError(task)
    text = (resources.files("kositp.data") / "templates" / f"{task}.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    return TaskTemplates(task, data["name"], data["definition"], tuple(data["fields"]), tuple(data["templates"]))


def stable_hash(*parts: object) -> int:
    """A 64-bit hash that is the same in every process (Python's hash() is salted per run)."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def render_prompt(task: str, fields: dict[str, str], key: str, seed: int) -> tuple[str, int]:
    """The user message for one example and the index of the template chosen (stable per key and seed)."""
    spec = load_templates(task)
    index = stable_hash(seed, task, key) % len(spec.templates)
    values = dict(fields)
    if "options" in values:
        values.setdefault("options_label", OPTIONS_PREFIX.rstrip(":"))
        values.setdefault("options_list", values["options"].removeprefix(OPTIONS_PREFIX).strip())
    return spec.templates[index].format(**values), index
