"""The 22 task builders, one registry keyed by the ids in `kositp.data.task_names.TASKS`.

A builder takes a canonical `Document` and yields `Example`s (template fields + answer) for its
task, or `Reject`s for candidates that cannot honestly make that task. Documents that are simply
not candidates (a table for text completion) yield nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from kositp.data.schema import Document, Reject
from kositp.data.task_names import TASKS
from kositp.data.tasks import qa, text
from kositp.data.tasks.base import Example, TaskOptions

Builder = Callable[[Document, TaskOptions], Iterator[Example | Reject]]

BUILDERS: dict[str, Builder] = {
    "answerability_classification": qa.answerability_classification,
    "summarization": text.summarization,
    "title_generation": text.title_generation,
    "abstractive_qa_objective": qa.abstractive_qa_objective,
    "abstractive_qa_short": qa.abstractive_qa_short,
    "abstractive_qa_long": qa.abstractive_qa_long,
    "abstractive_qa_yes_no": qa.abstractive_qa_yes_no,
    "extractive_qa_objective": qa.extractive_qa_objective,
    "extractive_qa_yes_no": qa.extractive_qa_yes_no,
    "extractive_qa_short": qa.extractive_qa_short,
    "extractive_qa_long": qa.extractive_qa_long,
    "extractive_qa_objective_explanation": qa.extractive_qa_objective_explanation,
    "extractive_qa_yes_no_explanation": qa.extractive_qa_yes_no_explanation,
    "text_completion": text.text_completion,
    "title2contents": text.title2contents,
    "text_simplification": text.text_simplification,
    "keyword_tagging": text.keyword_tagging,
    "text_composition": text.text_composition,
    "summary_expansion": text.summary_expansion,
    "table_qa_short": qa.table_qa_short,
    "paraphrasing": qa.paraphrasing,
    "table2title": text.table2title,
}
assert tuple(BUILDERS) == TASKS, "the registry must list exactly the 22 task ids, in order"


def build_examples(doc: Document, tasks: tuple[str, ...], opt: TaskOptions) -> Iterator[Example | Reject]:
    for task in tasks:
        yield from BUILDERS[task](doc, opt)


__all__ = ["BUILDERS", "Example", "TaskOptions", "build_examples"]
