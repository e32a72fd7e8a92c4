"""Reading training data: `kositp data build` output (JSONL), single files, or offline `datasets` ids.

Every record is validated as it is read, and a bad line is reported as `file:line: reason`
rather than surfacing later as a tokenizer traceback. Nothing is dropped silently: records that
are too long are counted and reported by the caller.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kositp.errors import KositpError

ROLES = ("system", "user", "assistant")
SPLIT_FILES = {"train": "train.jsonl", "validation": "validation.jsonl", "test": "test.jsonl"}


def read_jsonl(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """`(line_number, object)` for each non-empty line; clear errors for bad encodings and bad JSON."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise KositpError(f"{path} is not UTF-8 text (byte {exc.start}); re-encode it as UTF-8") from None
    except OSError as exc:
        raise KositpError(f"cannot read {path}: {exc.strerror}") from None
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise KositpError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise KositpError(f"{path}:{number}: expected a JSON object, got {type(obj).__name__}")
        rows.append((number, obj))
    return rows


def check_messages(messages: Any, where: str, need_assistant: bool = True) -> list[dict[str, str]]:
    """Validate a chat message list and return it with only `role` and `content`."""
    if not isinstance(messages, list) or not messages:
        raise KositpError(f"{where}: 'messages' must be a non-empty list of {{role, content}} objects")
    clean = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or "role" not in msg or "content" not in msg:
            raise KositpError(f"{where}: message {i} needs 'role' and 'content'")
        if msg["role"] not in ROLES:
            raise KositpError(f"{where}: message {i} has role {msg['role']!r}; expected one of {', '.join(ROLES)}")
        if not isinstance(msg["content"], str):
            raise KositpError(f"{where}: message {i} content must be a string")
        clean.append({"role": msg["role"], "content": msg["content"]})
    if need_assistant and not any(m["role"] == "assistant" for m in clean):
        raise KositpError(f"{where}: no assistant message, so there is nothing to learn")
    return clean


def _split_paths(data: str) -> dict[str, Path] | None:
    path = Path(data).expanduser()
    if path.is_dir():
        found = {split: path / name for split, name in SPLIT_FILES.items() if (path / name).is_file()}
        if "train" not in found:
            raise KositpError(f"data directory {path} has no train.jsonl (expected `kositp data build` output)")
        return found
    if path.is_file():
        return {"train": path}
    if path.suffix in (".jsonl", ".json") or data.startswith(("/", ".", "~")) or data.count("/") > 1:
        raise KositpError(f"data not found: {path}")
    return None  # maybe a datasets id


def load_records(data: str, splits: tuple[str, ...] = ("train", "validation")) -> dict[str, list[dict[str, Any]]]:
    """Raw records per split from a directory, a file, or an offline `datasets` id."""
    paths = _split_paths(data)
    if paths is not None:
        return {split: [obj | {"_where": f"{paths[split]}:{n}"} for n, obj in read_jsonl(paths[split])]
                for split in splits if split in paths}
    return _load_hub_dataset(data, splits)


def _load_hub_dataset(name: str, splits: tuple[str, ...]) -> dict[str, list[dict[str, Any]]]:
    try:
        import datasets

        loaded = datasets.load_dataset(name)
    except Exception as exc:  # datasets raises many types for "not found" and "offline"
        raise KositpError(
            f"data '{name}' is neither a local path nor a dataset that loads offline "
            f"({type(exc).__name__}); download it on a machine with network and pass the directory"
        ) from None
    result = {}
    for split in splits:
        if split in loaded:
            result[split] = [dict(row) | {"_where": f"{name}[{split}][{i}]"} for i, row in enumerate(loaded[split])]
    if "train" not in result:
        raise KositpError(f"dataset '{name}' has no train split")
    return result


def sft_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Instruction records -> `{"messages": [...]}` rows for TRL (ids and task names stay out of the batch)."""
    rows = []
    for rec in records:
        where = rec.get("_where", "record")
        if "messages" not in rec:
            raise KositpError(f"{where}: missing 'messages' (expected the instruction record format)")
        rows.append({"messages": check_messages(rec["messages"], where)})
    return rows


def preference_rows(records: list[dict[str, Any]], unpaired: bool) -> list[dict[str, Any]]:
    """Preference records -> TRL's conversational paired (prompt/chosen/rejected) or unpaired
    (prompt/completion/label) rows. Paired input is split into two unpaired rows for KTO."""
    rows: list[dict[str, Any]] = []
    for rec in records:
        where = rec.get("_where", "record")
        if "prompt" not in rec:
            raise KositpError(f"{where}: missing 'prompt' (expected prompt/chosen/rejected)")
        prompt = check_messages(rec["prompt"], where + " prompt", need_assistant=False)
        if "completion" in rec and "label" in rec:  # already KTO's unpaired form
            if not unpaired:
                raise KositpError(f"{where}: unpaired (completion/label) data needs method=kto")
            if not isinstance(rec["label"], bool):
                raise KositpError(f"{where}: 'label' must be true or false")
            rows.append({"prompt": prompt, "completion": _assistant_turn(rec["completion"], where + " completion"),
                         "label": rec["label"]})
            continue
        for key in ("chosen", "rejected"):
            if key not in rec:
                raise KositpError(f"{where}: missing '{key}'")
        chosen = _assistant_turn(rec["chosen"], where + " chosen")
        rejected = _assistant_turn(rec["rejected"], where + " rejected")
        if unpaired:
            rows.append({"prompt": prompt, "completion": chosen, "label": True})
            rows.append({"prompt": prompt, "completion": rejected, "label": False})
        else:
            rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    return rows


def _assistant_turn(value: Any, where: str) -> list[dict[str, str]]:
    if isinstance(value, str):  # tolerate the plain-string form some public sets use
        return [{"role": "assistant", "content": value}]
    messages = check_messages(value, where)
    if messages[-1]["role"] != "assistant":
        raise KositpError(f"{where}: the last message must be the assistant's answer")
    return messages
