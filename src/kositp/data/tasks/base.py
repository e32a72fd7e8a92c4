"""What a task builder produces, and the knobs builders share."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Example:
    """A task instance before templating: the template's fields and the target answer."""

    task: str
    key: str  # stable identity (source|doc|item|task): picks the template, names the record
    fields: dict[str, str]
    answer: str


@dataclass
class TaskOptions:
    """Builder thresholds (mirrored in BuildConfig.task_options)."""

    long_answer_min_chars: int = 20  # answers at least this long are "long answer" tasks
    completion_prefix_ratio: float = 0.5  # text completion: share of sentences given as the prefix
    completion_max_sentences: int = 12  # text completion: window of sentences used from a document
    min_keywords: int = 2
    max_title_chars: int = 80
    seed: int = 0
    extra: dict = field(default_factory=dict)
