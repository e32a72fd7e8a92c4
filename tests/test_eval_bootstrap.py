"""Paired bootstrap intervals in `kositp eval compare`, on hand-written report folders (no model needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kositp.eval.bootstrap import load_examples, paired_bootstrap

KEYS = ["tasks/mean_primary", "tasks/record_mean_primary", "tasks/valid_rate", "tasks/checkable/mean_primary",
        "tasks/checkable/valid_rate"]


def _report(folder: Path, rows: list[tuple[str, str, float, bool]]) -> Path:
    """A report folder with a headline and the task suite's predictions: (task, id, primary score, valid)."""
    from kositp.eval.suites.tasks import PRIMARY, kind_of

    folder.mkdir(parents=True)
    with (folder / "predictions.jsonl").open("w", encoding="utf-8") as handle:
        for task, ident, score, valid in rows:
            handle.write(json.dumps({"suite": "tasks", "task": task, "id": ident, "valid": valid,
                                     "scores": {PRIMARY[kind_of(task)]: score}}) + "\n")
        handle.write(json.dumps({"suite": "seed4", "task": "nsmc", "id": "x", "valid": True, "scores": {}}) + "\n")
    (folder / "report.json").write_text(json.dumps({"model": {"model": folder.name},
                                                    "headline": {"tasks/mean_primary": 0.0, "tasks/valid_rate": 0.0}}),
                                        encoding="utf-8")
    return folder


YES_NO, SHORT, LONG = "extractive_qa_yes_no", "extractive_qa_short", "abstractive_qa_long"


def test_identical_runs_differ_by_exactly_zero(tmp_path):
    rows = [(YES_NO, f"y{i}", float(i % 2), True) for i in range(10)] + [(LONG, f"l{i}", 0.3, True) for i in range(4)]
    a = load_examples(_report(tmp_path / "a", rows))
    found = paired_bootstrap(a, a, KEYS)
    assert set(found) == set(KEYS)
    for stat in found.values():
        assert stat["difference"] == 0.0 and stat["ci95"] == [0.0, 0.0] and not stat["excludes_zero"]


def test_a_consistent_gain_has_an_interval_above_zero_and_a_mixed_one_spans_it(tmp_path):
    base = [(YES_NO, f"y{i}", 0.0, False) for i in range(20)] + [(SHORT, f"s{i}", 0.2, True) for i in range(20)]
    better = [(YES_NO, f"y{i}", 1.0 if i < 15 else 0.0, True) for i in range(20)] + \
             [(SHORT, f"s{i}", 0.4, True) for i in range(20)]
    # right where the base was wrong and wrong where it was right, as often as not
    half = [(YES_NO, f"y{i}", float(i % 2), True) for i in range(20)] + [(SHORT, f"s{i}", 0.2, True) for i in range(20)]
    other_half = [(YES_NO, f"y{i}", float(i % 2 == 0), True) for i in range(20)] + \
                 [(SHORT, f"s{i}", 0.2, True) for i in range(20)]
    a, b = (load_examples(_report(tmp_path / n, r)) for n, r in (("a", base), ("b", better)))
    c, d = (load_examples(_report(tmp_path / n, r)) for n, r in (("c", half), ("d", other_half)))
    gain = paired_bootstrap(b, a, KEYS)
    # macro mean: yes/no +0.75, short +0.2 -> +0.475; valid: all 20 yes/no answers became valid
    assert gain["tasks/mean_primary"]["difference"] == pytest.approx(0.475)
    assert gain["tasks/valid_rate"]["difference"] == pytest.approx(0.5)
    low, high = gain["tasks/mean_primary"]["ci95"]
    assert 0.0 < low < 0.475 < high and gain["tasks/mean_primary"]["excludes_zero"]
    noise = paired_bootstrap(d, c, KEYS)
    low, high = noise["tasks/mean_primary"]["ci95"]
    assert noise["tasks/mean_primary"]["difference"] == 0.0 and low < -0.1 and high > 0.1
    assert not noise["tasks/mean_primary"]["excludes_zero"]
    assert gain == paired_bootstrap(b, a, KEYS)  # seeded: the same intervals every time


