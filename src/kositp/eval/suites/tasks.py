"""Suite `tasks`: the held-out test split of `kositp data build`, one metric family per task type.

| kind            | tasks                                             | metrics                                   |
|-----------------|---------------------------------------------------|-------------------------------------------|
| answerability   | answerability_classification                      | accuracy (answerable vs 답변할 수 없음)     |
| objective       | *_qa_objective                                    | accuracy (the option picked)              |
| yes_no          | *_qa_yes_no                                       | accuracy (예/아니요)                        |
| *_explanation   | extractive_qa_{objective,yes_no}_explanation       | accuracy + evidence ROUGE-L               |
| short           | *_qa_short, table_qa_short                        | exact match, morpheme token F1            |
| keywords        | keyword_tagging                                   | keyword-set F1                            |
| simplification  | text_simplification                               | ROUGE-L, chrF, ≤50-character compliance   |
| title / long    | summaries, titles, long answers, generation tasks | morpheme ROUGE-L, chrF                    |

Every task also gets `valid_rate`: the share of outputs in the task's answer format. Invalid
outputs stay in every average (as wrong answers); nothing is dropped.

Generation budget (`task_budget`): `references` gives each task its own `max_new_tokens`, derived
from that task's gold answers in the whole test split (a task-level setting like lm-eval's
per-task `max_gen_toks`, never per example, and the same under any --limit); `fixed` gives every
task the configured `max_new_tokens`, which also caps the per-task budgets.
"""

from __future__ import annotations

import json
import math
import random
from collections import defaultdict
from pathlib import Path

from kositp.data.task_names import (
    ANSWERABLE,
    SIMPLIFICATION_MAX_CHARS,
    TASKS,
    UNANSWERABLE,
    split_explanation,
)
from kositp.errors import KositpError
from kositp.eval import answers, metrics
from kositp.eval.suites import SuiteResult

KIND: dict[str, str] = {
    "answerability_classification": "answerability",
    "abstractive_qa_objective": "objective",
    "extractive_qa_objective": "objective",
    "extractive_qa_objective_explanation": "objective_explanation",
    "abstractive_qa_yes_no": "yes_no",
    "extractive_qa_yes_no": "yes_no",
    "extractive_qa_yes_no_explanation": "yes_no_explanation",
    "abstractive_qa_short": "short",
    "extractive_qa_short": "short",
    "table_qa_short": "short",
    "keyword_tagging": "keywords",
    "text_simplification": "simplification",
    "title_generation": "title",
    "table2title": "title",
}
# The remaining tasks (summaries, long answers, completion, composition, expansion, paraphrase,
# title2contents) are free generation.
PRIMARY: dict[str, str] = {
    "answerability": "accuracy",
    "objective": "accuracy",
    "objective_explanation": "accuracy",
    "yes_no": "accuracy",
    "yes_no_explanation": "accuracy",
    "short": "token_f1",
    "keywords": "keyword_f1",
    "simplification": "rouge_l",
    "title": "rouge_l",
    "long": "rouge_l",
}
# Kinds scored by resemblance to a reference rather than against an answer that can be checked.
OPEN_ENDED_KINDS = ("title", "long")
SHORT_ANSWER_MAX_CHARS = 200  # a "short answer" longer than this is not in the short-answer format
KEYWORD_MAX_CHARS = 30
# A right answer is seldom much longer than the task's longest gold answer: ×1.5 + 16 tokens leaves room
# for other wording, another tokenization and the end-of-turn token, and cuts only rambling.
BUDGET_FACTOR = 1.5
BUDGET_SLACK = 16
BUDGET_RULE = f"min(max_new_tokens, ceil({BUDGET_FACTOR} × the task's longest gold answer in tokens) + {BUDGET_SLACK})"


def kind_of(task: str) -> str:
    return KIND.get(task, "long")


