"""The dataset card: card.json (machine-readable), card.md (for people) and card.png (per-task counts)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from kositp.data.pii import PLACEHOLDERS
from kositp.data.task_names import TASKS

SPLITS = ("train", "validation", "test")


def _summary(values: list[int]) -> dict:
    if not values:
        return {}
    arr = np.asarray(values)
    edges = np.unique(np.quantile(arr, np.linspace(0, 1, 11)).round().astype(int))
    hist, bins = np.histogram(arr, bins=edges if len(edges) > 1 else 1)
    return {"min": int(arr.min()), "mean": round(float(arr.mean()), 1), "p50": int(np.percentile(arr, 50)),
            "p95": int(np.percentile(arr, 95)), "max": int(arr.max()),
            "histogram": {"bins": [int(b) for b in bins], "counts": [int(c) for c in hist]}}


def length_stats(metas: list) -> dict:
    """Per task: characters of prompt and answer, and tokens of the rendered chat when measured."""
    by_task: dict[str, list] = {}
    for meta in metas:
        by_task.setdefault(meta.task, []).append(meta)
    out = {}
    for task in sorted(by_task, key=lambda t: (TASKS.index(t) if t in TASKS else len(TASKS), t)):
        items = by_task[task]
        entry = {"prompt_chars": _summary([m.prompt_chars for m in items]),
                 "answer_chars": _summary([m.answer_chars for m in items])}
        tokens = [m.tokens for m in items if m.tokens is not None]
        if tokens:
            entry["tokens"] = _summary(tokens)
        out[task] = entry
    return out


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def card_markdown(card: dict) -> str:
    c = card["counts"]
    lines = ["# Dataset card", "", f"Seed: `{card['seed']}`", "",
             "| read | written | rejected | duplicates |", "|---:|---:|---:|---:|",
             f"| {c['read']} | {c['written']} | {c['rejected']} | {c['duplicates']} |", "",
             f"Instruction records: {c['instructions']}; preference pairs: {c['preferences']}"
             + (" (train/validation/test: {train}/{validation}/{test}, in preference.jsonl, "
                "preference_validation.jsonl, preference_test.jsonl)".format(**card["preference_splits"])
                if c["preferences"] and "preference_splits" in card else "") + ".", "",
             "## Records per task and split", "", "| task | train | validation | test |", "|---|---:|---:|---:|"]
    for task, row in card["per_task"].items():
        lines.append(f"| {task} | {row['train']} | {row['validation']} | {row['test']} |")
    s = card["splits"]
    lines += [f"| **total** | {s['train']} | {s['validation']} | {s['test']} |", "",
              "## Records per source and split", "", "| source | train | validation | test |", "|---|---:|---:|---:|"]
    for source, row in card["per_source"].items():
        lines.append(f"| {source} | {row['train']} | {row['validation']} | {row['test']} |")
    lines += task_source_markdown(card)
    lines += ["", "## Rejects by reason", "", "| reason | count |", "|---|---:|"]
    lines += [f"| `{reason}` | {n} |" for reason, n in card["reject_reasons"].items()] or ["| (none) | 0 |"]
    lines += target_quality_markdown(card) + pii_markdown(card)
    lines += ["", "## Lengths (characters; tokens when a tokenizer was given)", "",
              "| task | prompt p50 | prompt p95 | answer p50 | answer p95 | tokens p50 | tokens max |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for task, entry in card["lengths"].items():
        tok = entry.get("tokens", {})
        lines.append(f"| {task} | {entry['prompt_chars']['p50']} | {entry['prompt_chars']['p95']} | "
                     f"{entry['answer_chars']['p50']} | {entry['answer_chars']['p95']} | "
                     f"{tok.get('p50', '')} | {tok.get('max', '')} |")
    docs = card["documents"]
    lines += ["", "## Documents", "", f"Read per source: {json.dumps(docs['read'], ensure_ascii=False)}; "
              f"per split: {json.dumps(docs['per_split'])}. No document appears in two splits.", "",
              *_stratum_line(docs),
              "## Config", "", "```json", json.dumps(card["config"], ensure_ascii=False, indent=2), "```", ""]
    return "\n".join(lines)


def _stratum_line(docs: dict) -> list[str]:
    held = docs.get("with_unanswerable_per_split") or {}
    if not any(held.values()):
        return []
    return [f"Documents holding unanswerable questions per split: {json.dumps(held)} (spread over the "
            "splits in proportion, so each split's answerability has both labels).", ""]


def target_quality_markdown(card: dict) -> list[str]:
    """Rejects of the target-quality rules (`kositp.data.quality`), zeros included, so the card shows they ran."""
    checks = card.get("target_quality")
    if checks is None:
        return []
    return ["", "## Target quality (rejects per rule; rules per task in docs/data.md)", "", "| rule | rejected |",
            "|---|---:|", *(f"| `{rule}` | {n} |" for rule, n in checks.items())]


def pii_markdown(card: dict) -> list[str]:
    """Personal data found per kind (`kositp.data.pii`) and what the build did with it."""
    info = card.get("pii")
    if info is None:
        return []
    action = {"mask": "replaced by the placeholder", "drop": "records rejected as `pii`",
              "keep": "left in the text"}[info["mode"]]
    lines = ["", f"## Personal data (mode `{info['mode']}`: {action})", "",
             "| kind | placeholder | found | records |", "|---|---|---:|---:|"]
    lines += [f"| {kind} | `{PLACEHOLDERS.get(kind, '')}` | {n} | {info['records'].get(kind, 0)} |"
              for kind, n in info["found"].items()]
    return lines


def task_source_counts(metas: list, split_of: dict) -> dict:
    """Per task, per source: instruction records in each split (which source fed which task)."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for meta in metas:
        if meta.kind == "sft":
            row = out.setdefault(meta.task, {}).setdefault(meta.source, dict.fromkeys(SPLITS, 0))
            row[split_of[meta.doc_key]] += 1
    ordered = sorted(out, key=lambda t: (TASKS.index(t) if t in TASKS else len(TASKS), t))
    return {task: dict(sorted(out[task].items())) for task in ordered}


