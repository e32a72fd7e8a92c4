"""Suite `seed4`: the seed project's four zero-shot classification benchmarks, scored honestly.

NSMC (sentiment), KorNLI (entailment), Korean Question Pair (same question?) and Korean
HateSpeech (the `bias` column, dev split) are asked as Korean zero-shot instructions through the
chat template, like a user would ask. The reply is parsed into a label (`answers.match_label`);
a reply that gives no single label is *invalid*.

Reported per benchmark:
* `macro_f1` and `accuracy` with invalid outputs counted as wrong (macro-F1 over the gold classes);
* `invalid_rate`;
* `macro_f1_valid_only`: the seed's own figure, computed after dropping invalid outputs, so the
  result can be set beside the seed's table (SOLAR 10.7B: KorNLI 0.44, QPair 0.68, HateSpeech
  0.63, NSMC 0.76 macro-F1).

Question Pair's label is inverted: `is_duplicate` 0 means the two questions are the SAME.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kositp.data.task_names import NO, YES
from kositp.errors import KositpError
from kositp.eval import metrics
from kositp.eval.answers import YES_NO_SURFACES, match_label
from kositp.eval.benchmarks import read_table, sample
from kositp.eval.suites import SuiteResult

# The seed's published macro-F1 for SOLAR 10.7B (invalid outputs dropped), for the side-by-side table.
SEED_REFERENCE = {"model": "SOLAR 10.7B (seed README)", "kornli": 0.44, "qpair": 0.68, "hatespeech": 0.63, "nsmc": 0.76}


def qpair_label(is_duplicate: str) -> str:
    """Question Pair's inverted label: 0 = the same question (예), 1 = different questions (아니요)."""
    value = is_duplicate.strip()
    if value == "0":
        return YES
    if value == "1":
        return NO
    raise ValueError(f"is_duplicate must be 0 or 1, got {is_duplicate!r}")


@dataclass(frozen=True)
class Benchmark:
    name: str
    path: str  # relative to the benchmarks folder
    required: tuple[str, ...]
    prompt: str  # str.format template over the row's columns
    surfaces: dict[str, tuple[str, ...]]  # label -> accepted surface forms in a reply
    gold: Callable[[dict], str]  # row -> gold label
    text_columns: tuple[str, ...]  # must be non-empty for the row to be asked


BENCHMARKS: dict[str, Benchmark] = {
    "nsmc": Benchmark(
        name="nsmc",
        path="nsmc/ratings_test.txt",
        required=("id", "document", "label"),
        prompt="다음 영화 리뷰의 감정을 분류하세요. 긍정적이면 '긍정', 부정적이면 '부정'이라고만 답하세요.\n\n"
        "리뷰: {document}",
        surfaces={"긍정": ("긍정", "긍정적", "positive"), "부정": ("부정", "부정적", "negative")},
        gold=lambda row: {"1": "긍정", "0": "부정"}[row["label"].strip()],
        text_columns=("document",),
    ),
    "kornli": Benchmark(
        name="kornli",
        path="kornli/xnli.test.ko.tsv",
        required=("sentence1", "sentence2", "gold_label"),
        prompt="전제와 가설의 관계를 판단하세요. 전제가 참일 때 가설도 반드시 참이면 '함의', 반드시 거짓이면 '모순', "
        "참인지 거짓인지 알 수 없으면 '중립'이라고만 답하세요.\n\n전제: {sentence1}\n가설: {sentence2}",
        surfaces={"함의": ("함의", "entailment"), "중립": ("중립", "neutral"), "모순": ("모순", "contradiction")},
        gold=lambda row: {"entailment": "함의", "neutral": "중립", "contradiction": "모순"}[row["gold_label"].strip()],
        text_columns=("sentence1", "sentence2"),
    ),
    "qpair": Benchmark(
        name="qpair",
        path="question_pair/test.txt",
        required=("question1", "question2", "is_duplicate"),
        prompt="두 질문이 같은 의미인지 판단하세요. 같은 의미이면 '예', 다른 의미이면 '아니요'라고만 답하세요.\n\n"
        "질문 1: {question1}\n질문 2: {question2}",
        surfaces=YES_NO_SURFACES,
        gold=lambda row: qpair_label(row["is_duplicate"]),
        text_columns=("question1", "question2"),
    ),
    "hatespeech": Benchmark(
        name="hatespeech",
        path="korean_hate_speech/dev.tsv",
        required=("comments", "bias"),
        prompt="다음 댓글에 사회적 편견이 담겨 있는지 분류하세요. 성별에 대한 편견이면 '성별', 그 밖의 집단(인종, 나이, "
        "지역, 종교, 직업 등)에 대한 편견이면 '기타', 편견이 없으면 '없음'이라고만 답하세요.\n\n댓글: {comments}",
        surfaces={"성별": ("성별", "gender"), "기타": ("기타", "others"), "없음": ("없음", "none")},
        gold=lambda row: {"gender": "성별", "others": "기타", "none": "없음"}[row["bias"].strip()],
        text_columns=("comments",),
    ),
}


