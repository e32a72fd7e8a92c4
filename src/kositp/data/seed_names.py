"""Seed-project task names (`Task_name` in `{"input", "output", "Task_name"}`) <-> kositp task ids.

The seed data spells the same task many ways: spaces or underscores, `YesorNo`, `Short_answer`,
`Subjective`, `Generation` suffixes. Names are squashed (lower case, letters and digits only) and
matched against every id's squashed form after applying the known rewrites.
"""

from __future__ import annotations

import re

from kositp.data.task_names import TASKS

# The display name written on export: the seed project's own spelling of each task.
SEED_NAMES: dict[str, str] = {
    "answerability_classification": "Answerability_Classification",
    "summarization": "Summarization",
    "title_generation": "Title_Generation",
    "abstractive_qa_objective": "Abstractive_QA_Objective",
    "abstractive_qa_short": "Abstractive_QA_Short_answer",
    "abstractive_qa_long": "Abstractive_QA_Long_answer",
    "abstractive_qa_yes_no": "Abstractive_QA_YesorNo",
    "extractive_qa_objective": "Extractive_QA_Objective",
    "extractive_qa_yes_no": "Extractive_QA_YesorNo",
    "extractive_qa_short": "Extractive_QA_Short_answer",
    "extractive_qa_long": "Extractive_QA_Long_answer",
    "extractive_qa_objective_explanation": "Extractive_QA_Objective_Explanation",
    "extractive_qa_yes_no_explanation": "Extractive_QA_YesorNo_Explanation",
    "text_completion": "Text_Completion",
    "title2contents": "Title2Contents_Generation",
    "text_simplification": "Text_Simplification",
    "keyword_tagging": "Keyword_Tagging",
    "text_composition": "Text_Composition",
    "summary_expansion": "Summary_Expansion",
    "table_qa_short": "Table_QA_Short_answer",
    "paraphrasing": "Paraphrasing",
    "table2title": "Table2Title",
}

# Rewrites applied to the squashed name, in order.
_REWRITES = (
    ("yesorno", "yesno"),
    ("yesno", "yesno"),
    ("subjective", ""),
    ("shortanswer", "short"),
    ("longanswer", "long"),
    ("withexplanation", "explanation"),
    ("andexplanation", "explanation"),
    ("answer", ""),
    ("contentsgeneration", "contents"),
    ("title2content", "title2contents"),
    ("title2contentss", "title2contents"),
    ("summarisation", "summarization"),
    ("summaryexpansiongeneration", "summaryexpansion"),
)


def _squash(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "", name.lower())


_BY_SQUASHED: dict[str, str] = {}
for _task in TASKS:
    _BY_SQUASHED[_squash(_task)] = _task
    _BY_SQUASHED[_squash(SEED_NAMES[_task])] = _task


def task_id(name: str) -> str | None:
    """The kositp task id for any seed spelling, or None when it names no known task."""
    if not isinstance(name, str):
        return None
    key = _squash(name)
    if key in _BY_SQUASHED:
        return _BY_SQUASHED[key]
    for old, new in _REWRITES:
        key = key.replace(old, new)
    if key in _BY_SQUASHED:
        return _BY_SQUASHED[key]
    if key.endswith("generation") and key[: -len("generation")] in _BY_SQUASHED:
        return _BY_SQUASHED[key[: -len("generation")]]
    return None
