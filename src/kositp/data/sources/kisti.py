"""KISTI AIDA 국내 논문 전문 텍스트 and 국내 논문 QA (D11) -> `Document`s.

A full-text file carries title, keywords, abstract and sectioned body; a QA file carries a context
and questions with `answer.answer_text`. QA trees mirror full-text trees, so a paper's QA file has
the same file stem: both get that stem as doc_id (unless `doc_id` is present), which keeps a
paper's full text and its QA in the same split.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any

from kositp.data.io import file_stem, iter_items
from kositp.data.schema import Document, Reject
from kositp.data.sources.aihub_mrc import parse_mrc_item
from kositp.data.text import clean, split_sentences


def _ko(value: Any) -> str:
    if isinstance(value, dict):
        return clean(value.get("ko") or value.get("kor"))
    return clean(value)


def split_keywords(value: Any) -> list[str]:
    """keywords.ko is a delimiter-joined string or a list (sources disagree): accept both, drop empties and repeats."""
    if isinstance(value, dict):
        value = value.get("ko") or value.get("kor")
    items = value if isinstance(value, list) else re.split(r"[,;·|/]", value or "")
    return list(dict.fromkeys(k for k in (clean(x) for x in items if isinstance(x, str)) if k))


def _full_text(item: dict, ref: str, source: str) -> Document | Reject:
    sentences: list[str] = []
    parts: list[str] = []
    for section in item.get("body_text") or []:
        if not isinstance(section, dict):
            continue
        texts = [clean(t) for t in section.get("text") or [] if isinstance(t, str) and clean(t)]
        heading = clean(section.get("section"))
        if heading:
            parts.append(f"<h1>{html.escape(heading)}</h1>")
        parts.extend(f"<p>{html.escape(t)}</p>" for t in texts)
        for t in texts:
            sentences.extend(split_sentences(t))
    abstract = _ko(item.get("abstract"))
    if not sentences and not abstract:
        return Reject(source, ref, "empty_text")
    if abstract:
        parts.insert(0, f"<h1>요 약</h1><p>{html.escape(abstract)}</p>")
    doc_id = clean(item.get("doc_id")) or file_stem(ref)
    return Document(source=source, doc_id=doc_id, ref=ref, title=_ko(item.get("title")) or None,
                    sentences=sentences or split_sentences(abstract), summaries=[abstract] if sentences and abstract else [],
                    keywords=split_keywords(item.get("keywords")), body_html=" ".join(parts) or None, kind="paper")


def read_kisti(path: str, source: str, **_: Any) -> Iterator[Document | Reject]:
    for entry in iter_items(path, ("data",)):
        if isinstance(entry, Reject):
            entry.source = source
            yield entry
            continue
        ref, item = entry
        if isinstance(item, dict) and "qas" in item:
            if not item.get("doc_id"):
                item = {**item, "doc_id": file_stem(ref)}
            yield from parse_mrc_item(item, ref, source, kind="paper")
        elif isinstance(item, dict) and ("body_text" in item or "abstract" in item):
            yield _full_text(item, ref, source)
        else:
            yield Reject(source, ref, "unknown_layout", detail="neither KISTI full text nor QA")

