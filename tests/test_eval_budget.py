"""Per-task generation budgets of the tasks suite and batching by budget, on the tiny model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

FIXTURE = Path(__file__).parent / "fixtures" / "eval"
PROMPTS = ["안녕하세요", "대한민국의 수도는 어디인가요? 한 단어로 답하세요.", "요약해 주세요: 청솔군은 교통비를 지원한다.",
           "질문: 청솔군은 몇 세 이상에게 교통비를 지원하나요?", "제목을 붙여 주세요: 도서관이 야간 개관을 시작했다.",
           "예 또는 아니요로 답하세요: 서울은 대한민국의 수도인가요?"]


@pytest.fixture(scope="module")
def generator(tiny_model_dir):
    from kositp.eval.generate import LocalGenerator
    from kositp.eval.loading import load_for_eval

    return LocalGenerator(load_for_eval(str(tiny_model_dir)), batch_size=2)


def _conversations():
    return [[{"role": "user", "content": text}] for text in PROMPTS]


def _record(task: str, gold: str) -> dict:
    return {"task": task, "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": gold}]}


def test_task_budgets_follow_the_longest_reference_of_each_task_and_the_cap():
    from kositp.eval.suites.tasks import BUDGET_FACTOR, BUDGET_SLACK, task_budgets

    records = [_record("extractive_qa_short", "서울"), _record("extractive_qa_short", "대한민국 서울 특별시"),
               _record("summary", " ".join(["말"] * 300))]
    words = lambda text: len(text.split())  # noqa: E731 - a stand-in tokenizer with known counts
    budgets = task_budgets(records, words, max_new_tokens=128)
    assert budgets == {"extractive_qa_short": math.ceil(BUDGET_FACTOR * 3) + BUDGET_SLACK, "summary": 128}
    assert task_budgets(records, words, 128, "fixed") == {"extractive_qa_short": 128, "summary": 128}
    from kositp.errors import KositpError

    with pytest.raises(KositpError, match="unknown task_budget"):
        task_budgets(records, words, 128, "longest")


def test_grouping_by_budget_keeps_generations_and_order_when_budgets_are_equal(generator):
    grouped = generator.generate(_conversations(), [10] * len(PROMPTS), group_by_budget=True)
    mixed = generator.generate(_conversations(), [10] * len(PROMPTS), group_by_budget=False)
    single = generator.generate(_conversations(), 10)
    assert grouped == mixed == single
    one_by_one = [generator.generate([c], 10)[0] for c in _conversations()]
    assert grouped == one_by_one  # each output belongs to its own prompt, in input order


def test_batches_are_ordered_by_budget_and_each_row_keeps_its_budget(generator):
    budgets = [4, 12, 4, 12, 4, 7]
    encoded = [generator._encode(c) for c in _conversations()]
    batches = generator.batches(encoded, budgets, group_by_budget=True)
    assert sorted(i for b in batches for i in b) == list(range(len(PROMPTS)))
    assert [sorted(budgets[i] for i in b) for b in batches] == [[4, 4], [4, 7], [12, 12]]  # full, by budget
    assert all(len(encoded[b[0]]) >= len(encoded[b[1]]) for b in batches if budgets[b[0]] == budgets[b[1]])
    assert any(len({budgets[i] for i in b}) > 1 for b in generator.batches(encoded, budgets, group_by_budget=False))

    grouped = generator.generate(_conversations(), budgets, group_by_budget=True)
    mixed = generator.generate(_conversations(), budgets, group_by_budget=False)
    assert grouped == mixed  # a mixed batch runs to its largest budget, each row is cut to its own
    assert all(g.n_tokens <= b for g, b in zip(grouped, budgets, strict=True))
    long_run = generator.generate(_conversations(), 12)
    for short, full, budget in zip(grouped, long_run, budgets, strict=True):
        if short.finished:
            assert short == full  # stopped on its own before the budget: the budget changed nothing
        else:
            assert short.n_tokens == budget
    with pytest.raises(ValueError, match="budgets for"):
        generator.generate(_conversations(), [4, 4])


def test_tasks_suite_records_each_task_budget_and_the_outputs_it_cut(tmp_path):
    from kositp.eval.run import EvalConfig, evaluate
    from kositp.eval.suites.tasks import task_budgets

    cfg = EvalConfig(model="tiny", suites=["tasks"], data=FIXTURE, max_new_tokens=24, batch_size=4, out=tmp_path / "r")
    report = evaluate(cfg, show_progress=False)
    settings = report["suites"]["tasks"]["settings"]
    budgets = settings["max_new_tokens_per_task"]
    examples = [json.loads(line) for line in (tmp_path / "r" / "predictions.jsonl").read_text().splitlines()]
    tasks = {e["task"] for e in examples}
    assert set(budgets) == tasks and all(1 <= b <= 24 for b in budgets.values())
    assert len(set(budgets.values())) > 1  # the fixture's short and long answers get different budgets
    assert settings["task_budget"] == "references"
    for example in examples:
        assert example["n_tokens"] <= budgets[example["task"]]
    cut = {t: sum(not e["finished"] for e in examples if e["task"] == t) for t in tasks}
    assert settings["cut_by_budget"] == cut
    markdown = (tmp_path / "r" / "report.md").read_text(encoding="utf-8")
    assert f"outputs cut by it: {sum(cut.values())} of {len(examples)}" in markdown

    records = [json.loads(line) for line in (FIXTURE / "test.jsonl").read_text().splitlines() if line.strip()]
    from kositp.eval.generate import LocalGenerator
    from kositp.eval.loading import load_for_eval

    counted = task_budgets(records, LocalGenerator(load_for_eval("tiny")).count_tokens, 24)
    assert budgets == counted

    fixed = evaluate(cfg.model_copy(update={"task_budget": "fixed", "out": tmp_path / "f"}), show_progress=False)
    assert set(fixed["suites"]["tasks"]["settings"]["max_new_tokens_per_task"].values()) == {24}
