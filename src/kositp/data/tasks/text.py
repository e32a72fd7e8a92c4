"""Document-level task builders: summaries, titles, completion, composition, keywords, tables."""

from __future__ import annotations

from collections.abc import Iterator

from kositp.data.schema import Document, Reject
from kositp.data.task_names import KEYWORD_SEPARATOR, SIMPLIFICATION_MAX_CHARS
from kositp.data.tasks.base import Example, TaskOptions
from kositp.data.tasks.templates import stable_hash
from kositp.data.text import split_clean_sentences

Out = Iterator[Example | Reject]
PROSE_KINDS = ("summary", "paper", "text", "mrc")
BLANK = "[빈칸]"


def _key(doc: Document, task: str, extra: object = "") -> str:
    return f"{doc.source}|{doc.doc_id}|{extra}|{task}"


def _reject(doc: Document, task: str, reason: str) -> Reject:
    return Reject(doc.source, doc.ref, reason, task=task)


def _summary(doc: Document) -> str | None:
    if doc.summaries:
        return doc.summaries[0]
    if doc.extractive_summary:  # extractive variant when a document has no abstractive summary
        return " ".join(doc.extractive_summary)
    return None


def _body(doc: Document) -> str:
    """The text a summary is written from: a dialogue keeps one speaker turn per line."""
    return "\n".join(doc.sentences) if doc.kind == "dialogue" else doc.text


def summarization(doc: Document, opt: TaskOptions) -> Out:
    task = "summarization"
    if doc.kind not in ("summary", "paper", "dialogue"):
        return
    summary = _summary(doc)
    body = _body(doc)
    if summary is None:
        if doc.expects_summary:
            yield _reject(doc, task, "empty_summary")
    elif len(summary) >= len(body):
        yield _reject(doc, task, "summary_not_shorter")
    else:
        yield Example(task, _key(doc, task), {"text": body}, summary)
    for i, (section, section_summary) in enumerate(doc.summary_pairs):
        if len(section_summary) < len(section):
            yield Example(task, _key(doc, task, f"section{i}"), {"text": section}, section_summary)


def summary_expansion(doc: Document, opt: TaskOptions) -> Out:
    task = "summary_expansion"
    if doc.kind not in ("summary", "paper") or not doc.summaries:
        return
    if len(doc.text) < 2 * len(doc.summaries[0]):
        yield _reject(doc, task, "expansion_not_longer")
    else:
        yield Example(task, _key(doc, task), {"summary": doc.summaries[0]}, doc.text)


def text_simplification(doc: Document, opt: TaskOptions) -> Out:
    task = "text_simplification"
    if doc.kind == "dialogue":  # a dialogue's summary retells it; it is not a simpler version of it
        return
    candidates = [(doc.text, s) for s in doc.summaries] + list(doc.summary_pairs)
    if not candidates:
        return
    short = [(src, s) for src, s in candidates if len(s) <= SIMPLIFICATION_MAX_CHARS and len(s) < len(src)]
    if not short:
        yield _reject(doc, task, f"target_over_{SIMPLIFICATION_MAX_CHARS}_chars")
        return
    source, target = min(short, key=lambda pair: (len(pair[0]), pair[1]))  # the tightest source for the target
    yield Example(task, _key(doc, task), {"text": source}, target)


def title_generation(doc: Document, opt: TaskOptions) -> Out:
    task = "title_generation"
    if not doc.title or not doc.sentences or doc.kind == "text":
        return
    if len(doc.title) > opt.max_title_chars or len(doc.title) >= len(doc.text):
        yield _reject(doc, task, "title_too_long")
    else:
        yield Example(task, _key(doc, task), {"text": doc.text}, doc.title)


def title2contents(doc: Document, opt: TaskOptions) -> Out:
    task = "title2contents"
    if not doc.title or len(doc.sentences) < 2 or doc.kind == "text":
        return
    if len(doc.title) > opt.max_title_chars:
        yield _reject(doc, task, "title_too_long")
    else:
        yield Example(task, _key(doc, task), {"title": doc.title}, doc.text)


def _prose_units(doc: Document) -> Iterator[tuple[str, str, list[str]]]:
    """(unit id, ref, sentences) of running text: the document's sentences, or for an MRC document each
    text passage on its own, since its passages are excerpts and the last sentence of one does not
    lead into the first of the next."""
    if doc.kind not in PROSE_KINDS:
        return
    if doc.kind != "mrc":
        yield "", doc.ref, doc.sentences
        return
    for i, passage in enumerate(doc.passages):
        if passage.context_format == "text":
            yield f"p{i}", f"{doc.ref}.p{i}", split_clean_sentences(passage.context)


def text_completion(doc: Document, opt: TaskOptions) -> Out:
    task = "text_completion"
    for unit, ref, sentences in _prose_units(doc):
        window = sentences[: opt.completion_max_sentences]
        if len(window) < 4:
            yield Reject(doc.source, ref, "too_few_sentences", task=task)
            continue
        cut = max(1, min(len(window) - 1, round(len(window) * opt.completion_prefix_ratio)))
        yield Example(task, _key(doc, task, unit), {"text": " ".join(window[:cut])}, " ".join(window[cut:]))


MIN_BLANK_HANGUL = 5  # the blanked sentence must say something a reader could infer from its neighbours


def text_composition(doc: Document, opt: TaskOptions) -> Out:
    task = "text_composition"
    for unit, ref, sentences in _prose_units(doc):
        if len(sentences) < 3:
            yield Reject(doc.source, ref, "too_few_sentences", task=task)
            continue
        h = stable_hash(opt.seed, doc.source, doc.doc_id, task, *([unit] if unit else []))
        size = 3 if len(sentences) == 3 else 3 + h % 2  # 3 or 4 consecutive sentences
        start = (h >> 8) % (len(sentences) - size + 1)
        window = sentences[start: start + size]
        middle = 1 if size == 3 else 1 + (h >> 16) % 2
        if sum("가" <= ch <= "힣" for ch in window[middle]) < MIN_BLANK_HANGUL:
            # e.g. a bare clause number: nothing to infer
            yield Reject(doc.source, ref, "blank_sentence_too_short", task=task)
            continue
        shown = [*window[:middle], BLANK, *window[middle + 1:]]
        yield Example(task, _key(doc, task, unit), {"text": " ".join(shown)}, window[middle])


def keyword_tagging(doc: Document, opt: TaskOptions) -> Out:
    task = "keyword_tagging"
    if not doc.keywords:
        return
    if len(doc.keywords) < opt.min_keywords:
        yield _reject(doc, task, "too_few_keywords")
        return
    yield Example(task, _key(doc, task), {"text": doc.body_html or doc.text}, KEYWORD_SEPARATOR.join(doc.keywords))


def table2title(doc: Document, opt: TaskOptions) -> Out:
    task = "table2title"
    for i, passage in enumerate(doc.passages):
        if passage.context_format != "html":
            continue
        if not passage.table_title:
            if doc.kind == "table":
                yield _reject(doc, task, "missing_field:table_title")
            continue
        yield Example(task, _key(doc, task, i), {"table": passage.context}, passage.table_title)
