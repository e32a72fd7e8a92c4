"""Task-grounded preference pairs (`kositp data pairs`): chosen = a right answer, rejected = a real mistake.

For each held-in instruction record with a gold answer:
1. with a model, its own greedy answer is scored with the evaluation stage's task metric
   (`kositp.eval.suites.tasks.score_example`); an answer the metric marks wrong (invalid format, wrong
   label, or a primary score below `wrong_below`) becomes the rejected reply -- the model learns to
   move away from mistakes it actually makes;
2. otherwise (no model, or the model was right) a rule-based negative is built from the gold answer:
   a flipped 예/아니요 or answerability label, a different option from the prompt's 보기: list, the
   answer truncated mid-way, the answer replaced by an English reply, or a repetitive degenerate reply.
3. the pair is kept only when the task metric ranks it: the chosen answer's primary score must beat the
   rejected one's by at least `min_gap` (a model answer that is wrong only by format, e.g. the right
   option without its 근거 line, scores as well as the gold answer and teaches DPO nothing the metric
   rewards). A model answer that fails this gives way to a rule negative; a record left with no
   grounded negative goes to PREF/rejects.jsonl with its reason and scores.

With `samples` (`--samples N`), the model also draws N answers per record; where one of its answers
(greedy or sampled) is right by the task metric, the pair is on-policy: chosen = its best answer,
rejected = its worst (the greedy one on ties), so DPO compares two replies the model itself gives
instead of a gold text it would not write. Records with no right answer fall back to steps 1-3.

Output: PREF/train.jsonl (+ validation.jsonl when the source has it) in the preference record format,
each pair with its `chosen_score`/`rejected_score`; PREF/rejects.jsonl (every record that gave no pair,
with a reason); PREF/card.json + card.md with the counts per source of the rejected reply, per task,
per rule and per reject reason.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

import typer

from kositp.data.task_names import ANSWERABLE, NO, UNANSWERABLE, YES, split_explanation, with_explanation
from kositp.errors import KositpError

RULES = ("flip_label", "wrong_option", "truncated", "english", "repetitive")
# A pair is kept when chosen beats rejected by at least this much on the task's primary metric (0-1):
# label tasks differ by 0 or 1; on ROUGE-L/token-F1 tasks 0.1 drops near-copies of the gold answer.
MIN_GAP = 0.1
REJECT_REASONS = ("no_gold_answer", "no_negative", "rejected_not_worse")
CLASSIFICATION_KINDS = ("answerability", "objective", "objective_explanation", "yes_no", "yes_no_explanation")


def _stable_index(key: str, n: int) -> int:
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest(), 16) % n


def _flip_yes_no(gold: str) -> str | None:
    answer, evidence = split_explanation(gold)
    if answer.startswith(YES):
        flipped = NO + answer[len(YES):]
    elif answer.startswith(NO):
        flipped = YES + answer[len(NO):]
    else:
        return None
    return with_explanation(flipped, evidence) if evidence else flipped


def _flip_answerability(gold: str) -> str:
    return ANSWERABLE if UNANSWERABLE in gold else UNANSWERABLE


def _wrong_option(gold: str, prompt_text: str, key: str) -> str | None:
    from kositp.eval import answers

    options = answers.parse_options(prompt_text)
    answer, evidence = split_explanation(gold)
    chosen = answers.match_option(answer, options) if options else None
    others = [o for o in options if o != chosen]
    if not options or chosen is None or not others:
        return None
    wrong = others[_stable_index(key, len(others))]
    return with_explanation(wrong, evidence) if evidence else wrong


def _truncated(gold: str) -> str | None:
    text = gold.strip()
    if len(text) < 12:
        return None
    return text[: max(4, len(text) * 2 // 5)].rstrip()


def _english(gold: str) -> str:
    # The seed's "natural output" goal: a correct-looking reply in the wrong language is still wrong.
    return "I'm sorry, but I can only answer this question in English. Please provide more details."


def _repetitive(gold: str) -> str | None:
    words = gold.split()
    if not words:
        return None
    head = " ".join(words[: max(1, min(3, len(words)))])
    return " ".join([head] * 6)


def rule_negative(task: str, gold: str, prompt_text: str, key: str) -> tuple[str, str] | None:
    """(rule name, rejected text) for a record; label flips first for classification tasks."""
    from kositp.eval.suites.tasks import kind_of

    kind = kind_of(task)
    if kind in ("yes_no", "yes_no_explanation"):
        flipped = _flip_yes_no(gold)
        if flipped:
            return "flip_label", flipped
    if kind == "answerability":
        return "flip_label", _flip_answerability(gold)
    if kind in ("objective", "objective_explanation"):
        wrong = _wrong_option(gold, prompt_text, key)
        if wrong:
            return "wrong_option", wrong
    candidates = [(name, fn(gold)) for name, fn in (("truncated", _truncated), ("english", _english),
                                                      ("repetitive", _repetitive))]
    candidates = [(n, t) for n, t in candidates if t and t.strip() != gold.strip()]
    if not candidates:
        return None
    return candidates[_stable_index(key, len(candidates))]


def judge(task: str, prompt: list[dict], output: str, gold: str, finished: bool,
          wrong_below: float) -> tuple[float, bool]:
    """(primary score, wrong) for one answer from one scoring: wrong is the evaluation stage's verdict,
    invalid format or a primary score under the bar."""
    from kositp.eval.suites.tasks import PRIMARY, kind_of, score_example

    result = score_example(task, prompt, output, gold, finished)
    kind = kind_of(task)
    primary = result["scores"].get(PRIMARY.get(kind, "rouge_l"), 0.0)
    if not result["valid"]:
        return primary, True
    return primary, primary < (1.0 if kind in CLASSIFICATION_KINDS else wrong_below)


def model_is_wrong(task: str, prompt: list[dict], output: str, gold: str, finished: bool, wrong_below: float) -> bool:
    """The evaluation stage's verdict on one answer: invalid format, or primary score under the bar."""
    return judge(task, prompt, output, gold, finished, wrong_below)[1]


