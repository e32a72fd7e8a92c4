"""The seed project's `{"input", "output", "Task_name"}` JSONL: import as ready instruction records, and export."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from kositp.data.io import iter_items
from kositp.data.schema import InstructionRecord, Reject
from kositp.data.seed_names import SEED_NAMES, task_id


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def parse_seed_item(item: Any, ref: str, source: str, columns: dict[str, str] | None = None) -> InstructionRecord | Reject:
    cols = {"input": "input", "output": "output", "task": "Task_name"} | (columns or {})
    if not isinstance(item, dict):
        return Reject(source, ref, "malformed_record", detail=f"expected an object, got {type(item).__name__}")
    for field in ("input", "output"):
        if not _text(item.get(cols[field])):
            return Reject(source, ref, f"missing_field:{cols[field]}")
    raw_task = item.get(cols["task"], item.get("task_name", item.get("task")))
    if raw_task is None:
        return Reject(source, ref, f"missing_field:{cols['task']}")
    task = task_id(raw_task)
    if task is None:
        return Reject(source, ref, "unknown_task", detail=str(raw_task)[:80])
    prompt, answer = _text(item[cols["input"]]), _text(item[cols["output"]])
    # No document id in the seed format: the prompt text identifies the source passage well enough
    # that identical prompts (same passage, same question) never straddle two splits.
    doc_id = str(item.get("doc_id") or hashlib.sha1(prompt.encode("utf-8")).hexdigest()[:16])
    return InstructionRecord(task=task, source=source, doc_id=doc_id, ref=ref,
                             messages=[{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}])


def read_seed(path: str, source: str, columns: dict[str, str] | None = None, **_: Any) -> Iterator[InstructionRecord | Reject]:
    for entry in iter_items(path, ("data",)):
        if isinstance(entry, Reject):
            entry.source = source
            yield entry
        else:
            yield parse_seed_item(entry[1], entry[0], source, columns)


def to_seed(record: dict) -> dict:
    """A built messages record -> the seed format (system text, if any, is not part of `input`)."""
    user = "\n".join(m["content"] for m in record["messages"] if m["role"] == "user")
    answer = "\n".join(m["content"] for m in record["messages"] if m["role"] == "assistant")
    return {"input": user, "output": answer, "Task_name": SEED_NAMES.get(record["task"], record["task"])}


def export_seed(records: Iterable[dict], out: str | Path) -> int:
    """Write records in the seed format, one JSON object a line; returns how many were written."""
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    count = 0
    with open(tmp, "w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(to_seed(record), ensure_ascii=False) + "\n")
            count += 1
    tmp.replace(out)
    return count
