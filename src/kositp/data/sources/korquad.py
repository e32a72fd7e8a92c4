"""KorQuAD 1.0 (and any SQuAD v1 file): Wikipedia articles -> `Document`s, one per article.

The layout is AIHub MRC's D1 (`data[{title, paragraphs[{context, qas[{id, question, answers}]}]}]`),
so `aihub_mrc.parse_mrc_item` reads it. This adapter adds what the corpus supports but its layout
does not spell out:

- evidence: the sentence of the paragraph that holds the answer span (for the `*_explanation` task);
- multiple choice: each span question again, with three distractors drawn from the other answers of
  the same article (never the gold, nothing containing it or contained in it);
- unanswerable questions, which KorQuAD 1.0 lacks: a few articles, picked by a fixed hash of their
  id, form a pool, and each pool article's questions are asked of the paragraphs of one partner
  article that contain neither the gold answer nor the pool article's subject. A pool article yields
  nothing else, so all of its text sits in its partner's split and nowhere else. The pool grows until
  the unanswerable questions balance the answerable ones (one per paragraph without a foreign question);
- titles: the Wikipedia title without its disambiguation "(...)"; the text to title (and the contents
  for a title) is the first paragraph whose first sentence names the subject, else the first that names
  it at all (KorQuAD's paragraphs are excerpts; some articles never name their subject in them).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from kositp.data.io import iter_items
from kositp.data.schema import QA, Document, Passage, Reject
from kositp.data.sources.aihub_mrc import CONTAINER_KEYS, parse_mrc_item
from kositp.data.tasks.templates import stable_hash
from kositp.data.text import dedup_key, split_clean_sentences

DISTRACTORS = 3
TITLE_TEXT_MAX_CHARS = 1200  # a paragraph to title: longer ones make a long prompt for a short answer
_DISAMBIGUATION = re.compile(r"\s*\([^()]*\)$")


def subject(title: str) -> str:
    """'김정남 (조선민주주의인민공화국)' -> '김정남': the article's subject, as the text names it."""
    return " ".join(_DISAMBIGUATION.sub("", title).split()) or title


def evidence_sentence(context: str, start: int, answer: str) -> str:
    """The sentence(s) of `context` that overlap the answer span starting at `start`."""
    end = start + len(answer)
    found, pos = [], 0
    for sentence in split_clean_sentences(context):
        begin = context.find(sentence, pos)
        pos = begin + len(sentence)
        if begin < end and pos > start:
            found.append(sentence)
    return " ".join(found)


def _has_digit(text: str) -> bool:
    return any(ch.isdigit() for ch in text)


def distractors(gold: str, answers: list[str], key: str) -> list[str]:
    """Up to DISTRACTORS other answers of the article that cannot also be right: not the gold, neither
    containing it nor inside it (the article's "1989년" is not a wrong option for "1989년 2월 15일"),
    without commas (options are listed comma-separated); answers of the gold's kind (with or without
    digits) first, then in a fixed hashed order."""
    gold_key = dedup_key(gold)
    seen, options = {gold_key}, []
    for answer in answers:
        key_ = dedup_key(answer)
        if not key_ or key_ in seen or key_ in gold_key or gold_key in key_ or "," in answer:
            continue
        seen.add(key_)
        options.append(answer)
    options.sort(key=lambda a: (_has_digit(a) != _has_digit(gold), stable_hash("distractor", key, a), a))
    return options[:DISTRACTORS]


def _span_qas(doc: Document) -> Iterator[tuple[Passage, QA]]:
    for passage in doc.passages:
        if passage.context_format == "text":
            for qa in passage.qas:
                if qa.qtype == "span" and qa.answer and qa.answer_start is not None:
                    yield passage, qa


def _enrich(doc: Document) -> None:
    """Evidence and a multiple-choice twin for every span question; the subject as title."""
    answers = [qa.answer or "" for _, qa in _span_qas(doc)]
    for passage, qa in list(_span_qas(doc)):
        qa.evidence = [evidence_sentence(passage.context, qa.answer_start or 0, qa.answer or "")]
        wrong = distractors(qa.answer or "", answers, qa.qid)
        if len(wrong) == DISTRACTORS and "," not in (qa.answer or ""):
            passage.qas.append(QA(f"{qa.qid}:mc", qa.question, qa.answer, "multiple_choice", False, qa.answer_start,
                                  [qa.answer or "", *wrong], list(qa.evidence)))
    if doc.title:
        doc.title = subject(doc.title)
        named = [split_clean_sentences(p.context) for p in doc.passages if p.context_format == "text"
                 and doc.title in p.context and len(p.context) <= TITLE_TEXT_MAX_CHARS]
        # a paragraph that opens with the subject reads as a text about it, not as an aside that names it
        named.sort(key=lambda sentences: doc.title not in sentences[0])
        doc.sentences = named[0] if named else []


def _pool_pairs(docs: list[Document]) -> list[tuple[Document, Document]]:
    """(pool article, partner article) pairs, in a fixed hashed order, until the questions asked of a
    wrong article about balance the paragraphs left to give an answerable example."""
    order = sorted(docs, key=lambda d: (stable_hash("korquad-pool", d.doc_id), d.doc_id))
    answerable = sum(len(d.passages) for d in docs)
    unanswerable = 0
    pairs = []
    while len(order) >= 2 and unanswerable < answerable:
        pool = order.pop(0)
        lent = sum(1 for _ in _span_qas(pool))
        if not lent:  # nothing to lend: it stays an ordinary document
            continue
        partner = order.pop(0)
        unanswerable += lent
        answerable -= len(pool.passages) + len(partner.passages)
        pairs.append((pool, partner))
    return pairs


def _ask_elsewhere(pool: Document, partner: Document) -> Iterator[Reject]:
    """Attach each pool question to a partner paragraph that cannot answer it."""
    name, partner_name = dedup_key(pool.title or ""), dedup_key(partner.title or "")
    contexts = [(p, dedup_key(p.context)) for p in partner.passages if p.context_format == "text"]
    for _, qa in _span_qas(pool):
        gold = dedup_key(qa.answer or "")
        # the paragraph must not hold the answer nor name the question's subject, and the question must
        # not name the paragraph's subject: two articles about one person could answer each other
        asks_partner = bool(partner_name) and partner_name in dedup_key(qa.question)
        honest = [] if asks_partner else [p for p, text in contexts
                                          if gold not in text and (not name or name not in text)]
        if not honest:
            yield Reject(pool.source, f"{pool.ref}#{qa.qid}", "no_unanswerable_partner",
                         task="answerability_classification", detail=f"partner {partner.doc_id}")
            continue
        target = min(honest, key=lambda p: stable_hash("korquad-partner", qa.qid, p.context))
        target.qas.append(QA(f"{qa.qid}@{partner.doc_id}", qa.question, None, "unanswerable", True))


def read_korquad(path: str, source: str, **_: Any) -> Iterator[Document | Reject]:
    """Every article of the file(s) under `path`, enriched as the module docstring says."""
    docs: list[Document] = []
    for entry in iter_items(path, CONTAINER_KEYS):
        if isinstance(entry, Reject):
            entry.source = source
            yield entry
            continue
        for item in parse_mrc_item(entry[1], entry[0], source):
            if isinstance(item, Document):
                docs.append(item)
            else:
                yield item
    for doc in docs:
        _enrich(doc)
    pool = set()
    for pool_doc, partner in _pool_pairs(docs):
        pool.add(id(pool_doc))
        yield from _ask_elsewhere(pool_doc, partner)
    yield from (doc for doc in docs if id(doc) not in pool)
