"""AIHub summarisation layouts (D7–D10) -> `Document`s with sentences and summaries.

Variants (sniffed per item): 문서요약 텍스트 `documents[]` with nested sentence lists and
extractive *indices* (D7) and its older Dacon `article_original` form; 요약문 및 레포트 생성 with
the real misspelled `Meta(Acqusition)` key (D8); 도서자료 요약 with nested `metadata` (D9);
논문자료 요약 with the real misspelled `orginal_text` key (D10), also inside merged list dumps;
한국어 대화 요약 `{header: {dialogueInfo, participantsInfo}, body: {dialogue[], summary}}`, whose
utterances are rendered one speaker turn per line ("P01: ...").
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from kositp.data.io import file_stem, iter_items
from kositp.data.schema import Document, Reject
from kositp.data.text import clean, is_null, split_sentences, to_int

CONTAINER_KEYS = ("documents", "data")


def _summaries(values: Any) -> list[str]:
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, list):
        return []
    return [clean(v) for v in values if isinstance(v, str) and not is_null(v)]


def _d7(item: dict, ref: str, source: str) -> Document | Reject:
    """문서요약 텍스트: text = list[list[{index, sentence}]]; inner lists may be empty or hold several."""
    by_index: dict[int, str] = {}
    order: list[str] = []
    for para in item.get("text") or []:
        for sent in para if isinstance(para, list) else [para]:
            if isinstance(sent, dict) and not is_null(sent.get("sentence")):
                sentence = clean(sent["sentence"])
                order.append(sentence)
                idx = to_int(sent.get("index"))
                if idx is not None:
                    by_index[idx] = sentence
    extractive = [by_index[i] for i in (to_int(x) for x in item.get("extractive") or []) if i in by_index]
    return Document(source=source, doc_id=clean(item.get("id")) or ref, ref=ref, title=clean(item.get("title")) or None,
                    sentences=order, summaries=_summaries(item.get("abstractive")), extractive_summary=extractive,
                    kind="summary", expects_summary=True)


def _dacon(item: dict, ref: str, source: str) -> Document:
    sentences = [clean(s) for s in item.get("article_original") or [] if isinstance(s, str) and clean(s)]
    extractive = [sentences[i] for i in (to_int(x) for x in item.get("extractive") or [])
                  if i is not None and i < len(sentences)]
    return Document(source=source, doc_id=clean(item.get("id")) or ref, ref=ref, title=clean(item.get("title")) or None,
                    sentences=sentences, summaries=_summaries(item.get("abstractive")), extractive_summary=extractive,
                    kind="summary", expects_summary=True)


def _d8(item: dict, ref: str, source: str) -> Document:
    acq = item.get("Meta(Acqusition)") or item.get("Meta(Acquisition)") or {}
    refine = item.get("Meta(Refine)") or {}
    note = item.get("Annotation") or {}
    passage = refine.get("passage") if isinstance(refine, dict) else None
    sentences = [s for line in (passage or "").split("\n") for s in split_sentences(line)]
    summaries = _summaries([note.get(k) for k in ("summary1", "summary2", "summary3")] if isinstance(note, dict) else [])
    doc_id = clean(acq.get("doc_id")) if isinstance(acq, dict) else ""
    title = clean(acq.get("doc_name")) if isinstance(acq, dict) else ""
    return Document(source=source, doc_id=doc_id or file_stem(ref), ref=ref, title=title or None,
                    sentences=sentences, summaries=summaries, kind="summary", expects_summary=True)


def _d9(item: dict, ref: str, source: str) -> Document:
    meta = item.get("metadata") if isinstance(item.get("metadata"), dict) else {}
    doc_id = clean(item.get("passage_id")) or clean(meta.get("doc_id")) or file_stem(ref)
    # the chapter names the passage better than the book title, which is too coarse (D9)
    title = clean(item.get("chapter")) or clean(meta.get("doc_name")) or None
    return Document(source=source, doc_id=doc_id, ref=ref, title=title, sentences=split_sentences(item.get("passage") or ""),
                    summaries=_summaries(item.get("summary")), kind="summary", expects_summary=True)


def _orginal(section: dict) -> str | None:
    """D10's real key is misspelled `orginal_text`; accept the correct spelling too."""
    for key in ("orginal_text", "original_text"):
        if isinstance(section.get(key), str):
            return section[key]
    return None


