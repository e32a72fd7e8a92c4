"""Target-quality rules: what a careful annotator checks before a target becomes training data.

A model learns its targets' habits: a summary that ends in "..", a "simplification" that is the
source's first sentence, a paraphrase that stops at "...곳은" all teach the wrong thing. Each rule
below looks at one target (with the prompt it answers and the passage it is about) and names
what is wrong; `kositp data build` rejects the record with the rule's reason and counts it.

Which rule applies to which task (`RULES`; tasks not listed, and records of other tasks such as
chat or preference sets, are not checked, since casual chat uses ".." as an ellipsis):

| task                                      | double | missing | truncated | copies | answer | evidence |
|-------------------------------------------|:------:|:-------:|:---------:|:------:|:------:|:--------:|
| summarization, text_simplification        |   x    |    x    |     x     |   x    |        |          |
| text_completion, text_composition         |   x    |    x    |     x     |   x    |        |          |
| summary_expansion, title2contents         |   x    |    x    |     x     |        |        |          |
| paraphrasing                              |   x    |         |     x     |   x    |        |          |
| extractive_qa_short, extractive_qa_long   |   x    |         |           |        |   x    |          |
| table_qa_short                            |        |         |           |        |   x    |          |
| extractive_qa_*_explanation               |        |         |           |        |        |    x     |
| title_generation, table2title, abstractive_qa_short/long | x |  |           |        |        |          |

Columns: `doubled_final_punctuation`, `missing_final_punctuation`, `truncated_target`,
`target_copies_prompt`, `answer_not_in_passage`, `evidence_not_in_passage`.
Label tasks (answerability, yes/no, objective, keyword tagging) have fixed vocabularies that their
builders and adapters already enforce.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from kositp.data.task_names import split_explanation
from kositp.data.text import clean, linearize_table, looks_html

SENTENCE_END = ".?!。？！…"
CLOSERS = "\"'”’」』》〉)]）"  # closing quotes and brackets may follow the final mark


@dataclass(frozen=True)
class Target:
    task: str
    text: str  # the answer (assistant turn)
    prompt: str  # every non-assistant turn, as rendered
    passage: str  # what the answer is about (context, table or text field); the prompt when unknown


Rule = Callable[[Target], "str | None"]  # a short detail when the target breaks the rule, else None


def _body(text: str) -> str:
    """The text without trailing spaces and closing quotes/brackets."""
    return text.rstrip().rstrip(CLOSERS).rstrip()


def final_marks(text: str) -> str:
    """The run of sentence-final punctuation the text ends with ('' when none)."""
    body = _body(text)
    stem = body.rstrip(SENTENCE_END)
    return body[len(stem):]


def _stem(text: str) -> str:
    """The text without its final punctuation, closing quotes and surrounding space."""
    return _body(text).rstrip(SENTENCE_END).rstrip()


def doubled_final_punctuation(t: Target) -> str | None:
    """".." or a period beside "?"/"!" at the end. An ellipsis ("…", "...", "……", also followed by
    one mark, as Korean orthography writes "……." at a sentence end) and emphatic "?!", "!!", "??"
    are deliberate and pass."""
    marks = final_marks(t.text)
    if "…" in marks or "..." in marks:
        return None
    periods = marks.count(".") + marks.count("。")
    if periods >= 2 or (periods == 1 and len(marks) > 1):
        return f"ends with '{marks}'"
    return None


def missing_final_punctuation(t: Target) -> str | None:
    """A sentence-shaped target (summary, completion, full text) ends with a sentence mark."""
    return None if final_marks(t.text) else f"ends with '{_body(t.text)[-8:]}'"


# Word endings that leave a Korean sentence unfinished. Connective endings join a clause to the
# next one ("...하며", "...했지만", "...되어서"); the one-syllable ones (고/며/면) only after a verb
# stem or tense marker, because many nouns end in those syllables (보고, 최고, 장면). Particles
# mark a noun for a verb that never comes ("...충전되는 곳은"); 을/의/과/이/가 are left out because
# common nouns end in them (마을, 회의, 결과) and 가 also ends questions (인가).
_CONNECTIVE = re.compile(
    r"(?:면서|으며|지만|는데|은데|으나|거나|도록|려고|므로|아서|어서|해서|여서|다가|자마자|더라도|든지|고서"
    r"|(?:하|되|했|됐|있|없|이|였|었|았|겠|않|받|시)(?:고|며|면))$")
_PARTICLE = re.compile(r"(?:[가-힣](?:은|는|를)|에서|에게|으로|및|또는)$")
_MIN_COPY_CHARS = 8  # a shorter piece can sit in a passage or a template's instruction by chance


def truncated_target(t: Target) -> str | None:
    """The target stops before its sentence does: cut mid-word out of the passage ("...옮길 계."
    where the passage says "...옮길 계획이다."), or its last word is a connective ending or a
    particle waiting for the rest of the sentence."""
    stem = _stem(t.text)
    if not stem:
        return None
    last = stem.split()[-1]
    # "...죽었는데?" is a whole spoken question: a question mark closes a connective ending
    if _CONNECTIVE.search(last) and "?" not in final_marks(t.text):
        return f"ends with the connective '{last}'"
    if _PARTICLE.search(last):
        return f"ends with the particle in '{last}'"
    if len(stem) >= _MIN_COPY_CHARS:
        passage = clean(t.passage)
        at = passage.find(clean(stem))
        if at >= 0:
            after = passage[at + len(clean(stem)): at + len(clean(stem)) + 1]
            if after and (after.isalnum() or "가" <= after <= "힣"):
                return f"cut before '{after}' of the passage"
    return None


def target_copies_prompt(t: Target) -> str | None:
    """The target is the passage itself, or appears verbatim in the prompt: a summary, a
    simplification, a paraphrase or a continuation that is only copied teaches copying."""
    stem = clean(_stem(t.text))
    if not stem:
        return None
    if stem == clean(_stem(t.passage)):
        return "identical to the passage"
    if len(stem) >= _MIN_COPY_CHARS and stem in clean(t.prompt):
        return "contained verbatim in the prompt"
    return None


def _in_passage(piece: str, passage: str) -> bool:
    piece, text = clean(piece), clean(passage)
    if piece in text:
        return True
    return looks_html(passage) and piece in clean(linearize_table(passage))


def answer_not_in_passage(t: Target) -> str | None:
    """Extractive answers are spans of their passage (or cells of their table)."""
    return None if _in_passage(t.text, t.passage) else "answer not found in the passage"


def evidence_not_in_passage(t: Target) -> str | None:
    """The evidence line of an explanation task quotes the passage."""
    _, evidence = split_explanation(t.text)
    if evidence is None:
        return "no evidence line"
    return None if _in_passage(evidence, t.passage) else "evidence not found in the passage"


SENTENCE_RULES: tuple[Rule, ...] = (doubled_final_punctuation, missing_final_punctuation, truncated_target)
RULES: dict[str, tuple[Rule, ...]] = {
    "summarization": (*SENTENCE_RULES, target_copies_prompt),
    "text_simplification": (*SENTENCE_RULES, target_copies_prompt),
    "text_completion": (*SENTENCE_RULES, target_copies_prompt),
    "text_composition": (*SENTENCE_RULES, target_copies_prompt),
    "summary_expansion": SENTENCE_RULES,
    "title2contents": SENTENCE_RULES,
    # Questions in the corpora (AIHub, KorQuAD) often end without "?": completeness is checked
    # by the truncation rule, not by a final mark.
    "paraphrasing": (doubled_final_punctuation, truncated_target, target_copies_prompt),
    "extractive_qa_short": (doubled_final_punctuation, answer_not_in_passage),
    "extractive_qa_long": (doubled_final_punctuation, answer_not_in_passage),
    "table_qa_short": (answer_not_in_passage,),
    "extractive_qa_objective_explanation": (evidence_not_in_passage,),
    "extractive_qa_yes_no_explanation": (evidence_not_in_passage,),
    "title_generation": (doubled_final_punctuation,),
    "table2title": (doubled_final_punctuation,),
    "abstractive_qa_short": (doubled_final_punctuation,),
    "abstractive_qa_long": (doubled_final_punctuation,),
}
REASONS: tuple[str, ...] = ("doubled_final_punctuation", "missing_final_punctuation", "truncated_target",
                            "target_copies_prompt", "answer_not_in_passage", "evidence_not_in_passage")


def check_target(task: str, text: str, prompt: str, passage: str | None = None) -> tuple[str, str] | None:
    """(reason, detail) of the first rule of `task` the target breaks, or None when it passes them all."""
    target = Target(task, text, prompt, prompt if passage is None else passage)
    for rule in RULES.get(task, ()):
        detail = rule(target)
        if detail is not None:
            return rule.__name__, detail
    return None