def task_source_markdown(card: dict) -> list[str]:
    table = card.get("per_task_source")
    if not table:
        return []
    lines = ["", "## Records per task and source", "", "| task | source | train | validation | test |",
             "|---|---|---:|---:|---:|"]
    for task, sources in table.items():
        lines += [f"| {task} | {source} | {row['train']} | {row['validation']} | {row['test']} |"
                  for source, row in sources.items()]
    return lines


def plot_counts(card: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(card["per_task"])
    fig, ax = plt.subplots(figsize=(8, 0.32 * max(4, len(tasks)) + 1.2), dpi=100)
    left = np.zeros(len(tasks))
    for split, color in zip(SPLITS, ("#4c72b0", "#dd8452", "#55a868"), strict=True):
        values = np.array([card["per_task"][t][split] for t in tasks])
        ax.barh(tasks, values, left=left, label=split, color=color)
        left += values
    ax.invert_yaxis()
    ax.set_xlabel("records")
    ax.set_title("records per task and split")
    ax.legend(loc="lower right")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp")
    # no Software/date metadata: the same build gives a byte-identical PNG
    fig.savefig(tmp, format="png", metadata={"Software": None})
    plt.close(fig)
    os.replace(tmp, path)


def write_card(out_dir: Path, card: dict, plot: bool = True) -> None:
    _atomic_text(out_dir / "card.json", json.dumps(card, ensure_ascii=False, indent=2) + "\n")
    _atomic_text(out_dir / "card.md", card_markdown(card))
    if plot and card["per_task"]:
        plot_counts(card, out_dir / "card.png")


def read_card(directory: str | Path) -> dict:
    from kositp.errors import KositpError

    path = Path(directory) / "card.json"
    if not path.is_file():
        raise KositpError(f"no card.json in {directory}: is it the output of `kositp data build`?")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise KositpError(f"{path} is not valid JSON: {exc}") from None
