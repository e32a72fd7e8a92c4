"""Suite `kite`: KITE, Korean instruction following with verifiable constraints (IFEval's method).

Files: `kite/translated_and_filtered/relevant.jsonl` (427 IFEval prompts translated and filtered:
KITE General) and `kite/culturally_aware/culturally_aware.jsonl` (100 Korean-specific prompts:
acrostics, honorifics, numbers, postpositions: KITE Korean). Each prompt is asked through the chat
template; every instruction in its `instruction_id_list` is verified by `kite_checks`. Reported as
IFEval defines them: prompt-level accuracy (all instructions of a prompt followed) and
instruction-level accuracy (each instruction counted), strict and loose (loose also accepts the
response without its first/last line or without '*'), per file and per instruction id.
"""

from __future__ import annotations

import json
from pathlib import Path

from kositp.errors import KositpError
from kositp.eval import metrics
from kositp.eval.benchmarks import sample
from kositp.eval.suites import SuiteResult
from kositp.eval.suites.kite_checks import CHECKERS, check

PARTS = {"general": "kite/translated_and_filtered/relevant.jsonl",
         "korean": "kite/culturally_aware/culturally_aware.jsonl"}


def load(root: Path, part: str) -> list[dict]:
    path = root / PARTS[part]
    if not path.is_file():
        raise KositpError(f"benchmark file not found: {path}")
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            ids, kwargs, prompt = record["instruction_id_list"], record["kwargs"], record["instruction"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise KositpError(f"{path}:{number}: not a KITE record ({exc})") from None
        unknown = [i for i in ids if i not in CHECKERS]
        if unknown or len(ids) != len(kwargs):
            raise KositpError(f"{path}:{number}: unknown instruction id(s) {unknown} or kwargs of another length")
        kwargs = [repeat_target(prompt, kw) if i == "combination:repeat_prompt" else kw
                  for i, kw in zip(ids, kwargs, strict=True)]
        items.append({"id": f"{part}:{record.get('key', number)}", "prompt": prompt, "ids": ids, "kwargs": kwargs})
    return items


def repeat_target(instruction: str, kwargs: dict | None) -> dict:
    """The request to repeat: `prompt_to_repeat`, or the instruction without its last line (the "repeat the
    request" directive) when the file gives none (41 General records) or one of another prompt (5 Korean
    records copy the honorifics prompt into numbers records)."""
    given = (kwargs or {}).get("prompt_to_repeat") or ""
    if given.strip() and instruction.startswith(given.strip()):
        return dict(kwargs)
    return {"prompt_to_repeat": instruction.rsplit("\n", 1)[0]}


def score(items: list[dict], responses: list[str]) -> tuple[dict, list[dict]]:
    """IFEval's four accuracies plus per-instruction strict accuracy; one verdict list per item."""
    verdicts = []
    for item, response in zip(items, responses, strict=True):
        strict = [check(i, response, kw) for i, kw in zip(item["ids"], item["kwargs"], strict=True)]
        loose = [check(i, response, kw, loose=True) for i, kw in zip(item["ids"], item["kwargs"], strict=True)]
        verdicts.append({"strict": strict, "loose": loose})
    per_instruction: dict[str, list[bool]] = {}
    for item, verdict in zip(items, verdicts, strict=True):
        for instruction, ok in zip(item["ids"], verdict["strict"], strict=True):
            per_instruction.setdefault(instruction, []).append(ok)
    flat_strict = [ok for v in verdicts for ok in v["strict"]]
    flat_loose = [ok for v in verdicts for ok in v["loose"]]
    result = {
        "n": len(items),
        "n_instructions": len(flat_strict),
        "prompt_strict": metrics.mean([float(all(v["strict"])) for v in verdicts]),
        "instruction_strict": metrics.mean([float(x) for x in flat_strict]),
        "prompt_loose": metrics.mean([float(all(v["loose"])) for v in verdicts]),
        "instruction_loose": metrics.mean([float(x) for x in flat_loose]),
        "per_instruction_strict": {k: {"n": len(v), "acc": metrics.mean([float(x) for x in v])}
                                   for k, v in sorted(per_instruction.items())},
    }
    return result, verdicts


def run(generator, root: Path, parts: list[str], limit: int | None, seed: int, max_new_tokens: int,
        progress=None) -> SuiteResult:
    per_task, examples = {}, []
    for part in parts:
        items = sample(load(root, part), limit, seed, f"kite-{part}")
        conversations = [[{"role": "user", "content": item["prompt"]}] for item in items]
        if progress:
            progress.start(f"kite/{part}: generating", len(items))
        generations = generator.generate(conversations, max_new_tokens, progress.advance if progress else None)
        result, verdicts = score(items, [g.text for g in generations])
        per_task[part] = result | {"cut_off": sum(not g.finished for g in generations)}
        for item, messages, gen, verdict in zip(items, conversations, generations, verdicts, strict=True):
            examples.append({
                "suite": "kite", "task": part, "id": item["id"], "prompt": generator.prompt_text(messages),
                "output": gen.text, "gold": None, "valid": True, "instruction_ids": item["ids"],
                "followed_strict": verdict["strict"], "followed_loose": verdict["loose"],
                "scores": {"prompt_strict": float(all(verdict["strict"])),
                           "prompt_loose": float(all(verdict["loose"]))},
            })
    settings = {"files": {p: PARTS[p] for p in parts}, "limit": limit, "max_new_tokens": max_new_tokens,
                "method": "IFEval prompt/instruction-level accuracy, strict and loose; Korean checkers"}
    return SuiteResult("kite", {"per_task": per_task}, examples, settings)
