"""Your own benchmark from a small YAML file: a `BenchmarkSpec`, one multiple-choice runner, one generative runner.

A spec names the files (a glob over CSV/TSV/JSON/JSONL), how to read a question, its options and
its answer from each record, a prompt template and a metric; no Python is needed:

    # my_quiz.yaml
    name: my_quiz
    kind: multiple_choice           # or: generative
    files: "{benchmarks}/my_quiz/*.csv"
    choices: [A, B, C, D]           # option columns, or one field holding a list
    answer: answer
    answer_format: index1           # index0 | index1 | letter | text
    prompt: "{{ question.strip() }}\nA. {{ A }}\nB. {{ B }}\nC. {{ C }}\nD. {{ D }}\n정답:"
    targets: letters                # the continuation scored for each option: its letter, or its text

Templates are Jinja, like lm-evaluation-harness's `doc_to_text`, rendered over the record's fields
plus `choices` (the options as a list) and `letters`. Multiple-choice is scored by log-likelihood
with the harness's conventions (`kositp.eval.loglik`): acc, acc_norm, and with a `subject` field the
accuracy per subject, the macro average over subjects and per `groups` entry. Generative specs send
the prompt as a chat message and score the reply: `choice` (the option the reply names; none or
several = invalid and wrong), `label` (one of `labels`' surface forms, seed4-style macro-F1),
`exact_match`, `token_f1`, `rouge_l` or `chrf` against the answer text.
"""

from __future__ import annotations

import glob
import json
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from kositp.config import Config
from kositp.errors import KositpError
from kositp.eval import metrics
from kositp.eval.answers import match_label
from kositp.eval.benchmarks import read_table, sample
from kositp.eval.suites import SuiteResult

LETTERS = "ABCDEFGHIJ"
TEXT_METRICS = ("exact_match", "token_f1", "rouge_l", "chrf")


class BenchmarkSpec(Config):
    """One user-defined benchmark (a YAML file; `kositp eval --benchmark FILE`)."""

    name: str = Field(..., pattern=r"^[A-Za-z0-9_.-]+$", description="Name in the report (suite `custom/<name>`).")
    kind: Literal["multiple_choice", "generative"] = Field(..., description="Log-likelihood over the options, "
                                                           "or a generated reply scored by `metric`.")
    files: str = Field(..., description="Glob of the test files (.csv .tsv .json .jsonl); `{benchmarks}` is the "
                       "benchmarks folder, a relative path is relative to the YAML file.")
    choices: list[str] | str | None = Field(None, description="Option fields (columns), or one field holding a "
                                            "list of options.")
    answer: str = Field(..., description="Field holding the answer (or the reference text).")
    answer_format: Literal["index0", "index1", "letter", "text"] = Field(
        "text", description="How the answer names the option: 0- or 1-based index, letter (A-J) or the option text.")
    answer_map: dict[str, str] = Field({}, description="label metric: answer value -> label (e.g. '1': 긍정).")
    prompt: str = Field(..., description="Jinja template of the question over the record's fields, `choices`, "
                        "`letters`.")
    targets: Literal["letters", "texts"] = Field("letters", description="multiple_choice: score each option's "
                                                 "letter or its text as the continuation.")
    target_delimiter: str = Field(" ", description="Between the prompt and a scored continuation (lm-eval's default).")
    subject: str | None = Field(None, description="Field naming the subject: per-subject accuracy and few-shot "
                                "examples from the same subject.")
    groups: dict[str, str] = Field({}, description="subject -> group, for per-group accuracy (e.g. KMMLU's STEM).")
    fewshot_files: str | None = Field(None, description="Glob of the few-shot pool (e.g. the dev split).")
    num_fewshot: int = Field(0, ge=0, le=32, description="Solved examples put before each question (pool order).")
    fewshot_delimiter: str = Field("\n\n", description="Between few-shot examples and the question.")
    skip_empty: list[str] = Field([], description="Records with any of these fields empty are skipped and counted.")
    metric: Literal["acc", "choice", "label", "exact_match", "token_f1", "rouge_l", "chrf"] = Field(
        "acc", description="multiple_choice: acc; generative: choice, label or a text metric.")
    labels: dict[str, list[str]] = Field({}, description="label metric: label -> accepted surface forms in a reply.")
    max_new_tokens: int = Field(32, ge=1, le=8192, description="Generation budget (generative).")
    limit_per: Literal["subject", "benchmark"] = Field("subject", description="--limit samples per subject "
                                                      "(when `subject` is set) or over the whole benchmark.")

    @model_validator(mode="after")
    def _check(self) -> BenchmarkSpec:
        if self.kind == "multiple_choice":
            if self.metric != "acc":
                raise ValueError("multiple_choice benchmarks are scored by acc (log-likelihood)")
            if not self.choices:
                raise ValueError("multiple_choice needs `choices`")
        elif self.metric == "acc":
            raise ValueError("generative benchmarks need metric: choice, label, exact_match, token_f1, rouge_l or chrf")
        if self.metric == "choice" and not self.choices:
            raise ValueError("metric choice needs `choices`")
        if self.metric == "label" and not self.labels:
            raise ValueError("metric label needs `labels` (label -> surface forms)")
        if self.num_fewshot and not self.fewshot_files:
            raise ValueError("num_fewshot needs fewshot_files")
        return self