def load_test_split(data: Path) -> list[dict]:
    """Records of DIR/test.jsonl (or a .jsonl path), checked line by line with the line number in errors."""
    path = data / "test.jsonl" if data.is_dir() else data
    if not path.is_file():
        raise KositpError(f"no test split at {path} (run `kositp data build --out DIR` and pass --data DIR)")
    records = []
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, 1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                raise KositpError(f"{path}:{number}: not UTF-8 text") from None
            except json.JSONDecodeError as exc:
                raise KositpError(f"{path}:{number}: malformed JSON ({exc.msg})") from None
            messages = record.get("messages") if isinstance(record, dict) else None
            if not isinstance(messages, list) or len(messages) < 2 or not all(
                isinstance(m, dict) and isinstance(m.get("content"), str) and "role" in m for m in messages
            ):
                raise KositpError(f"{path}:{number}: 'messages' must be a list of {{role, content}} (2 or more)")
            if messages[-1]["role"] != "assistant":
                raise KositpError(f"{path}:{number}: the last message must be the assistant's gold answer")
            if not isinstance(record.get("task"), str):
                raise KositpError(f"{path}:{number}: missing field 'task'")
            record.setdefault("id", f"line{number}")
            records.append(record)
    if not records:
        raise KositpError(f"{path} holds no records")
    return records


def select(records: list[dict], limit: int | None, seed: int) -> list[dict]:
    """At most `limit` records per task, a seeded sample kept in file order."""
    if not limit:
        return records
    by_task: dict[str, list[int]] = defaultdict(list)
    for index, record in enumerate(records):
        by_task[record["task"]].append(index)
    keep: set[int] = set()
    for task in sorted(by_task):
        indices = by_task[task]
        keep.update(indices if len(indices) <= limit else random.Random(f"{seed}:{task}").sample(indices, limit))
    return [r for i, r in enumerate(records) if i in keep]


def task_budgets(records: list[dict], count_tokens, max_new_tokens: int, mode: str = "references") -> dict[str, int]:
    """max_new_tokens per task: `fixed`, or by BUDGET_RULE from every record's gold answer (`references`)."""
    if mode == "fixed":
        return {task: max_new_tokens for task in sorted({r["task"] for r in records})}
    if mode != "references":
        raise KositpError(f"unknown task_budget {mode!r} (references or fixed)")
    longest: dict[str, int] = defaultdict(int)
    for record in records:
        n = count_tokens(record["messages"][-1]["content"])
        longest[record["task"]] = max(longest[record["task"]], n)
    return {task: min(max_new_tokens, math.ceil(BUDGET_FACTOR * n) + BUDGET_SLACK) for task, n in sorted(longest.items())}


def _user_text(messages: list[dict]) -> str:
    return "\n".join(m["content"] for m in messages if m["role"] != "assistant")


def score_example(task: str, prompt_messages: list[dict], output: str, gold: str, finished: bool) -> dict:
    """The scores of one output; `valid` says whether it is in the task's answer format."""
    kind = kind_of(task)
    empty = not metrics.normalize(output)
    clean = not empty and not answers.leaks_template(output)
    scores: dict[str, float] = {}
    if kind == "answerability":
        pred = answers.parse_answerability(output)
        gold_class = UNANSWERABLE if answers.is_unanswerable(gold) else ANSWERABLE
        scores["accuracy"] = float(pred == gold_class)
        valid = pred is not None and clean
    elif kind in ("objective", "objective_explanation"):
        answer_text, evidence = split_explanation(output)
        gold_answer, gold_evidence = split_explanation(gold)
        options = answers.parse_options(_user_text(prompt_messages))
        if options:
            picked = answers.match_option(answer_text, options)
            gold_option = answers.match_option(gold_answer, options) or gold_answer
            scores["accuracy"] = float(picked is not None and picked == gold_option)
            valid = picked is not None
        else:  # the prompt's options could not be parsed: fall back to the answer text itself
            scores["accuracy"] = metrics.exact_match(answer_text, gold_answer)
            valid = bool(metrics.normalize(answer_text))
        if kind == "objective_explanation":
            scores["evidence_rouge_l"] = metrics.rouge_l(evidence or "", gold_evidence or "")
            valid = valid and evidence is not None
        valid = valid and clean
    elif kind in ("yes_no", "yes_no_explanation"):
        answer_text, evidence = split_explanation(output)
        gold_answer, gold_evidence = split_explanation(gold)
        pred = answers.parse_yes_no(answer_text)
        scores["accuracy"] = float(pred is not None and pred == answers.parse_yes_no(gold_answer))
        valid = pred is not None and clean
        if kind == "yes_no_explanation":
            scores["evidence_rouge_l"] = metrics.rouge_l(evidence or "", gold_evidence or "")
            valid = valid and evidence is not None
    elif kind == "short":
        scores["exact_match"] = metrics.exact_match(output, gold)
        scores["token_f1"] = metrics.token_f1(output, gold)
        valid = clean and finished and len(output.strip()) <= SHORT_ANSWER_MAX_CHARS
    elif kind == "keywords":
        scores["keyword_f1"] = metrics.keyword_f1(output, gold)
        keywords = metrics.split_keywords(output)
        valid = clean and bool(keywords) and all(len(k) <= KEYWORD_MAX_CHARS for k in keywords)
    else:
        scores["rouge_l"] = metrics.rouge_l(output, gold)
        scores["chrf"] = metrics.chrf(output, gold)
        valid = clean and finished
        if kind == "simplification":
            scores["within_50_chars"] = float(not empty and len(output.strip()) <= SIMPLIFICATION_MAX_CHARS)
        if kind == "title":
            valid = valid and "\n" not in output.strip()
    return {"valid": bool(valid), "scores": scores}


