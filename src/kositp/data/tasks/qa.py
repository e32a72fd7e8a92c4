"""QA task builders: answerability, abstractive (closed-book) and extractive QA, paraphrasing.

"Abstractive" means closed-book: the question alone, so it must not point at an unseen passage.
"Extractive" gives the context. Explanation variants need an evidence sentence.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from kositp.data.schema import QA, Document, Passage, Reject
from kositp.data.task_names import ANSWERABLE, OPTIONS_PREFIX, UNANSWERABLE, with_explanation
from kositp.data.tasks.base import Example, TaskOptions
from kositp.data.tasks.templates import stable_hash
from kositp.data.text import dedup_key, is_self_contained

Out = Iterator[Example | Reject]


def _key(doc: Document, qa: QA, task: str) -> str:
    return f"{doc.source}|{doc.doc_id}|{qa.qid}|{task}"


def _text_qas(doc: Document) -> Iterator[tuple[Passage, QA]]:
    for passage in doc.passages:
        if passage.context_format == "text":
            for qa in passage.qas:
                yield passage, qa


def _reject(doc: Document, qa: QA, task: str, reason: str) -> Reject:
    return Reject(doc.source, f"{doc.ref}#{qa.qid}", reason, task=task)


def _options_text(qa: QA, key: str, seed: int) -> str:
    options = list(qa.options)
    random.Random(stable_hash(seed, key, "options")).shuffle(options)  # the gold is not always first
    return f"{OPTIONS_PREFIX} " + ", ".join(options)


def answerability_classification(doc: Document, opt: TaskOptions) -> Out:
    task = "answerability_classification"
    for passage in doc.passages:
        unanswerable = [qa for qa in passage.qas if qa.is_impossible]
        # Every unanswerable question, and one answerable span question from passages without any, keeps
        # the two labels in a realistic balance instead of drowning "답변할 수 없음" in span questions.
        chosen = unanswerable or [qa for qa in passage.qas if qa.qtype == "span"][:1]
        for qa in chosen:
            label = UNANSWERABLE if qa.is_impossible else ANSWERABLE
            yield Example(task, _key(doc, qa, task), {"context": passage.context, "question": qa.question}, label)


def _closed_book_ok(doc: Document, qa: QA, task: str) -> Reject | None:
    if not is_self_contained(qa.question):
        return _reject(doc, qa, task, "not_self_contained")
    return None


def _is_long(qa: QA, opt: TaskOptions) -> bool:
    return qa.qtype == "how" or len(qa.answer or "") >= opt.long_answer_min_chars


def abstractive_qa_objective(doc: Document, opt: TaskOptions) -> Out:
    task = "abstractive_qa_objective"
    for _, qa in _text_qas(doc):
        if qa.qtype == "multiple_choice":
            key = _key(doc, qa, task)
            yield _closed_book_ok(doc, qa, task) or Example(
                task, key, {"question": qa.question, "options": _options_text(qa, key, opt.seed)}, qa.answer or "")


def abstractive_qa_short(doc: Document, opt: TaskOptions) -> Out:
    task = "abstractive_qa_short"
    for _, qa in _text_qas(doc):
        if qa.qtype in ("span", "inference") and not _is_long(qa, opt):
            yield _closed_book_ok(doc, qa, task) or Example(task, _key(doc, qa, task), {"question": qa.question},
                                                            qa.answer or "")


def abstractive_qa_long(doc: Document, opt: TaskOptions) -> Out:
    task = "abstractive_qa_long"
    for _, qa in _text_qas(doc):
        if qa.qtype in ("span", "inference", "how") and _is_long(qa, opt):
            yield _closed_book_ok(doc, qa, task) or Example(task, _key(doc, qa, task), {"question": qa.question},
                                                            qa.answer or "")


def abstractive_qa_yes_no(doc: Document, opt: TaskOptions) -> Out:
    task = "abstractive_qa_yes_no"
    for _, qa in _text_qas(doc):
        if qa.qtype == "yes_no":
            yield _closed_book_ok(doc, qa, task) or Example(task, _key(doc, qa, task), {"question": qa.question},
                                                            qa.answer or "")


def _objective(doc: Document, opt: TaskOptions, task: str, explain: bool) -> Out:
    for passage, qa in _text_qas(doc):
        if qa.qtype != "multiple_choice":
            continue
        if explain and not qa.evidence:
            yield _reject(doc, qa, task, "missing_evidence")
            continue
        key = _key(doc, qa, task)
        answer = with_explanation(qa.answer or "", qa.evidence[0]) if explain else qa.answer or ""
        yield Example(task, key, {"context": passage.context, "question": qa.question,
                                  "options": _options_text(qa, key, opt.seed)}, answer)


def extractive_qa_objective(doc: Document, opt: TaskOptions) -> Out:
    return _objective(doc, opt, "extractive_qa_objective", explain=False)


def extractive_qa_objective_explanation(doc: Document, opt: TaskOptions) -> Out:
    return _objective(doc, opt, "extractive_qa_objective_explanation", explain=True)


def _yes_no(doc: Document, opt: TaskOptions, task: str, explain: bool) -> Out:
    for passage, qa in _text_qas(doc):
        if qa.qtype != "yes_no":
            continue
        if explain and not qa.evidence:
            yield _reject(doc, qa, task, "missing_evidence")
            continue
        answer = with_explanation(qa.answer or "", qa.evidence[0]) if explain else qa.answer or ""
        yield Example(task, _key(doc, qa, task), {"context": passage.context, "question": qa.question}, answer)


def extractive_qa_yes_no(doc: Document, opt: TaskOptions) -> Out:
    return _yes_no(doc, opt, "extractive_qa_yes_no", explain=False)


def extractive_qa_yes_no_explanation(doc: Document, opt: TaskOptions) -> Out:
    return _yes_no(doc, opt, "extractive_qa_yes_no_explanation", explain=True)


def extractive_qa_short(doc: Document, opt: TaskOptions) -> Out:
    task = "extractive_qa_short"
    for passage, qa in _text_qas(doc):
        if qa.qtype in ("span", "inference") and not _is_long(qa, opt):
            yield Example(task, _key(doc, qa, task), {"context": passage.context, "question": qa.question},
                          qa.answer or "")


def extractive_qa_long(doc: Document, opt: TaskOptions) -> Out:
    task = "extractive_qa_long"
    for passage, qa in _text_qas(doc):
        if qa.qtype in ("span", "inference", "how") and _is_long(qa, opt):
            yield Example(task, _key(doc, qa, task), {"context": passage.context, "question": qa.question},
                          qa.answer or "")


def table_qa_short(doc: Document, opt: TaskOptions) -> Out:
    task = "table_qa_short"
    for passage in doc.passages:
        if passage.context_format != "html":
            continue
        for qa in passage.qas:
            if not qa.is_impossible and qa.answer:
                yield Example(task, _key(doc, qa, task), {"table": passage.context, "question": qa.question}, qa.answer)


def paraphrasing(doc: Document, opt: TaskOptions) -> Out:
    task = "paraphrasing"
    for passage in doc.passages:
        for qa in passage.qas:
            for alt in qa.question_alts:
                if dedup_key(alt) == dedup_key(qa.question):
                    yield _reject(doc, qa, task, "identical_paraphrase")
                else:
                    yield Example(task, _key(doc, qa, task), {"text": qa.question}, alt)
