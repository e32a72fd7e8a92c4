"""The contract between the data stage and evaluation: every gold answer the demo build writes
is a valid answer under eval's parser and scores perfectly against itself. A change in one
stage's answer format (예/아니요, 보기:, 근거:, keyword separator, ...) breaks this test, not a
silent zero in someone's report."""

from __future__ import annotations

import json

import pytest

from kositp.config import load_config
from kositp.data.build import BuildConfig, build
from kositp.data.task_names import TASKS
from kositp.eval.suites.tasks import score_example
from kositp.recipes import RECIPES_DIR

DEMO = RECIPES_DIR / "data" / "demo.yaml"


@pytest.fixture(scope="module")
def demo_records(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("contract")
    build(load_config(BuildConfig, DEMO), out)
    return [
        json.loads(line)
        for split in ("train", "validation", "test")
        for line in (out / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
    ]


def test_every_gold_answer_is_valid_and_scores_perfectly(demo_records):
    seen = set()
    for record in demo_records:
        gold = record["messages"][-1]["content"]
        result = score_example(record["task"], record["messages"][:-1], gold, gold, True)
        assert result["valid"], (record["task"], gold)
        for metric, value in result["scores"].items():
            perfect = 100.0 if metric == "chrf" else 1.0
            assert value == pytest.approx(perfect), (record["id"], metric, gold)
        seen.add(record["task"])
    assert seen == set(TASKS)