def aggregate(examples: list[dict]) -> dict:
    """Per-task means of every score, the valid rate, and a summary over tasks."""
    by_task: dict[str, list[dict]] = defaultdict(list)
    for example in examples:
        by_task[example["task"]].append(example)
    per_task = {}
    for task in sorted(by_task, key=lambda t: (TASKS.index(t) if t in TASKS else len(TASKS), t)):
        rows = by_task[task]
        names = sorted({name for row in rows for name in row["scores"]})
        kind = kind_of(task)
        entry = {"kind": kind, "primary": PRIMARY[kind], "n": len(rows)}
        entry |= {name: metrics.mean([row["scores"][name] for row in rows]) for name in names}
        entry["valid_rate"] = metrics.mean([float(row["valid"]) for row in rows])
        per_task[task] = entry
    primaries = [entry[entry["primary"]] for entry in per_task.values()]
    summary = {
        "n_tasks": len(per_task),
        "n": len(examples),
        "mean_primary": metrics.mean(primaries),
        # every record counts once: a task with 2 test records moves it as little as it should
        "record_mean_primary": metrics.mean([e["scores"][PRIMARY[kind_of(e["task"])]] for e in examples]),
        "valid_rate": metrics.mean([float(e["valid"]) for e in examples]),
        "tasks_missing": [t for t in TASKS if t not in per_task],
    }
    return {"per_task": per_task, "summary": summary}


def run(generator, data: Path, limit: int | None, seed: int, max_new_tokens: int, progress=None,
        task_budget: str = "references") -> SuiteResult:
    split = load_test_split(data)
    budgets = task_budgets(split, generator.count_tokens, max_new_tokens, task_budget)
    records = select(split, limit, seed)
    prompts = [r["messages"][:-1] for r in records]
    if progress:
        progress.start("tasks: generating", len(records))
    generations = generator.generate(prompts, [budgets[r["task"]] for r in records],
                                     progress.advance if progress else None)
    examples = []
    for record, messages, gen in zip(records, prompts, generations, strict=True):
        gold = record["messages"][-1]["content"]
        scored = score_example(record["task"], messages, gen.text, gold, gen.finished)
        examples.append({
            "suite": "tasks",
            "task": record["task"],
            "id": record["id"],
            "prompt": generator.prompt_text(messages),
            "output": gen.text,
            "gold": gold,
            "finished": gen.finished,
            "n_tokens": gen.n_tokens,
            **scored,
        })
    cut: dict[str, int] = defaultdict(int)
    for example in examples:
        cut[example["task"]] += not example["finished"]
    settings = {"data": str(data), "limit_per_task": limit, "max_new_tokens": max_new_tokens,
                "task_budget": task_budget, "budget_rule": BUDGET_RULE if task_budget == "references" else None,
                "max_new_tokens_per_task": budgets,
                "cut_by_budget": {task: cut[task] for task in sorted(cut)}}
    return SuiteResult("tasks", aggregate(examples), examples, settings)
