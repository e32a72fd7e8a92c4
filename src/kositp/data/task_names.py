"""The 22 SuperNI-style task ids and the answer conventions every stage shares.

Data builders write these ids into each record's `task` field and format answers with these
constants; training (rule-based negatives), evaluation (answer parsing) and the chat page's
starters read the same names, so a convention changes in one place.
"""

from __future__ import annotations

TASKS: tuple[str, ...] = (
    "answerability_classification",
    "summarization",
    "title_generation",
    "abstractive_qa_objective",
    "abstractive_qa_short",
    "abstractive_qa_long",
    "abstractive_qa_yes_no",
    "extractive_qa_objective",
    "extractive_qa_yes_no",
    "extractive_qa_short",
    "extractive_qa_long",
    "extractive_qa_objective_explanation",
    "extractive_qa_yes_no_explanation",
    "text_completion",
    "title2contents",
    "text_simplification",
    "keyword_tagging",
    "text_composition",
    "summary_expansion",
    "table_qa_short",
    "paraphrasing",
    "table2title",
)

# Answer conventions.
YES = "예"
NO = "아니요"
UNANSWERABLE = "답변할 수 없음"  # answerability: the target when the context does not answer
ANSWERABLE = "답변할 수 있음"
OPTIONS_PREFIX = "보기:"  # objective tasks list their options after this prefix
EVIDENCE_PREFIX = "근거:"  # explanation tasks: "<answer>\n근거: <evidence sentence>"
KEYWORD_SEPARATOR = ", "  # keyword tagging: keywords joined by this
SIMPLIFICATION_MAX_CHARS = 50


def with_explanation(answer: str, evidence: str) -> str:
    """The target of an `*_explanation` task: the answer, then the evidence sentence on its own line."""
    return f"{answer}\n{EVIDENCE_PREFIX} {evidence}"


def split_explanation(text: str) -> tuple[str, str | None]:
    """Inverse of `with_explanation`; evidence is None when the text has no evidence line."""
    head, sep, tail = text.partition(EVIDENCE_PREFIX)
    return (head.strip(), tail.strip()) if sep else (text.strip(), None)
