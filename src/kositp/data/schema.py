"""The canonical records every adapter emits and every task builder consumes.

Adapters normalise the many raw layouts (AIHub MRC/summary/table, KISTI, seed JSONL, public
instruction and preference sets) into these few shapes, so a builder never looks at raw keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ContextFormat = Literal["text", "html"]
# Normalised question types; raw qa_type/answer_type codes are mapped to these by the adapters.
QAType = Literal["span", "how", "inference", "multiple_choice", "yes_no", "table", "unanswerable"]


@dataclass
class QA:
    """One question about a passage, with its answer normalised (Yes/No -> 예/아니요, offsets checked)."""

    qid: str
    question: str
    answer: str | None  # None when unanswerable; a plausible distractor never lands here
    qtype: QAType = "span"
    is_impossible: bool = False
    answer_start: int | None = None  # verified offset into the passage, or None when not located
    options: list[str] = field(default_factory=list)  # multiple choice: all options, gold included
    evidence: list[str] = field(default_factory=list)  # clue sentences
    question_alts: list[str] = field(default_factory=list)  # other phrasings of the same question
    level: str | None = None


@dataclass
class Passage:
    """A context with its questions: an MRC paragraph, a table, or a paper QA context."""

    context: str
    context_format: ContextFormat = "text"
    qas: list[QA] = field(default_factory=list)
    table_title: str | None = None


class _LazySentences:
    """Descriptor for `Document.sentences`: an explicit list, or (when left unset) the sentences of the
    document's text passages, split on first use and cached.

    Splitting every MRC passage while reading cost a fifth of the reader's time, yet only a few
    document-level tasks (title, completion, composition) ever look at sentences; QA tasks do not.
    As a dataclass field default it makes `Document(..., sentences=[...])` work unchanged.
    """

    def __set_name__(self, owner: type, name: str) -> None:
        self._slot = f"_{name}"

    def __get__(self, obj: Document | None, owner: type) -> list[str] | None:
        if obj is None:
            return None  # the dataclass default: "derive from the passages"
        value = obj.__dict__[self._slot]
        if value is None:
            from kositp.data.text import split_clean_sentences

            value = [s for p in obj.passages if p.context_format == "text" for s in split_clean_sentences(p.context)]
            obj.__dict__[self._slot] = value
        return value

    def __set__(self, obj: Document, value: list[str] | None) -> None:
        obj.__dict__[self._slot] = value


@dataclass
class Document:
    """One source document: the unit that is never split across train/validation/test."""

    source: str  # the source's name in the build (e.g. "aihub-mrc" or a configured label)
    doc_id: str
    ref: str  # where it came from: "path[:member]#item", for rejects and debugging
    title: str | None = None
    # body text as sentences, in order; left unset (None), the text passages' sentences, split lazily
    sentences: list[str] = _LazySentences()  # type: ignore[assignment]
    passages: list[Passage] = field(default_factory=list)
    summaries: list[str] = field(default_factory=list)  # abstractive summaries, best first
    extractive_summary: list[str] = field(default_factory=list)  # extractive summary sentences
    summary_pairs: list[tuple[str, str]] = field(default_factory=list)  # (section text, its summary)
    keywords: list[str] = field(default_factory=list)
    body_html: str | None = None  # sectioned body rendered as <h1>/<p> (KISTI), for keyword tagging
    kind: str = "mrc"  # "mrc" | "summary" | "paper" | "table" | "text" | "dialogue": which checks apply
    expects_summary: bool = False  # the layout carries a summary field, so an empty one is a reject

    @property
    def text(self) -> str:
        return " ".join(self.sentences)


@dataclass
class InstructionRecord:
    """One chat example, as written to train/validation/test.jsonl."""

    task: str
    source: str
    doc_id: str
    messages: list[dict]
    ref: str = ""
    template: str | None = None  # template id, for the card and for debugging

    @property
    def prompt(self) -> str:
        return "\n".join(m["content"] for m in self.messages if m["role"] != "assistant")

    @property
    def answer(self) -> str:
        return "\n".join(m["content"] for m in self.messages if m["role"] == "assistant")


@dataclass
class PreferenceRecord:
    """One preference pair, as written to preference.jsonl (TRL's conversational prompt/chosen/rejected)."""

    task: str
    source: str
    doc_id: str
    prompt: list[dict]
    chosen: list[dict]
    rejected: list[dict]
    ref: str = ""


@dataclass
class Reject:
    """A record that could not honestly become data, with a short stable snake_case reason code."""

    source: str
    ref: str
    reason: str
    task: str | None = None
    detail: str | None = None