def primary_score(task: str, prompt: list[dict], answer: str, gold: str, finished: bool = True) -> float:
    """`answer`'s score on the task's primary metric against `gold`: the number the task suite averages."""
    from kositp.eval.suites.tasks import PRIMARY, kind_of, score_example

    return score_example(task, prompt, answer, gold, finished)["scores"][PRIMARY[kind_of(task)]]


def _generator(model_name: str, batch_size: int):
    """The generator evaluation uses (same loader, prompt encoding and batching), so a pair's
    "model answer" is exactly what the eval stage would have scored."""
    from kositp.eval.generate import LocalGenerator
    from kositp.eval.loading import load_for_eval

    return LocalGenerator(load_for_eval(model_name), batch_size=batch_size)


def _split_record(rec: dict[str, Any], where: str) -> tuple[list[dict], str] | None:
    from kositp.train.data import check_messages

    messages = check_messages(rec.get("messages"), where)
    if messages[-1]["role"] != "assistant" or not messages[-1]["content"].strip():
        return None
    return messages[:-1], messages[-1]["content"]


def spread_over_tasks(records: list[dict[str, Any]], n: int | None) -> list[dict[str, Any]]:
    """At most `n` records: an equal share per task, each share spread evenly over that task's records.

    Data files are grouped by source and task, so their first N records cover only a few tasks, and
    preference training on those few tasks drags the others down. Within a task, records come in runs
    of one document and often one label (a KorQuAD article's answerable questions, then the
    unanswerable ones asked of it), so a task's first records are not a sample of it either (the
    public corpus's first 23 answerability records are all unanswerable). Shares are dealt in turns
    (a task with fewer records leaves the rest to the others); each is taken at evenly spaced positions.
    Deterministic: no seed needed.
    """
    if n is None or n >= len(records):
        return records
    by_task: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        by_task.setdefault(str(rec.get("task", "")), []).append(rec)
    queues = list(by_task.values())
    shares = [0] * len(queues)
    left = n
    while left:
        for i, queue in enumerate(queues):
            if shares[i] < len(queue) and left:
                shares[i] += 1
                left -= 1
    picked: list[dict[str, Any]] = []
    for queue, share in zip(queues, shares, strict=True):
        picked += [queue[(2 * k + 1) * len(queue) // (2 * share)] for k in range(share)]
    return picked


def candidates(task: str, prompt: list[dict], gold: str, generated, key: str, wrong_below: float) -> list[dict]:
    """Rejected-reply candidates in order of preference: the model's own mistake, then the rule negative."""
    found = []
    if generated is not None:
        text, finished = generated
        if text.strip() != gold.strip() and model_is_wrong(task, prompt, text, gold, finished, wrong_below):
            found.append({"source": "model", "rule": None, "text": text, "finished": finished})
    rule = rule_negative(task, gold, "\n".join(m["content"] for m in prompt), key)
    if rule is not None:
        found.append({"source": "rule", "rule": rule[0], "text": rule[1], "finished": True})
    return found


def pick_rejected(task: str, prompt: list[dict], gold: str, offered: list[dict],
                  min_gap: float | None) -> tuple[dict | None, list[dict]]:
    """(the first candidate the task metric ranks below the gold answer, the candidates it discarded).

    A candidate is kept when the gold answer's primary score exceeds its own by at least `min_gap`
    (a tie never counts, even at 0); each returned candidate carries `chosen_score`/`rejected_score`.
    With `min_gap` None the first candidate is kept unscored.
    """
    if min_gap is None:
        return (offered[0] if offered else None), []
    chosen_score = primary_score(task, prompt, gold, gold)
    discarded = []
    for candidate in offered:
        scored = candidate | {"chosen_score": chosen_score,
                              "rejected_score": primary_score(task, prompt, candidate["text"], gold,
                                                              candidate["finished"])}
        if chosen_score - scored["rejected_score"] >= max(min_gap, 1e-9):
            return scored, discarded
        discarded.append(scored)
    return None, discarded


def on_policy_pair(task: str, prompt: list[dict], gold: str, answers: list[tuple[str, bool]],
                   wrong_below: float, min_gap: float) -> dict | None:
    """Chosen and rejected both from the model: its greedy answer (first) and its samples, ranked by the task metric.

    chosen: the best-scoring answer the evaluation counts right; rejected: the worst-scoring answer (the
    greedy one wins both ties, so a wrong greedy answer is what the pair pushes away from). None when no
    answer is right or the best does not lead the worst by `min_gap` (a tie never counts): the record
    then falls back to the gold answer as chosen. Both replies come from the model's own distribution, so
    DPO learns which of its answers the metric prefers, not the gold answers' length or style.
    """
    greedy = answers[0][0]
    scored, seen = [], set()
    for text, finished in answers:
        if not text.strip() or text in seen:
            continue
        seen.add(text)
        score, wrong = judge(task, prompt, text, gold, finished, wrong_below)
        scored.append({"text": text, "finished": finished, "greedy": text == greedy, "score": score, "right": not wrong})
    right = [a for a in scored if a["right"]]
    if not right:
        return None
    chosen = max(right, key=lambda a: a["score"])
    rejected = min(scored, key=lambda a: a["score"])
    if chosen["score"] - rejected["score"] < max(min_gap, 1e-9):
        return None
    return {"chosen": chosen, "rejected": rejected}


def _answer_source(answer: dict) -> str:
    return "model" if answer["greedy"] else "model_sample"


def chosen_label(task: str, text: str) -> str | None:
    """The label a chosen reply teaches on a yes/no or answerability task (None on other tasks): the card
    counts them, since DPO on every pair moves such a task towards the label its pairs choose more often."""
    from kositp.eval.suites.tasks import kind_of

    kind = kind_of(task)
    if kind == "answerability":
        return UNANSWERABLE if UNANSWERABLE in text else ANSWERABLE if ANSWERABLE in text else "other"
    if kind in ("yes_no", "yes_no_explanation"):
        answer = split_explanation(text)[0].strip()
        return YES if answer.startswith(YES) else NO if answer.startswith(NO) else "other"
    return None


def _chosen_text(pair: dict[str, Any]) -> str | None:
    chosen = pair.get("chosen")
    if isinstance(chosen, str):
        return chosen
    if isinstance(chosen, list) and chosen and isinstance(chosen[-1], dict):
        content = chosen[-1].get("content")
        return content if isinstance(content, str) else None
    return None  # unpaired or malformed: left to the loader, which says what is wrong


def balance_chosen_labels(pairs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Keep, on each yes/no and answerability task, as many pairs choosing each of its two labels as
    its rarer label has; returns (the pairs kept in their order, how many each task leaves out).

    Trained on every pair, DPO moves such a task towards whichever label its pairs choose more often,
    which is a label prior rather than a reading of the passage. Which of the surplus pairs stay is
    fixed by a hash of the pair's id (or prompt), so a rerun keeps the same ones. Pairs whose chosen
    reply is neither label ("other") and pairs of other tasks are all kept."""
    by_label: dict[tuple[str, str], list[int]] = {}
    for i, pair in enumerate(pairs):
        task, text = str(pair.get("task")), _chosen_text(pair)
        label = chosen_label(task, text) if text is not None else None
        if label is not None and label != "other":
            by_label.setdefault((task, label), []).append(i)
    label_pairs = {YES: NO, NO: YES, ANSWERABLE: UNANSWERABLE, UNANSWERABLE: ANSWERABLE}
    dropped: set[int] = set()
    left_out: Counter = Counter()
    for (task, label), indices in by_label.items():
        keep = len(by_label.get((task, label_pairs[label]), []))
        if len(indices) <= keep:
            continue
        ranked = sorted(indices, key=lambda i: hashlib.sha256(
            str(pairs[i].get("id") or pairs[i].get("prompt")).encode("utf-8")).hexdigest())
        dropped.update(ranked[keep:])
        left_out[task] += len(indices) - keep
    return [p for i, p in enumerate(pairs) if i not in dropped], dict(sorted(left_out.items()))


def build_pairs(
    data: str | Path,
    out: str | Path,
    model: str | None = None,
    splits: tuple[str, ...] = ("train", "validation"),
    max_records: int | None = None,
    max_new_tokens: int = 64,
    batch_size: int = 8,
    wrong_below: float = 0.5,
    min_gap: float | None = MIN_GAP,
    tasks: str = "all",
    samples: int = 0,
    temperature: float = 1.0,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Write preference pairs for `data` (a `kositp data build` directory or a .jsonl file) into `out`.

    `min_gap`: the least lead of the chosen answer over the rejected one on the task's primary metric;
    a tie never counts as a lead, even at 0 (None keeps every pair the rules or the model give, unscored).
    `tasks`: "checkable" reads only the records of tasks whose answer the metric checks.
    `samples`: with a model, draw this many answers per record besides the greedy one (at `temperature`,
    seeded by `seed`); where one of them is right, the pair is on-policy (`on_policy_pair`).
    """
    from kositp.eval.stats import is_checkable
    from kositp.train.data import load_records

    if samples and not model:
        raise KositpError("--samples draws the model's own answers: give --model too")
    if samples and min_gap is None:
        raise KositpError("--samples ranks the model's answers by the task metric: it cannot run with --no-filter")
    if tasks not in ("all", "checkable"):
        raise KositpError(f"--tasks must be all or checkable, not {tasks!r}")
    records = load_records(str(data), splits)
    if not records:
        raise KositpError(f"{data} has none of the splits {', '.join(splits)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    card: dict[str, Any] = {"data": str(data), "model": model, "wrong_below": wrong_below, "min_gap": min_gap,
                            "tasks": tasks, "samples": samples, "splits": {}}
    if samples:
        card |= {"temperature": temperature, "seed": seed}
    generator = _generator(model, batch_size) if model else None
    rejects: list[dict[str, Any]] = []
    for split, recs in records.items():
        if tasks == "checkable":
            recs = [r for r in recs if is_checkable(str(r.get("task", "")))]
        recs = spread_over_tasks(recs, max_records)
        items = []
        reasons: Counter = Counter()
        for rec in recs:
            parsed = _split_record(rec, rec.get("_where", "record"))
            if parsed is None:
                reasons["no_gold_answer"] += 1
                rejects.append({"split": split, "id": rec.get("id"), "task": rec.get("task", ""),
                                "reason": "no_gold_answer"})
                continue
            items.append((rec, *parsed))
        prompts = [p for _, p, _ in items]
        outputs: list = [None] * len(items)
        sampled: list = [[] for _ in items]
        if generator is not None:
            outputs = [(g.text, g.finished) for g in _with_progress(
                f"answering {split} with {model}", len(items), progress,
                lambda step, prompts=prompts: generator.generate(prompts, max_new_tokens, step))]
        if generator is not None and samples:
            sampled = [[(g.text, g.finished) for g in row] for row in _with_progress(
                f"sampling {samples} answers per {split} record", len(items), progress,
                lambda step, prompts=prompts: generator.sample(prompts, max_new_tokens, samples, temperature, seed, step))]
        pairs: list[dict[str, Any]] = []
        by_source, by_chosen, by_task, by_rule, not_worse = (Counter() for _ in range(5))
        labels: dict[str, Counter] = {}
        unfinished = 0
        for (rec, prompt, gold), generated, drawn in zip(items, outputs, sampled, strict=True):
            task = rec.get("task", "")
            key = str(rec.get("id") or json.dumps(prompt, ensure_ascii=False))
            own = on_policy_pair(task, prompt, gold, [generated, *drawn], wrong_below, min_gap) if drawn else None
            if own is not None:
                chosen, picked = own["chosen"], own["rejected"]
                chosen_from, source, rule = _answer_source(chosen), _answer_source(picked), None
                picked = picked | {"chosen_score": chosen["score"], "rejected_score": picked["score"]}
                chosen_text = chosen["text"]
            else:
                offered = candidates(task, prompt, gold, generated, key, wrong_below)
                picked, discarded = pick_rejected(task, prompt, gold, offered, min_gap)
                not_worse.update(c["source"] for c in discarded)
                if picked is None:
                    reason = "rejected_not_worse" if discarded else "no_negative"
                    reasons[reason] += 1
                    reject = {"split": split, "id": rec.get("id"), "task": task, "reason": reason}
                    if discarded:
                        first = discarded[0]
                        reject |= {"rejected_from": first["source"], "rejected": first["text"], "min_gap": min_gap,
                                   "chosen_score": first["chosen_score"], "rejected_score": first["rejected_score"]}
                    rejects.append(reject)
                    continue
                chosen_from, source, rule, chosen_text = "gold", picked["source"], picked["rule"], gold
            if rule:
                by_rule[rule] += 1
            by_source[source] += 1
            by_chosen[chosen_from] += 1
            by_task[task] += 1
            label = chosen_label(task, chosen_text)
            if label is not None:
                labels.setdefault(task, Counter())[label] += 1
            pair = {
                "id": f"{rec.get('id', len(pairs))}-pair", "task": task, "source": rec.get("source", ""),
                "prompt": prompt, "chosen": [{"role": "assistant", "content": chosen_text}],
                "rejected": [{"role": "assistant", "content": picked["text"]}], "chosen_from": chosen_from,
                "rejected_from": source,
            }
            if "chosen_score" in picked:
                pair |= {"chosen_score": round(picked["chosen_score"], 4),
                         "rejected_score": round(picked["rejected_score"], 4)}
            # a model answer cut at max_new_tokens: DPO then compares a whole reply with a fragment
            pair["rejected_finished"] = picked["finished"]
            unfinished += not picked["finished"]
            pairs.append(pair)
        path = out / f"{split}.jsonl"
        path.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs), encoding="utf-8")
        card["splits"][split] = {"records": len(recs), "pairs": len(pairs), "skipped": sum(reasons.values()),
                                 "rejects": dict(reasons), "not_worse_candidates": dict(not_worse),
                                 "chosen_from": dict(by_chosen), "rejected_from": dict(by_source),
                                 "unfinished_rejected": unfinished, "rules": dict(by_rule), "tasks": dict(by_task),
                                 "chosen_labels": {t: dict(c) for t, c in sorted(labels.items())}}
    (out / "rejects.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rejects),
                                       encoding="utf-8")
    (out / "card.json").write_text(json.dumps(card, ensure_ascii=False, indent=2), encoding="utf-8")
    (out / "card.md").write_text(_card_markdown(card), encoding="utf-8")
    return card


def _with_progress(label: str, total: int, enabled: bool, work):
    if not enabled:
        return work(lambda n: None)
    from kositp.progress import StageProgress

    with StageProgress() as bar:
        task = bar.add_task(label, total=total)
        return work(lambda n: bar.advance(task, n))


def _card_markdown(card: dict[str, Any]) -> str:
    gap = card.get("min_gap")
    lines = ["# Preference pairs", "", f"- source data: `{card['data']}`", f"- model: `{card['model'] or 'none'}`",
             f"- a model answer counts as wrong below primary score {card['wrong_below']}",
             f"- a pair is kept when chosen leads rejected by at least {gap} on the task's primary metric"
             if gap is not None else "- pairs not filtered by the task metric (--min-gap off)"]
    if card.get("tasks", "all") != "all":
        lines.append(f"- records of {card['tasks']} tasks only")
    if card.get("samples"):
        lines.append(f"- {card['samples']} sampled answers per record besides the greedy one (temperature "
                     f"{card['temperature']}, seed {card['seed']}): where one of the model's answers is right, "
                     "chosen and rejected are both the model's (`model`: its greedy answer, `model_sample`: a "
                     "sample), the best and the worst by the task metric")
    lines.append("")
    for split, info in card["splits"].items():
        lines += [f"## {split}", "", f"{info['pairs']} pairs from {info['records']} records "
                  f"({info['skipped']} records gave no pair; each is in rejects.jsonl with its reason).", "",
                  "| chosen from | pairs |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in sorted(info.get("chosen_from", {"gold": info["pairs"]}).items())]
        lines += ["", "| rejected from | pairs |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in sorted(info["rejected_from"].items())]
        lines += ["", f"{info['unfinished_rejected']} rejected replies are model answers cut at the token limit "
                  "(`--max-new-tokens`), not finished answers."]
        lines += ["", "| record without a pair: reason | records |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in sorted(info["rejects"].items())] or ["| none | 0 |"]
        lines += ["", "| candidate scoring as well as chosen (discarded), from | candidates |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in sorted(info["not_worse_candidates"].items())] or ["| none | 0 |"]
        lines += ["", "| rule | pairs |", "|---|---|"] + [f"| {k} | {v} |" for k, v in sorted(info["rules"].items())]
        lines += ["", "| task | pairs |", "|---|---|"] + [f"| {k} | {v} |" for k, v in sorted(info["tasks"].items())]
        if info.get("chosen_labels"):
            lines += ["", "Labels the chosen replies teach (DPO on every pair leans a task towards its larger count; "
                      "`balance_labels: true` in the preference recipe trains on equal counts):",
                      "", "| task | chosen label: pairs |", "|---|---|"]
            lines += [f"| {task} | {', '.join(f'{k} {v}' for k, v in sorted(counts.items()))} |"
                      for task, counts in info["chosen_labels"].items()]
        lines.append("")
    return "\n".join(lines)


def pairs_command(
    data: Path = typer.Option(..., "--data", help="`kositp data build` output directory (or one .jsonl file)."),
    out: Path = typer.Option(..., "--out", help="Directory to write train.jsonl / validation.jsonl pairs to."),
    model: str | None = typer.Option(None, "--model", help="Model whose own wrong answers become the rejected "
                                     "replies (tiny, default, a model directory or a training RUN directory). "
                                     "Without it, only rule-based negatives."),
    max_records: int | None = typer.Option(None, "--max-records", min=1, help="Use N records per split: an equal share per task, spread over each task's records."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", min=1, max=4096, help="Answer length limit."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, max=512, help="Prompts generated together."),
    wrong_below: float = typer.Option(0.5, "--wrong-below", min=0.0, max=1.0,
                                      help="Generative tasks: an answer scoring under this is wrong."),
    min_gap: float = typer.Option(MIN_GAP, "--min-gap", min=0.0, max=1.0,
                                  help="Keep a pair only when chosen beats rejected by this much on the task's "
                                  "primary metric; the others go to rejects.jsonl (rejected_not_worse)."),
    no_filter: bool = typer.Option(False, "--no-filter", help="Keep every pair, unscored by the task metric."),
    tasks: str = typer.Option("all", "--tasks", help="all, or checkable: only the records of tasks whose answer "
                              "the task metric checks (labels, options, short answers, keywords, simplification)."),
    splits: str = typer.Option("train,validation", "--splits", help="Comma-separated splits to pair."),
    samples: int = typer.Option(0, "--samples", min=0, max=64, help="With --model: also sample N answers per "
                                "record; where one is right by the task metric, chosen and rejected are both the "
                                "model's own answers (on-policy pairs), else chosen is the gold answer."),
    temperature: float = typer.Option(1.0, "--temperature", min=0.01, max=2.0, help="Sampling temperature."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed."),
) -> None:
    """Build task-grounded preference pairs: chosen = gold (or the model's best answer with --samples), rejected = the model's wrong answer or a rule-based negative."""
    if out.exists() and any(out.glob("*.jsonl")):
        raise KositpError(f"{out} already holds .jsonl files; choose a new --out")
    split_names = tuple(name.strip() for name in splits.split(",") if name.strip())
    if not split_names:
        raise KositpError("--splits names no split")
    card = build_pairs(data, out, model=model, splits=split_names, max_records=max_records,
                       max_new_tokens=max_new_tokens, batch_size=batch_size, wrong_below=wrong_below,
                       min_gap=None if no_filter else min_gap, tasks=tasks, samples=samples,
                       temperature=temperature, seed=seed)
    counts = ", ".join(f"{split}: {info['pairs']} ({info['skipped']} records without a pair)"
                       for split, info in card["splits"].items())
    typer.echo(f"preference pairs written to {out} ({counts}); reasons in {out / 'rejects.jsonl'}")
