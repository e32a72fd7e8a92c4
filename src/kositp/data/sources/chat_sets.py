"""Public instruction and preference sets: alpaca, sharegpt, messages, preference.

Read from local JSON/JSONL/Parquet (files, folders, zips) or from a Hugging Face dataset id written
as `hf:owner/name` (the real `datasets.load_dataset` path, so cached or mirrored copies work;
offline without a cache it fails with one clear line). Column names are mapped through the
source's `columns` setting, so a set that calls its fields differently needs no code.
"""

from __future__ import annotations

import hashlib
from typing import Any

from kositp.data.io import iter_items
from kositp.data.schema import InstructionRecord, PreferenceRecord, Reject
from kositp.data.text import clean_keep_lines
from kositp.errors import KositpError

HF_PREFIX = "hf:"
DEFAULT_COLUMNS: dict[str, dict[str, str]] = {
    "alpaca": {"instruction": "instruction", "input": "input", "output": "output", "system": "system"},
    "sharegpt": {"conversations": "conversations", "role": "from", "content": "value"},
    "messages": {"messages": "messages", "role": "role", "content": "content"},
    "preference": {"prompt": "prompt", "chosen": "chosen", "rejected": "rejected", "system": "system"},
}
# ShareGPT speakers -> chat roles.
_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "bot": "assistant",
          "chatgpt": "assistant", "model": "assistant", "system": "system"}


def iter_rows(path: str, hf_split: str = "train", hf_config: str | None = None):
    """`(ref, row)` pairs from local files or a Hugging Face dataset id."""
    if path.startswith(HF_PREFIX):
        dataset_id = path[len(HF_PREFIX):]
        try:
            import datasets

            dataset = datasets.load_dataset(dataset_id, hf_config, split=hf_split)
        except Exception as exc:  # offline, unknown id, gated set: all user-fixable
            first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise KositpError(
                f"could not load Hugging Face dataset '{dataset_id}' (split {hf_split}): {first}. "
                "Offline? Download it elsewhere and point the source at the local JSONL/Parquet files."
            ) from None
        for i, row in enumerate(dataset):
            yield f"{path}#{i}", row
        return
    yield from iter_items(path, ("data",))


def _doc_id(*parts: str) -> str:
    return hashlib.sha1("\x1f".join(parts).encode("utf-8")).hexdigest()[:16]


def _messages(value: Any, role_key: str, content_key: str) -> list[dict] | None:
    if isinstance(value, str):
        text = clean_keep_lines(value)
        return [{"role": "user", "content": text}] if text else None
    if not isinstance(value, list) or not value:
        return None
    out = []
    for turn in value:
        if not isinstance(turn, dict):
            return None
        role = _ROLES.get(str(turn.get(role_key, "")).lower())
        content = turn.get(content_key)
        if role is None or not isinstance(content, str) or not content.strip():
            return None
        out.append({"role": role, "content": content.strip()})
    return out


def _chat_record(fmt: str, row: Any, ref: str, source: str, cols: dict[str, str], task: str) -> InstructionRecord | Reject:
    if not isinstance(row, dict):
        return Reject(source, ref, "malformed_record", task=task)
    if fmt == "alpaca":
        instruction = clean_keep_lines(row.get(cols["instruction"]))
        context = clean_keep_lines(row.get(cols["input"]))
        output = clean_keep_lines(row.get(cols["output"]))
        if not instruction:
            return Reject(source, ref, f"missing_field:{cols['instruction']}", task=task)
        if not output:
            return Reject(source, ref, f"missing_field:{cols['output']}", task=task)
        user = f"{instruction}\n\n{context}" if context else instruction
        messages = [{"role": "user", "content": user}, {"role": "assistant", "content": output}]
        system = clean_keep_lines(row.get(cols.get("system", "system")))
        if system:
            messages.insert(0, {"role": "system", "content": system})
    else:
        key = cols["conversations"] if fmt == "sharegpt" else cols["messages"]
        if key not in row:
            return Reject(source, ref, f"missing_field:{key}", task=task)
        messages = _messages(row[key], cols["role"], cols["content"])
        if messages is None:
            return Reject(source, ref, "malformed_conversation", task=task)
        if not any(m["role"] == "assistant" for m in messages) or messages[-1]["role"] != "assistant":
            return Reject(source, ref, "no_final_assistant_turn", task=task)
    first_user = next((m["content"] for m in messages if m["role"] == "user"), "")
    return InstructionRecord(task=task, source=source, doc_id=_doc_id(first_user), ref=ref, messages=messages)


def _pref_record(row: Any, ref: str, source: str, cols: dict[str, str], task: str) -> PreferenceRecord | Reject:
    if not isinstance(row, dict):
        return Reject(source, ref, "malformed_record", task=task)
    for field in ("prompt", "chosen", "rejected"):
        if cols[field] not in row:
            return Reject(source, ref, f"missing_field:{cols[field]}", task=task)
    prompt = _messages(row[cols["prompt"]], "role", "content")
    chosen_raw, rejected_raw = row[cols["chosen"]], row[cols["rejected"]]
    chosen = _messages(chosen_raw, "role", "content")
    rejected = _messages(rejected_raw, "role", "content")
    if not prompt or not chosen or not rejected:
        return Reject(source, ref, "empty_preference_field", task=task)
    # plain-string answers are assistant turns
    if isinstance(chosen_raw, str):
        chosen = [{"role": "assistant", "content": chosen[0]["content"]}]
    if isinstance(rejected_raw, str):
        rejected = [{"role": "assistant", "content": rejected[0]["content"]}]
    if chosen == rejected:
        return Reject(source, ref, "chosen_equals_rejected", task=task)
    system = row.get(cols.get("system", "system"))
    if isinstance(system, str) and system.strip() and prompt[0]["role"] != "system":
        prompt.insert(0, {"role": "system", "content": system.strip()})
    user = next((m["content"] for m in prompt if m["role"] == "user"), "")
    return PreferenceRecord(task=task, source=source, doc_id=_doc_id(user), prompt=prompt, chosen=chosen,
                            rejected=rejected, ref=ref)


def read_chat_set(path: str, source: str, fmt: str, columns: dict[str, str] | None = None, task: str | None = None,
                  hf_split: str = "train", hf_config: str | None = None, **_: Any):
    cols = DEFAULT_COLUMNS[fmt] | (columns or {})
    task = task or ("preference" if fmt == "preference" else "instruction")
    for entry in iter_rows(path, hf_split, hf_config):
        if isinstance(entry, Reject):
            entry.source = source
            yield entry
            continue
        ref, row = entry
        if fmt == "preference":
            yield _pref_record(row, ref, source, cols, task)
        else:
            yield _chat_record(fmt, row, ref, source, cols, task)