def load_spec(name_or_path: str | Path) -> tuple[BenchmarkSpec, Path]:
    """A spec from a YAML path or a shipped recipe name (`benchmark/kmmlu`), and the folder it came from."""
    from kositp.config import load_config
    from kositp.recipes import resolve

    path = resolve(name_or_path)
    return load_config(BenchmarkSpec, path), path.parent


# --------------------------------------------------------------------------- reading records


def expand(pattern: str, spec_dir: Path, root: Path | None) -> list[Path]:
    if "{benchmarks}" in pattern:
        if root is None:
            raise KositpError(f"{pattern} needs the benchmarks folder (--benchmarks DIR)")
        pattern = pattern.replace("{benchmarks}", str(root))
    elif not Path(pattern).is_absolute():
        pattern = str(spec_dir / pattern)
    files = sorted(Path(p) for p in glob.glob(pattern))
    if not files:
        raise KositpError(f"no files match {pattern}")
    return files


def read_records(path: Path) -> list[dict]:
    """Records of one file; each gets `_where` (file:line) for error messages and ids."""
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv", ".txt"):
        rows = read_table(path, [], delimiter="\t" if suffix == ".tsv" else None)
        return [{**{k: v for k, v in r.items() if k != "_line"}, "_where": f"{path.name}:{r['_line']}"} for r in rows]
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise KositpError(f"{path} is not UTF-8 text (byte {exc.start})") from None
    if suffix == ".jsonl":
        records = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise KositpError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise KositpError(f"{path}:{number}: expected a JSON object")
            records.append({**record, "_where": f"{path.name}:{number}"})
        return records
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise KositpError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        if isinstance(data, dict) and isinstance(data.get("data"), list):
            data = data["data"]
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise KositpError(f"{path}: expected a list of objects (or {{\"data\": [...]}})")
        return [{**r, "_where": f"{path.name}:#{i}"} for i, r in enumerate(data)]
    raise KositpError(f"{path}: unsupported file type {suffix} (use .csv, .tsv, .json or .jsonl)")


def options_of(spec: BenchmarkSpec, record: dict) -> list[str]:
    if isinstance(spec.choices, str):
        value = record.get(spec.choices)
        if not isinstance(value, list) or not value:
            raise KositpError(f"{record['_where']}: field {spec.choices!r} must be a non-empty list of options")
        return [str(v) for v in value]
    missing = [c for c in spec.choices or [] if c not in record]
    if missing:
        raise KositpError(f"{record['_where']}: missing option field(s) {', '.join(missing)}")
    return [str(record[c]) for c in spec.choices or []]


def answer_index(spec: BenchmarkSpec, record: dict, options: list[str]) -> int:
    value = record.get(spec.answer)
    if value is None:
        raise KositpError(f"{record['_where']}: missing answer field {spec.answer!r}")
    text = str(value).strip()
    try:
        if spec.answer_format in ("index0", "index1"):
            index = int(float(text)) - (spec.answer_format == "index1")
        elif spec.answer_format == "letter":
            index = LETTERS.index(text.upper()) if len(text) == 1 else -1
        else:
            index = [o.strip() for o in options].index(text)
    except ValueError:
        index = -1
    if not 0 <= index < len(options):
        raise KositpError(f"{record['_where']}: answer {value!r} is not a valid {spec.answer_format} "
                          f"for {len(options)} options")
    return index


