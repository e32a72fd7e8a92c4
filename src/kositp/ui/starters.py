"""The 22 task starters: one sample Korean input per task id, grouped into categories.

The samples live in `starters.json` (data, not code). Chainlit shows starter categories as a row
of buttons; picking one shows its starters, and a starter sends its sample input as the first
message. That fits 22 starters on one screen where a flat list would not.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from kositp.data.task_names import TASKS

STARTERS_FILE = Path(__file__).with_name("starters.json")


@dataclass(frozen=True)
class TaskStarter:
    task: str
    label: str
    message: str


@dataclass(frozen=True)
class StarterGroup:
    label: str
    starters: tuple[TaskStarter, ...]


@lru_cache(maxsize=1)
def load_starter_groups(path: Path = STARTERS_FILE) -> tuple[StarterGroup, ...]:
    """Read and check the starters file: every task exactly once, no unknown task, no empty text."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    samples: dict[str, dict] = data["starters"]
    unknown = sorted(set(samples) - set(TASKS))
    if unknown:
        raise ValueError(f"{path}: unknown task ids {unknown}")
    groups: list[StarterGroup] = []
    seen: list[str] = []
    for cat in data["categories"]:
        items = []
        for task in cat["tasks"]:
            sample = samples.get(task)
            if sample is None:
                raise ValueError(f"{path}: category '{cat['label']}' lists '{task}' without a sample")
            if not sample.get("label", "").strip() or not sample.get("message", "").strip():
                raise ValueError(f"{path}: '{task}' needs a non-empty label and message")
            items.append(TaskStarter(task, sample["label"].strip(), sample["message"]))
            seen.append(task)
        groups.append(StarterGroup(cat["label"], tuple(items)))
    missing = [t for t in TASKS if t not in seen]
    duplicated = sorted({t for t in seen if seen.count(t) > 1})
    if missing or duplicated:
        raise ValueError(f"{path}: tasks missing from categories {missing}, listed twice {duplicated}")
    return tuple(groups)
