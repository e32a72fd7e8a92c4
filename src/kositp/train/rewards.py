"""Rewards for GRPO, scored with the held-out task suite's own rules (kositp/eval/suites/tasks.py).

Each reward is one number per completion, and TRL logs each under its own name
(`rewards/<name>/mean` in metrics.jsonl); the recipe weighs them (`rewards:` in an RL recipe):

| name     | range   | what it scores                                                                   |
|----------|---------|----------------------------------------------------------------------------------|
| `task`   | 0..1    | the eval's primary metric against the gold answer (accuracy for answerability,   |
|          |         | yes/no and objective tasks; morpheme token F1 for short QA and table QA; keyword |
|          |         | F1; simplification: the mean of ROUGE-L and the <= 50-character rule)           |
| `format` | 0 or 1  | the output is in the task's answer format as the eval parser reads it (a label,  |
|          |         | an option, `근거:` evidence, no template markers ...) and ended at end-of-turn  |
| `korean` | 0..1    | share of the letters that are Hangul, letters of words copied from the prompt    |
|          |         | or the gold answer not counted: a reply drifting into English, Chinese or        |
|          |         | another script scores low                                                        |
| `length` | -1..0   | optional: 0 up to twice the gold answer's length, falling to -1 at four times it  |

Open-ended tasks (summaries, long answers, composition, expansion, titles) have no answer to
check, only a reference to resemble; they are left out of RL by default (`tasks.OPEN_ENDED_KINDS`).
Nothing here re-implements a metric: `task` and `format` are `tasks.score_example`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from kositp.data.task_names import TASKS
from kositp.eval.suites import tasks as task_suite

REWARD_NAMES = ("task", "format", "korean", "length")
# `length`: no penalty up to LENGTH_SLACK x the gold answer's length, -1 from 2 x LENGTH_SLACK on.
LENGTH_SLACK = 2.0

_HANGUL = re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]")
# A run of letters of one kind: Hangul syllables/jamo, or any other letters (Latin, Han, kana, Cyrillic, ...).
_WORD = re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]+|[^\W\d_\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]+")


def verifiable_tasks() -> list[str]:
    """The tasks RL uses by default: every task whose answer the suite can check."""
    return [t for t in TASKS if task_suite.kind_of(t) not in task_suite.OPEN_ENDED_KINDS]


def task_score(task: str, prompt: list[dict], output: str, gold: str) -> float:
    """The eval's primary metric of `output` against `gold`; simplification adds its length rule."""
    scored = task_suite.score_example(task, prompt, output, gold, finished=True)["scores"]
    kind = task_suite.kind_of(task)
    if kind == "simplification":
        return (scored["rouge_l"] + scored["within_50_chars"]) / 2
    return scored[task_suite.PRIMARY[kind]]


def format_score(task: str, prompt: list[dict], output: str, gold: str, finished: bool) -> float:
    """1 when the eval counts `output` as valid for `task` and the reply ended at an end-of-turn token."""
    return float(finished and task_suite.score_example(task, prompt, output, gold, finished)["valid"])


def korean_score(output: str, source: str) -> float:
    """Share of `output`'s letters that are Hangul; words copied from `source` (prompt + gold) are neutral.

    An output without letters (a number, an option index) has nothing to drift and scores 1.
    """
    known = {w.lower() for w in _WORD.findall(source)}
    hangul = foreign = 0
    for word in _WORD.findall(output):
        if _HANGUL.match(word):
            hangul += len(word)
        elif word.lower() not in known:
            foreign += len(word)
    return 1.0 if hangul + foreign == 0 else hangul / (hangul + foreign)


def length_score(output: str, gold: str) -> float:
    """0 while `output` is at most LENGTH_SLACK x as long as `gold` (characters), then down to -1."""
    budget = LENGTH_SLACK * max(len(gold.strip()), 1)
    excess = len(output.strip()) - budget
    return -min(1.0, max(0.0, excess / budget))


def completion_text(completion: Any) -> str:
    """The reply text of a TRL completion: a conversational `[{"role": "assistant", ...}]` or a string."""
    if isinstance(completion, list):
        return "".join(m.get("content") or "" for m in completion if isinstance(m, dict))
    return str(completion)


def _source_text(prompt: Any, gold: str) -> str:
    if isinstance(prompt, list):
        prompt = "\n".join(m.get("content") or "" for m in prompt if isinstance(m, dict))
    return f"{prompt}\n{gold}"


class Reward:
    """A TRL reward function: called with the batch's prompts, completions, completion ids and the
    dataset's `task` and `gold` columns, returns one float per completion. `__name__` is what TRL
    logs it under (`rewards/<name>/mean`)."""

    def __init__(self, name: str, score: Callable[..., float], end_of_turn_ids: Sequence[int] = ()):
        self.__name__ = name
        self.score = score
        self.end_of_turn_ids = set(end_of_turn_ids)

    def __call__(self, prompts, completions, completion_ids, task, gold, **_: Any) -> list[float]:
        rewards = []
        for prompt, completion, ids, task_name, gold_text in zip(prompts, completions, completion_ids, task, gold,
                                                                 strict=True):
            finished = bool(ids) and ids[-1] in self.end_of_turn_ids
            rewards.append(self.score(task_name, prompt, completion_text(completion), gold_text, finished))
        return rewards


def make_rewards(weights: dict[str, float], end_of_turn_ids: Sequence[int]) -> tuple[list[Reward], list[float]]:
    """The reward functions with a non-zero weight, in REWARD_NAMES order, and their weights."""
    scorers: dict[str, Callable[..., float]] = {
        "task": lambda task, prompt, output, gold, finished: task_score(task, prompt, output, gold),
        "format": format_score,
        "korean": lambda task, prompt, output, gold, finished: korean_score(output, _source_text(prompt, gold)),
        "length": lambda task, prompt, output, gold, finished: length_score(output, gold),
    }
    chosen = [name for name in REWARD_NAMES if weights.get(name, 0.0) != 0.0]
    return [Reward(name, scorers[name], end_of_turn_ids) for name in chosen], [weights[name] for name in chosen]