def template(source: str):
    from jinja2 import StrictUndefined, TemplateSyntaxError
    from jinja2.sandbox import SandboxedEnvironment

    try:
        return SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True).from_string(source)
    except TemplateSyntaxError as exc:
        raise KositpError(f"prompt template: {exc.message} (line {exc.lineno})") from None


def render(compiled, record: dict, options: list[str]) -> str:
    from jinja2 import UndefinedError

    fields = {k: v for k, v in record.items() if not k.startswith("_")}
    try:
        return compiled.render(**fields, choices=options, letters=list(LETTERS[:len(options)]))
    except UndefinedError as exc:
        raise KositpError(f"{record['_where']}: prompt template: {exc.message}") from None


def load_items(spec: BenchmarkSpec, spec_dir: Path, root: Path | None, limit: int | None,
               seed: int) -> tuple[list[dict], int]:
    """(items, skipped_empty): each item has id, subject, record, options, gold; seeded --limit sample."""
    items, skipped = [], 0
    for path in expand(spec.files, spec_dir, root):
        for record in read_records(path):
            if any(not str(record.get(f) or "").strip() for f in spec.skip_empty):
                skipped += 1
                continue
            options = options_of(spec, record) if spec.choices else []
            if spec.metric == "label":
                raw = str(record.get(spec.answer, "")).strip()
                gold = spec.answer_map.get(raw, raw)
                if gold not in spec.labels:
                    raise KositpError(f"{record['_where']}: answer {raw!r} maps to no label of {list(spec.labels)}")
            elif options:
                gold = answer_index(spec, record, options)
            else:
                gold = str(record.get(spec.answer) or "")
            subject = str(record.get(spec.subject, "")).strip() if spec.subject else spec.name
            items.append({"id": record["_where"], "subject": subject, "record": record, "options": options,
                          "gold": gold})
    if spec.subject and spec.limit_per == "subject":
        by_subject: dict[str, list[dict]] = {}
        for item in items:
            by_subject.setdefault(item["subject"], []).append(item)
        items = [i for s, group in by_subject.items() for i in sample(group, limit, seed, f"{spec.name}-{s}")]
    else:
        items = sample(items, limit, seed, spec.name)
    return items, skipped


def fewshot_pool(spec: BenchmarkSpec, spec_dir: Path, root: Path | None) -> dict[str, list[dict]]:
    pool: dict[str, list[dict]] = {}
    if not spec.num_fewshot:
        return pool
    for path in expand(spec.fewshot_files or "", spec_dir, root):
        for record in read_records(path):
            subject = str(record.get(spec.subject, "")).strip() if spec.subject else spec.name
            pool.setdefault(subject, []).append(record)
    return pool


def target_text(spec: BenchmarkSpec, options: list[str], index: int) -> str:
    return LETTERS[index] if spec.targets == "letters" else options[index]


def context_for(spec: BenchmarkSpec, compiled, item: dict, pool: dict[str, list[dict]]) -> str:
    """The prompt with `num_fewshot` solved examples of the same subject first (lm-eval's layout)."""
    question = render(compiled, item["record"], item["options"])
    shots = []
    for record in pool.get(item["subject"], [])[:spec.num_fewshot]:
        options = options_of(spec, record)
        answer = target_text(spec, options, answer_index(spec, record, options))
        shots.append(render(compiled, record, options) + spec.target_delimiter + answer)
    if spec.num_fewshot and len(shots) < spec.num_fewshot:
        raise KositpError(f"{spec.name}: subject {item['subject']!r} has {len(shots)} few-shot examples, "
                          f"{spec.num_fewshot} asked")
    return spec.fewshot_delimiter.join([*shots, question])


# --------------------------------------------------------------------------- scoring


def first_argmax(values: list[float]) -> int:
    return max(range(len(values)), key=lambda i: (values[i], -i))