def test_only_examples_both_runs_scored_are_paired_and_checkable_excludes_open_ended(tmp_path):
    common = [(YES_NO, f"y{i}", 1.0, True) for i in range(10)] + [(LONG, f"l{i}", 0.5, True) for i in range(10)]
    a = load_examples(_report(tmp_path / "a", common + [(YES_NO, "only-a", 1.0, True)]))
    b = load_examples(_report(tmp_path / "b", [(t, i, 0.0 if t == YES_NO else 0.1, v) for t, i, _, v in common]
                                              + [(LONG, "only-b", 0.9, True)]))
    found = paired_bootstrap(a, b, KEYS)
    assert found["tasks/mean_primary"]["n"] == 20
    assert found["tasks/mean_primary"]["difference"] == pytest.approx((1.0 + 0.4) / 2)
    assert found["tasks/checkable/mean_primary"]["n"] == 10
    assert found["tasks/checkable/mean_primary"]["difference"] == 1.0


def test_the_record_mean_weighs_each_record_once_where_the_task_mean_weighs_each_task_once(tmp_path):
    # 30 short answers unchanged, one 2-record task losing one of its two: -0.25 on the task mean, -1/32 per record
    short = [(SHORT, f"s{i}", 0.5, True) for i in range(30)]
    a = load_examples(_report(tmp_path / "a", short + [(YES_NO, "y0", 1.0, True), (YES_NO, "y1", 1.0, True)]))
    b = load_examples(_report(tmp_path / "b", short + [(YES_NO, "y0", 1.0, True), (YES_NO, "y1", 0.0, True)]))
    found = paired_bootstrap(b, a, KEYS)
    assert found["tasks/mean_primary"]["difference"] == pytest.approx(-0.25)
    assert found["tasks/record_mean_primary"]["difference"] == pytest.approx(-1 / 32)
    assert found["tasks/record_mean_primary"]["n"] == 32


def test_compare_writes_the_intervals_for_every_pair(tmp_path):
    from kositp.eval.compare import compare

    rows = [(YES_NO, f"y{i}", 0.0, True) for i in range(12)]
    dirs = [_report(tmp_path / name, [(t, i, s + bump, v) for t, i, s, v in rows])
            for name, bump in (("sft", 0.0), ("dpo", 0.5), ("grpo", 1.0))]
    result = compare(dirs, tmp_path / "cmp")
    pairs = [(c["run"], c["versus"]) for c in result["paired_bootstrap"]["comparisons"]]
    assert pairs == [("dpo", "sft"), ("grpo", "sft"), ("grpo", "dpo")]
    assert result["paired_bootstrap"]["comparisons"][1]["statistics"]["tasks/mean_primary"]["difference"] == 1.0
    table = (tmp_path / "cmp" / "comparison.md").read_text(encoding="utf-8")
    assert "| metric | examples | dpo − sft | grpo − sft | grpo − dpo |" in table
    assert ("| tasks/mean_primary | 12 | **+0.5000** [+0.5000, +0.5000] ↑ | **+1.0000** [+1.0000, +1.0000] ↑ | "
            "**+0.5000** [+0.5000, +0.5000] ↑ |") in table
    saved = json.loads((tmp_path / "cmp" / "comparison.json").read_text(encoding="utf-8"))
    assert saved["paired_bootstrap"]["seed"] == 0 and len(saved["paired_bootstrap"]["comparisons"]) == 3


def test_one_example_per_task_still_gives_an_interval(tmp_path):
    """The demo's test split has one or two examples per task: redrawing within each task would never vary."""
    from kositp.data.task_names import TASKS
    from kositp.eval.suites.tasks import PRIMARY, kind_of

    tasks = [t for t in TASKS if PRIMARY[kind_of(t)] == "accuracy"][:5] + [SHORT, "table_qa_short", "keyword_tagging",
                                                                          "abstractive_qa_short", LONG]
    a = load_examples(_report(tmp_path / "a", [(t, "1", float(i % 2), True) for i, t in enumerate(tasks)]))
    b = load_examples(_report(tmp_path / "b", [(t, "1", 0.0, True) for t in tasks]))
    stat = paired_bootstrap(a, b, KEYS)["tasks/mean_primary"]
    low, high = stat["ci95"]
    assert stat["n"] == 10 and stat["difference"] == 0.5 and low < 0.5 < high and low >= 0.0 and high <= 1.0