def _d10(item: dict, ref: str, source: str) -> Document | Reject:
    entire = [s for s in item.get("summary_entire") or [] if isinstance(s, dict)]
    sections = [s for s in item.get("summary_section") or [] if isinstance(s, dict)]
    if any(_orginal(s) is None for s in entire + sections):
        return Reject(source, ref, "missing_field:orginal_text")
    pairs = [(clean(_orginal(s)), clean(s.get("summary_text"))) for s in sections]
    pairs = [(a, b) for a, b in pairs if a and b]
    if entire:
        text = " ".join(clean(_orginal(s)) for s in entire)
        summaries = _summaries([s.get("summary_text") for s in entire])
    else:
        text = " ".join(a for a, _ in pairs)
        summaries = []
    return Document(source=source, doc_id=clean(item.get("doc_id")) or ref, ref=ref, title=clean(item.get("title")) or None,
                    sentences=split_sentences(text), summaries=[" ".join(summaries)] if summaries else [],
                    summary_pairs=pairs, kind="summary", expects_summary=bool(entire))


def _dialogue_lines(utterances: list) -> list[str] | Reject:
    """One line per speaker turn, "P01: first utterance second utterance": a turn is a run of
    utterances with the same turnID (or, without turnIDs, the same speaker), as the chat app sent them."""
    lines: list[str] = []
    last: tuple[Any, str] | None = None
    for utt in utterances:
        if not isinstance(utt, dict) or is_null(utt.get("utterance")):
            continue
        text = clean(utt["utterance"])
        speaker = clean(utt.get("participantID"))
        if not text:
            continue
        if not speaker:
            return Reject("", "", "missing_field:participantID", detail=text[:50])
        turn = (utt.get("turnID") or None, speaker)
        if turn == last:
            lines[-1] += " " + text
        else:
            lines.append(f"{speaker}: {text}")
        last = turn
    return lines


def _dialogue(item: dict, ref: str, source: str) -> Document | Reject:
    """한국어 대화 요약: the dialogue's turns as lines, its one reference summary."""
    header = item.get("header") if isinstance(item.get("header"), dict) else {}
    body = item["body"]
    info = header.get("dialogueInfo") if isinstance(header.get("dialogueInfo"), dict) else {}
    lines = _dialogue_lines(body.get("dialogue") if isinstance(body.get("dialogue"), list) else [])
    if isinstance(lines, Reject):
        lines.source, lines.ref = source, ref
        return lines
    return Document(source=source, doc_id=clean(info.get("dialogueID")) or ref, ref=ref, title=None,
                    sentences=lines, summaries=_summaries(body.get("summary")), kind="dialogue",
                    expects_summary=True)


def parse_summary_item(item: Any, ref: str, source: str) -> Document | Reject:
    if not isinstance(item, dict):
        return Reject(source, ref, "malformed_record", detail=f"expected an object, got {type(item).__name__}")
    if "Meta(Acqusition)" in item or "Meta(Acquisition)" in item or "Meta(Refine)" in item:
        doc = _d8(item, ref, source)
    elif "summary_entire" in item or "summary_section" in item:
        doc = _d10(item, ref, source)
    elif "article_original" in item:
        doc = _dacon(item, ref, source)
    elif "text" in item and ("abstractive" in item or "extractive" in item):
        doc = _d7(item, ref, source)
    elif "passage" in item and "summary" in item:
        doc = _d9(item, ref, source)
    elif isinstance(item.get("body"), dict) and "dialogue" in item["body"]:
        doc = _dialogue(item, ref, source)
    else:
        return Reject(source, ref, "unknown_layout", detail="no known summary keys")
    if isinstance(doc, Document) and not doc.sentences:
        return Reject(source, ref, "empty_text")
    return doc


def read_summary(path: str, source: str, **_: Any) -> Iterator[Document | Reject]:
    for entry in iter_items(path, CONTAINER_KEYS):
        if isinstance(entry, Reject):
            entry.source = source
            yield entry
        else:
            yield parse_summary_item(entry[1], entry[0], source)