def grouped_accuracy(spec: BenchmarkSpec, items: list[dict], correct: list[float]) -> dict:
    """acc (micro, over questions), per-subject acc, macro acc (mean over subjects) and per-group acc."""
    per_subject: dict[str, list[float]] = {}
    for item, c in zip(items, correct, strict=True):
        per_subject.setdefault(item["subject"], []).append(c)
    result = {"n": len(items), "acc": metrics.mean(correct)}
    if spec.subject:
        subjects = {s: {"n": len(v), "acc": metrics.mean(v)} for s, v in sorted(per_subject.items())}
        result["macro_acc"] = metrics.mean([e["acc"] for e in subjects.values()])
        result["per_subject"] = subjects
        if spec.groups:
            group_scores: dict[str, list[float]] = {}
            for item, c in zip(items, correct, strict=True):
                group_scores.setdefault(spec.groups.get(item["subject"], "other"), []).append(c)
            result["per_group"] = {g: {"n": len(v), "acc": metrics.mean(v)} for g, v in sorted(group_scores.items())}
    return result


def run_multiple_choice(spec: BenchmarkSpec, spec_dir: Path, root: Path | None, scorer, limit: int | None,
                        seed: int, progress=None, suite: str = "custom") -> tuple[dict, list[dict]]:
    """Log-likelihood of each option's continuation; `scorer(requests, advance) -> list[Scored]`."""
    items, skipped = load_items(spec, spec_dir, root, limit, seed)
    compiled, pool = template(spec.prompt), fewshot_pool(spec, spec_dir, root)
    requests, spans, contexts = [], [], []
    for item in items:
        context = context_for(spec, compiled, item, pool)
        contexts.append(context)
        spans.append((len(requests), len(item["options"])))
        requests.extend((context, spec.target_delimiter + target_text(spec, item["options"], i))
                        for i in range(len(item["options"])))
    if progress:
        progress.start(f"{suite}/{spec.name}: scoring", len(requests))
    scored = scorer(requests, progress.advance if progress else None) if requests else []
    correct, correct_norm, examples = [], [], []
    for item, context, (start, n) in zip(items, contexts, spans, strict=True):
        lls = [s.logprob for s in scored[start:start + n]]
        pred = first_argmax(lls)
        lengths = [float(len(target_text(spec, item["options"], i))) for i in range(n)]
        pred_norm = first_argmax([x / max(1.0, k) for x, k in zip(lls, lengths, strict=True)])
        correct.append(float(pred == item["gold"]))
        correct_norm.append(float(pred_norm == item["gold"]))
        examples.append({
            "suite": suite, "task": spec.name, "id": item["id"], "subject": item["subject"], "prompt": context,
            "output": target_text(spec, item["options"], pred), "gold": target_text(spec, item["options"], item["gold"]),
            "valid": True, "scores": {"correct": correct[-1], "correct_norm": correct_norm[-1]},
            "loglikelihoods": [round(x, 4) for x in lls],
        })
    result = grouped_accuracy(spec, items, correct) | {"acc_norm": metrics.mean(correct_norm),
                                                      "skipped_empty": skipped}
    return result, examples


_CHOICE_LEAD_IN = re.compile(r"^\s*(?:정답|답변|답|answer)\s*(?:은|는|:|：)?\s*", re.I)


def _letters_in(text: str, n: int) -> set[str]:
    """Option letters standing alone (not inside a Latin word): "B", "(B)", "B입니다" count, "Bus" does not."""
    return set(re.findall(rf"(?<![A-Za-z])([{LETTERS[:n]}])(?![A-Za-z])", text))


def parse_choice(text: str, options: list[str]) -> int | None:
    """The option a reply names, else None: one letter (B, (B), 정답: B, B입니다) in its first line, else one
    letter in the whole reply, else a bare option number (2, 2번), else exactly one option's text."""
    cleaned = text.replace("*", "").strip()
    n = len(options)
    first = _CHOICE_LEAD_IN.sub("", cleaned.splitlines()[0] if cleaned else "")
    for scope in (first, cleaned):
        found = _letters_in(scope, n)
        if len(found) == 1:
            return LETTERS.index(found.pop())
        if len(found) > 1:
            return None
    number = re.match(r"^\s*\(?([1-9])\s*(?:번|\)|\.|$)", first)
    if number and int(number.group(1)) <= n:
        return int(number.group(1)) - 1
    named = [i for i, option in enumerate(options) if len(option.strip()) >= 2 and option.strip() in cleaned]
    return named[0] if len(named) == 1 else None


