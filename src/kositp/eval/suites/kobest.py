"""Suite `kobest`: KoBEST (BoolQ, COPA, HellaSwag, SentiNeg, WiC) by log-likelihood over the choices.

Prompts, choices and metrics follow lm-evaluation-harness 0.4.13's `kobest_*` tasks exactly
(zero-shot, no chat template, target delimiter " ", acc = argmax of summed log-likelihood,
acc_norm = argmax of log-likelihood per character, f1 = scikit-learn's macro F1 over the classes
seen). The only difference is the source: the KoBEST authors' TSV files (`kobest/<Task>/test.tsv`,
SKT-LSL/KoBEST_datarepo v1.0) instead of the `skt/kobest_v1` hub dataset; the columns are mapped
to the hub dataset's field names below. docs/evaluation.md records the cross-check against
lm-eval itself run on the same files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kositp.errors import KositpError
from kositp.eval import metrics
from kositp.eval.benchmarks import read_table, sample
from kositp.eval.suites import SuiteResult

TASK_NAMES = ("boolq", "copa", "hellaswag", "sentineg", "wic")


def _bool(value: str) -> int:
    lowered = value.strip().lower()
    if lowered not in ("true", "false"):
        raise ValueError(f"expected True/False, got {value!r}")
    return int(lowered == "true")


@dataclass(frozen=True)
class KobestTask:
    name: str
    folder: str
    required: tuple[str, ...]
    to_doc: Callable[[dict], dict]  # TSV row -> the hub dataset's fields
    context: Callable[[dict], str]
    choices: Callable[[dict], list[str]]
    acc_norm: bool = False


def _copa_context(doc: dict) -> str:
    connector = {"원인": " 왜냐하면", "결과": " 그래서"}[doc["question"].strip()]
    return f"{doc['premise']} {connector}"  # lm-eval's own double space, kept for identical scores


KOBEST: dict[str, KobestTask] = {
    "boolq": KobestTask(
        "boolq", "BoolQ", ("Text", "Question", "Answer"),
        lambda r: {"paragraph": r["Text"], "question": r["Question"], "label": _bool(r["Answer"])},
        lambda d: f"{d['paragraph']} 질문: {d['question']} 답변: ",
        lambda d: ["아니오", "예"],
    ),
    "copa": KobestTask(
        "copa", "COPA", ("sentence", "question", "1", "2", "Answer"),
        lambda r: {"premise": r["sentence"], "question": r["question"], "alternative_1": r["1"],
                   "alternative_2": r["2"], "label": int(r["Answer"].strip()) - 1},
        _copa_context,
        lambda d: [d["alternative_1"], d["alternative_2"]],
    ),
    "hellaswag": KobestTask(
        "hellaswag", "HellaSwag", ("context", "choice1", "choice2", "choice3", "choice4", "label"),
        lambda r: {"context": r["context"], **{f"ending_{i}": r[f"choice{i}"] for i in range(1, 5)},
                   "label": int(r["label"].strip())},
        lambda d: f"문장: {d['context']}",
        lambda d: [d[f"ending_{i}"] for i in range(1, 5)],
        acc_norm=True,
    ),
    "sentineg": KobestTask(
        "sentineg", "SentiNeg", ("Text", "Label"),
        lambda r: {"sentence": r["Text"], "label": int(r["Label"].strip())},
        lambda d: f"문장: {d['sentence']} 긍부정:",
        lambda d: ["부정", "긍정"],
    ),
    "wic": KobestTask(
        "wic", "WiC", ("Target", "SENTENCE1", "SENTENCE2", "ANSWER"),
        lambda r: {"word": r["Target"], "context_1": r["SENTENCE1"], "context_2": r["SENTENCE2"],
                   "label": _bool(r["ANSWER"])},
        lambda d: f"문장1: {d['context_1']} 문장2: {d['context_2']} 두 문장에서 {d['word']}가 같은 뜻으로 쓰였나?",
        lambda d: ["아니오", "예"],
    ),
}
TARGET_DELIMITER = " "


def load(task: KobestTask, root: Path, split: str) -> list[dict]:
    path = root / "kobest" / task.folder / f"{split}.tsv"
    docs = []
    for row in read_table(path, list(task.required), delimiter="\t"):
        try:
            doc = task.to_doc(row)
        except (KeyError, ValueError) as exc:
            raise KositpError(f"{path}:{row['_line']}: {exc}") from None
        doc["id"] = row.get("ID", "").strip() or f"line{row['_line']}"
        docs.append(doc)
    return docs


def score_task(task: KobestTask, docs: list[dict], lls: list[list[float]]) -> dict:
    golds = [d["label"] for d in docs]
    preds = [max(range(len(ll)), key=lambda i, ll=ll: (ll[i], -i)) for ll in lls]  # first argmax, as numpy
    result = {"n": len(docs), "acc": metrics.accuracy(golds, preds), "f1": metrics.macro_f1(golds, preds)}
    if task.acc_norm:
        norm_preds = []
        for doc, ll in zip(docs, lls, strict=True):
            lengths = [float(len(c)) for c in task.choices(doc)]
            normed = [x / n for x, n in zip(ll, lengths, strict=True)]
            norm_preds.append(max(range(len(normed)), key=lambda i, v=normed: (v[i], -i)))
        result["acc_norm"] = metrics.accuracy(golds, norm_preds)
    return result


def run(scorer, root: Path, names: list[str], limit: int | None, seed: int, split: str = "test",
        progress=None) -> SuiteResult:
    """`scorer(requests, progress) -> list[Scored]` scores (context, continuation) pairs."""
    per_task, examples = {}, []
    for name in names:
        task = KOBEST[name]
        docs = sample(load(task, root, split), limit, seed, f"kobest-{name}")
        requests, spans = [], []
        for doc in docs:
            context, choices = task.context(doc), task.choices(doc)
            spans.append((len(requests), len(choices)))
            requests.extend((context, TARGET_DELIMITER + choice) for choice in choices)
        if progress:
            progress.start(f"kobest/{name}: scoring", len(requests))
        scored = scorer(requests, progress.advance if progress else None)
        lls = [[s.logprob for s in scored[start:start + n]] for start, n in spans]
        per_task[name] = score_task(task, docs, lls)
        for doc, ll in zip(docs, lls, strict=True):
            pred = max(range(len(ll)), key=lambda i, ll=ll: (ll[i], -i))
            examples.append({
                "suite": "kobest", "task": name, "id": doc["id"], "prompt": task.context(doc),
                "output": task.choices(doc)[pred], "gold": task.choices(doc)[doc["label"]], "valid": True,
                "scores": {"correct": float(pred == doc["label"])}, "loglikelihoods": [round(x, 4) for x in ll],
                # choice indices behind macro-F1, so its interval redraws examples (eval/stats.py)
                "label": doc["label"], "prediction": pred,
            })
    summary = {
        "mean_acc": metrics.mean([m["acc"] for m in per_task.values()]),
        "mean_f1": metrics.mean([m["f1"] for m in per_task.values()]),
    }
    settings = {"split": split, "limit": limit, "num_fewshot": 0, "convention": "lm-evaluation-harness 0.4.13"}
    return SuiteResult("kobest", {"per_task": per_task, "summary": summary}, examples, settings)
