"""Suite `judge`: LogicKor and KoMT-Bench, two-turn answers scored 1-10 by an LLM judge.

The model answers each question's first turn, then the second with its own first answer in the
conversation. Any OpenAI-compatible endpoint judges (`--judge-url`, `--judge-model`; the key from
`judge_key_file` or `$KOSITP_JUDGE_KEY`, never written anywhere). The judge prompts are KoMT-Bench's
Korean single-answer prompts (`komt_bench/judge_prompts_ko.jsonl`): `single-v1` for turn 1,
`single-v1-multi-turn` for turn 2, and their `-math-` versions where the question has a reference
answer (KoMT-Bench: GPT-4's references for math, reasoning and coding; LogicKor: its own
`references`). LogicKor's own judge prompt lives in its evaluator code, not in its data files, so
both sets use the same prompts here; the report names them.

A judgment counts only when it holds exactly one score in `[[n]]` form with 1 <= n <= 10 (several
different `[[n]]` or none: unparsable); unparsable judgments and failed judge requests are counted
and reported, never dropped. Judgments are cached in `$KOSITP_HOME/judge-cache.jsonl`, keyed by the
judge model and the exact messages, so a re-run pays only for what changed.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kositp.errors import KositpError
from kositp.eval import metrics
from kositp.eval.benchmarks import sample
from kositp.eval.suites import SuiteResult

PROMPTS_FILE = "komt_bench/judge_prompts_ko.jsonl"
SETS = {"logickor": "logickor/questions.jsonl", "komt": "komt_bench/question_ko.jsonl"}
KOMT_REFERENCES = "komt_bench/reference_answer_ko/gpt-4.jsonl"
KOMT_REFERENCE_CATEGORIES = ("math", "reasoning", "coding")
SCORE = re.compile(r"\[\[\s*(\d+(?:\.\d+)?)\s*\]\]")


def _jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise KositpError(f"benchmark file not found: {path}")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise KositpError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
    return rows


def load_prompts(root: Path) -> dict[str, dict]:
    prompts = {p["name"]: p for p in _jsonl(root / PROMPTS_FILE)}
    needed = ["single-v1", "single-math-v1", "single-v1-multi-turn", "single-math-v1-multi-turn"]
    missing = [n for n in needed if n not in prompts]
    if missing:
        raise KositpError(f"{root / PROMPTS_FILE} lacks judge prompt(s) {', '.join(missing)}")
    return {n: {"system_prompt": prompts[n]["system_prompt"], "prompt_template": prompts[n]["prompt_template"]}
            for n in needed}


def load_questions(root: Path, name: str) -> list[dict]:
    """Questions as {id, category, turns: [q1, q2], references: [r1, r2] or None}."""
    questions = []
    if name == "logickor":
        for row in _jsonl(root / SETS[name]):
            refs = row.get("references") or [None, None]
            questions.append({"id": f"logickor:{row['id']}", "category": row["category"], "turns": row["questions"][:2],
                              "references": refs if any(refs) else None})
        return questions
    references = {}
    if (root / KOMT_REFERENCES).is_file():
        for row in _jsonl(root / KOMT_REFERENCES):
            references[row["question_id"]] = row["choices"][0]["turns"]
    for row in _jsonl(root / SETS[name]):
        refs = None
        if row["category"] in KOMT_REFERENCE_CATEGORIES:
            refs = row.get("reference") or references.get(row["question_id"])
        questions.append({"id": f"komt:{row['question_id']}", "category": row["category"], "turns": row["turns"][:2],
                          "references": refs})
    return questions


def parse_score(judgment: str) -> float | None:
    """The one `[[n]]` score (1-10) in a judgment, else None."""
    found = {float(m) for m in SCORE.findall(judgment or "")}
    if len(found) != 1:
        return None
    value = found.pop()
    return value if 1 <= value <= 10 else None


def judge_messages(prompts: dict, question: dict, answers: list[str], turn: int) -> tuple[str, list[dict]]:
    """(prompt name, chat messages) judging `turn` (1 or 2) of one answered question."""
    refs = question["references"]
    use_ref = bool(refs) and bool(refs[turn - 1] if len(refs) >= turn else None)
    name = ("single-math-v1" if use_ref else "single-v1") + ("-multi-turn" if turn == 2 else "")
    fields = {"question": question["turns"][0], "answer": answers[0],
              "question_1": question["turns"][0], "question_2": question["turns"][1],
              "answer_1": answers[0], "answer_2": answers[1] if len(answers) > 1 else ""}
    if use_ref:
        fields |= {"ref_answer_1": refs[0] or "", "ref_answer_2": (refs[1] if len(refs) > 1 else "") or ""}
    prompt = prompts[name]
    user = prompt["prompt_template"].format(**fields)
    return name, [{"role": "system", "content": prompt["system_prompt"]}, {"role": "user", "content": user}]


class JudgeCache:
    """Append-only JSONL of judgments keyed by a hash of the judge model and the messages."""

    def __init__(self, path: Path):
        self.path = path
        self.lock = threading.Lock()
        self.entries: dict[str, str] = {}
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                    self.entries[entry["key"]] = entry["judgment"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # a torn last line from an interrupted run; that judgment is asked again

    @staticmethod
    def key(model: str, messages: list[dict], max_tokens: int) -> str:
        blob = json.dumps([model, messages, max_tokens], ensure_ascii=False, sort_keys=True)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def get(self, key: str) -> str | None:
        return self.entries.get(key)

    def put(self, key: str, judgment: str) -> None:
        with self.lock:
            self.entries[key] = judgment
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps({"key": key, "judgment": judgment}, ensure_ascii=False) + "\n")


class Judge:
    """An OpenAI-compatible judge: temperature 0, cached, errors counted rather than raised."""

    def __init__(self, url: str, model: str | None, api_key: str, cache: JudgeCache, max_tokens: int = 1024,
                 concurrency: int = 4, timeout_s: float = 300.0):
        from openai import OpenAI

        self.url = url.rstrip("/")
        self.client = OpenAI(base_url=self.url, api_key=api_key, timeout=timeout_s, max_retries=2)
        self.cache, self.max_tokens, self.concurrency = cache, max_tokens, max(1, concurrency)
        self.model = model or self._first_model()
        self.requests = self.cache_hits = 0

    def _first_model(self) -> str:
        import openai

        try:
            models = self.client.models.list().data
        except openai.APIConnectionError:
            raise KositpError(f"cannot reach the judge at {self.url} (is it running?)") from None
        except openai.APIStatusError as exc:
            raise KositpError(f"the judge at {self.url} answered {exc.status_code} to /models") from None
        if not models:
            raise KositpError(f"the judge at {self.url} lists no models; pass --judge-model")
        return models[0].id

    def one(self, messages: list[dict]) -> tuple[str | None, str | None]:
        """(judgment, error): exactly one is None."""
        import openai

        key = JudgeCache.key(self.model, messages, self.max_tokens)
        cached = self.cache.get(key)
        if cached is not None:
            self.cache_hits += 1
            return cached, None
        self.requests += 1
        try:
            response = self.client.chat.completions.create(model=self.model, messages=messages, temperature=0.0,
                                                           max_tokens=self.max_tokens)
        except openai.APIConnectionError:
            return None, "connection error"
        except openai.APIStatusError as exc:
            return None, f"HTTP {exc.status_code}: {str(exc.message)[:200]}"
        judgment = response.choices[0].message.content or ""
        self.cache.put(key, judgment)
        return judgment, None

    def many(self, batches: list[list[dict]], progress=None) -> list[tuple[str | None, str | None]]:
        def task(messages):
            result = self.one(messages)
            if progress:
                progress(1)
            return result

        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(task, batches))

    def describe(self) -> dict:
        return {"url": self.url, "model": self.model, "max_tokens": self.max_tokens, "temperature": 0.0}


def answer_two_turns(generator, questions: list[dict], max_new_tokens: int, progress=None, label: str = ""):
    """First answers for every question, then second answers with the first in the conversation."""
    first_convs = [[{"role": "user", "content": q["turns"][0]}] for q in questions]
    if progress:
        progress.start(f"judge/{label}: answering turn 1", len(questions))
    first = generator.generate(first_convs, max_new_tokens, progress.advance if progress else None)
    second_convs = [conv + [{"role": "assistant", "content": g.text}, {"role": "user", "content": q["turns"][1]}]
                    for conv, g, q in zip(first_convs, first, questions, strict=True)]
    if progress:
        progress.start(f"judge/{label}: answering turn 2", len(questions))
    second = generator.generate(second_convs, max_new_tokens, progress.advance if progress else None)
    return first, second, second_convs


def summarize(records: list[dict]) -> dict:
    scored = [r["score"] for r in records if r["score"] is not None]
    per_category: dict[str, list[float]] = {}
    for r in records:
        if r["score"] is not None:
            per_category.setdefault(r["category"], []).append(r["score"])
    return {
        "n_judgments": len(records),
        "n_scored": len(scored),
        "unparsable": sum(r["score"] is None and r["error"] is None for r in records),
        "judge_errors": sum(r["error"] is not None for r in records),
        "mean_score": metrics.mean(scored),
        "scored_rate": len(scored) / len(records) if records else 0.0,
        "per_turn": {f"turn{t}": metrics.mean([r["score"] for r in records if r["turn"] == t and r["score"] is not None])
                     for t in (1, 2)},
        "per_category": {c: {"n": len(v), "mean": metrics.mean(v)} for c, v in sorted(per_category.items())},
    }


def run(generator, judge: Judge, root: Path, sets: list[str], limit: int | None, seed: int, max_new_tokens: int,
        progress=None) -> SuiteResult:
    prompts = load_prompts(root)
    per_task, examples = {}, []
    for name in sets:
        questions = sample(load_questions(root, name), limit, seed, f"judge-{name}")
        first, second, second_convs = answer_two_turns(generator, questions, max_new_tokens, progress, name)
        requests = []
        for q, a1, a2 in zip(questions, first, second, strict=True):
            for turn in (1, 2):
                prompt_name, messages = judge_messages(prompts, q, [a1.text, a2.text], turn)
                requests.append((q, turn, prompt_name, messages))
        if progress:
            progress.start(f"judge/{name}: judging", len(requests))
        judged = judge.many([r[3] for r in requests], progress.advance if progress else None)
        records = []
        for (q, turn, prompt_name, _), (judgment, error) in zip(requests, judged, strict=True):
            records.append({"category": q["category"], "turn": turn, "score": parse_score(judgment or ""),
                            "error": error, "judgment": judgment, "prompt_name": prompt_name, "id": q["id"]})
        per_task[name] = summarize(records)
        answers = {q["id"]: (a1.text, a2.text, conv) for q, a1, a2, conv in zip(questions, first, second,
                                                                                   second_convs, strict=True)}
        for r in records:
            a1, a2, conv = answers[r["id"]]
            examples.append({
                "suite": "judge", "task": name, "id": f"{r['id']}:turn{r['turn']}", "category": r["category"],
                "prompt": generator.prompt_text(conv[:1] if r["turn"] == 1 else conv),
                "output": a1 if r["turn"] == 1 else a2, "gold": None, "valid": r["score"] is not None,
                "judge_prompt": r["prompt_name"], "judgment": r["judgment"], "judge_error": r["error"],
                "scores": {"score": r["score"]},
            })
    settings = {"judge": judge.describe(), "judge_prompts": prompts, "prompts_file": PROMPTS_FILE,
                "sets": {n: SETS[n] for n in sets}, "limit": limit, "max_new_tokens": max_new_tokens,
                "score_format": "exactly one [[n]] with 1 <= n <= 10; else unparsable (counted)"}
    return SuiteResult("judge", {"per_task": per_task}, examples, settings)