def score_text(metric: str, prediction: str, reference: str) -> float:
    return {"exact_match": metrics.exact_match, "token_f1": metrics.token_f1, "rouge_l": metrics.rouge_l,
            "chrf": lambda p, r: metrics.chrf(p, r) / 100}[metric](prediction, reference)


def run_generative(spec: BenchmarkSpec, spec_dir: Path, root: Path | None, generator, limit: int | None,
                   seed: int, progress=None, suite: str = "custom") -> tuple[dict, list[dict]]:
    items, skipped = load_items(spec, spec_dir, root, limit, seed)
    compiled, pool = template(spec.prompt), fewshot_pool(spec, spec_dir, root)
    conversations = [[{"role": "user", "content": context_for(spec, compiled, item, pool)}] for item in items]
    if progress:
        progress.start(f"{suite}/{spec.name}: generating", len(items))
    generations = generator.generate(conversations, spec.max_new_tokens, progress.advance if progress else None)
    examples, preds, scores = [], [], []
    for item, messages, gen in zip(items, conversations, generations, strict=True):
        if spec.metric == "choice":
            pred = parse_choice(gen.text, item["options"])
            score, gold_text = float(pred == item["gold"]), LETTERS[item["gold"]]
            parsed = LETTERS[pred] if pred is not None else None
        elif spec.metric == "label":
            parsed = match_label(gen.text, {k: tuple(v) for k, v in spec.labels.items()})
            score, gold_text = float(parsed == item["gold"]), item["gold"]
        else:
            gold_text = item["options"][item["gold"]] if item["options"] else item["gold"]
            parsed, score = gen.text, score_text(spec.metric, gen.text, gold_text)
        preds.append(parsed)
        scores.append(score)
        examples.append({
            "suite": suite, "task": spec.name, "id": item["id"], "subject": item["subject"],
            "prompt": generator.prompt_text(messages), "output": gen.text, "gold": gold_text,
            "valid": parsed is not None, "parsed": parsed if spec.metric in ("choice", "label") else None,
            "scores": {("correct" if spec.metric in ("choice", "label") else spec.metric): score},
        })
    result = {"n": len(items), "skipped_empty": skipped}
    if spec.metric in TEXT_METRICS:
        result[spec.metric] = metrics.mean(scores)
    else:
        result["invalid_rate"] = preds.count(None) / len(preds) if preds else 0.0
    if spec.metric == "choice":
        result |= grouped_accuracy(spec, items, scores)
    if spec.metric == "label":
        golds, labels = [i["gold"] for i in items], list(spec.labels)
        valid = [(g, p) for g, p in zip(golds, preds, strict=True) if p is not None]
        result |= {
            "accuracy": metrics.mean(scores),
            "macro_f1": metrics.macro_f1(golds, [p or "<invalid>" for p in preds], labels=labels),
            "macro_f1_valid_only": metrics.macro_f1([g for g, _ in valid], [p for _, p in valid]) if valid else 0.0,
        }
    return result, examples


def primary(spec: BenchmarkSpec) -> str:
    """The headline metric of a spec's results."""
    return {"acc": "acc", "choice": "acc", "label": "macro_f1"}.get(spec.metric, spec.metric)


def run(specs: list[str], root: Path | None, generator, scorer, limit: int | None, seed: int,
        progress=None) -> SuiteResult:
    """Suite `custom`: every spec given by --benchmark, each reported under its own name."""
    per_task, examples, settings = {}, [], {"specs": {}}
    for given in specs:
        spec, spec_dir = load_spec(given)
        if spec.name in per_task:
            raise KositpError(f"two benchmarks are named {spec.name!r}")
        if spec.kind == "multiple_choice":
            if scorer is None:
                raise KositpError(f"{spec.name}: multiple_choice benchmarks need log-likelihoods (--model, not --api)")
            result, found = run_multiple_choice(spec, spec_dir, root, scorer, limit, seed, progress)
        else:
            result, found = run_generative(spec, spec_dir, root, generator, limit, seed, progress)
        per_task[spec.name] = result | {"primary": primary(spec)}
        examples += found
        settings["specs"][spec.name] = spec.model_dump(mode="json")
    summary = {"mean_primary": metrics.mean([e[e["primary"]] for e in per_task.values()])}
    return SuiteResult("custom", {"per_task": per_task, "summary": summary}, examples, settings | {"limit": limit})