def load(benchmark: Benchmark, root: Path, path_override: str | None = None) -> tuple[list[dict], int]:
    """(examples, skipped_empty): rows with an empty text cannot be asked and are counted, not hidden."""
    path = root / (path_override or benchmark.path)
    rows = read_table(path, list(benchmark.required))
    examples, skipped = [], 0
    for row in rows:
        if any(not row.get(c, "").strip() for c in benchmark.text_columns):
            skipped += 1
            continue
        try:
            gold = benchmark.gold(row)
        except (KeyError, ValueError):
            raise KositpError(f"{path}:{row['_line']}: unexpected label in {row}") from None
        examples.append({"id": row.get("id") or row.get("test_id") or f"line{row['_line']}", "row": row, "gold": gold})
    return examples, skipped


def prompt_for(benchmark: Benchmark, row: dict) -> list[dict]:
    fields = {k: v.strip() for k, v in row.items()}
    return [{"role": "user", "content": benchmark.prompt.format(**fields)}]


def score(benchmark: Benchmark, golds: list[str], preds: list[str | None]) -> dict:
    labels = list(benchmark.surfaces)
    strict = [p if p is not None else "<invalid>" for p in preds]
    valid_pairs = [(g, p) for g, p in zip(golds, preds, strict=True) if p is not None]
    valid_golds = [g for g, _ in valid_pairs]
    valid_preds = [p for _, p in valid_pairs]
    return {
        "n": len(golds),
        "macro_f1": metrics.macro_f1(golds, strict, labels=labels),
        "accuracy": metrics.accuracy(golds, strict),
        "invalid_rate": 1 - len(valid_pairs) / len(golds) if golds else 0.0,
        "macro_f1_valid_only": metrics.macro_f1(valid_golds, valid_preds) if valid_pairs else 0.0,
        "n_valid": len(valid_pairs),
        "label_counts": {label: golds.count(label) for label in labels},
        "prediction_counts": {label: preds.count(label) for label in labels} | {"invalid": preds.count(None)},
    }


def run(generator, root: Path, names: list[str], limit: int | None, seed: int, max_new_tokens: int,
        progress=None, paths: dict[str, str] | None = None) -> SuiteResult:
    per_benchmark, examples, settings = {}, [], {"max_new_tokens": max_new_tokens, "files": {}, "prompts": {}}
    for name in names:
        benchmark = BENCHMARKS[name]
        items, skipped = load(benchmark, root, (paths or {}).get(name))
        items = sample(items, limit, seed, name)
        conversations = [prompt_for(benchmark, item["row"]) for item in items]
        if progress:
            progress.start(f"seed4/{name}: generating", len(items))
        generations = generator.generate(conversations, max_new_tokens, progress.advance if progress else None)
        preds = [match_label(g.text, benchmark.surfaces) for g in generations]
        golds = [item["gold"] for item in items]
        per_benchmark[name] = score(benchmark, golds, preds) | {"skipped_empty_text": skipped}
        for item, messages, gen, pred in zip(items, conversations, generations, preds, strict=True):
            examples.append({
                "suite": "seed4", "task": name, "id": item["id"], "prompt": generator.prompt_text(messages),
                "output": gen.text, "gold": item["gold"], "valid": pred is not None,
                "scores": {"correct": float(pred == item["gold"])}, "parsed": pred,
                # the classes behind macro-F1, so its interval redraws examples (eval/stats.py)
                "label": item["gold"], "prediction": pred,
            })
        settings["files"][name] = (paths or {}).get(name) or benchmark.path
        settings["prompts"][name] = benchmark.prompt
    summary = {
        "mean_macro_f1": metrics.mean([m["macro_f1"] for m in per_benchmark.values()]),
        "mean_macro_f1_valid_only": metrics.mean([m["macro_f1_valid_only"] for m in per_benchmark.values()]),
        "mean_invalid_rate": metrics.mean([m["invalid_rate"] for m in per_benchmark.values()]),
    }
    return SuiteResult("seed4", {"per_task": per_benchmark, "summary": summary, "seed_reference": SEED_REFERENCE},
                       examples, settings)
