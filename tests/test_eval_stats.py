"""Bootstrap intervals of every headline metric, the comparison figure and the paired differences of runs.

Report folders are written by the real report code (`build_report`, `write_report`) from suite
results assembled here with the suites' own scoring functions, so no model is needed.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from kositp.eval import metrics, stats

YES_NO, SHORT, LONG = "extractive_qa_yes_no", "extractive_qa_short", "abstractive_qa_long"


def _tasks_result(rng: random.Random, n_per_task: dict[str, int], skill: float):
    from kositp.eval.suites import SuiteResult
    from kositp.eval.suites.tasks import PRIMARY, aggregate, kind_of

    examples = []
    for task, n in n_per_task.items():
        for i in range(n):
            primary = PRIMARY[kind_of(task)]
            value = float(rng.random() < skill) if primary == "accuracy" else round(rng.random() * skill, 3)
            examples.append({"suite": "tasks", "task": task, "id": f"{task}-{i}", "valid": rng.random() < skill,
                             "scores": {primary: value}})
    return SuiteResult("tasks", aggregate(examples), examples)


def _seed4_result(rng: random.Random, n: int, skill: float):
    from kositp.eval.suites import SuiteResult, seed4

    per_task, examples = {}, []
    for name in ("nsmc", "hatespeech"):
        benchmark = seed4.BENCHMARKS[name]
        labels = list(benchmark.surfaces)
        golds = [labels[(i * 7) % len(labels)] for i in range(n)]
        preds = [g if rng.random() < skill else (None if rng.random() < 0.3 else rng.choice(labels)) for g in golds]
        per_task[name] = seed4.score(benchmark, golds, preds)
        examples += [{"suite": "seed4", "task": name, "id": f"{name}{i}", "gold": g, "parsed": p, "valid": p is not None,
                      "label": g, "prediction": p, "scores": {"correct": float(p == g)}}
                     for i, (g, p) in enumerate(zip(golds, preds, strict=True))]
    return SuiteResult("seed4", {"per_task": per_task, "summary": {}, "seed_reference": seed4.SEED_REFERENCE}, examples)


def _kobest_result(rng: random.Random, n: int, skill: float):
    from kositp.eval.suites import SuiteResult, kobest

    task = kobest.KOBEST["hellaswag"]
    docs = [{"context": "c", **{f"ending_{k}": f"e{k}" for k in range(1, 5)}, "label": i % 4, "id": str(i)}
            for i in range(n)]
    lls = [[(0.0 if (k == d["label"]) == (rng.random() < skill) else -1.0 - rng.random()) for k in range(4)]
           for d in docs]
    examples = []
    for doc, ll in zip(docs, lls, strict=True):
        pred = max(range(4), key=lambda i, ll=ll: (ll[i], -i))
        examples.append({"suite": "kobest", "task": "hellaswag", "id": doc["id"], "valid": True, "label": doc["label"],
                         "prediction": pred, "scores": {"correct": float(pred == doc["label"])}})
    return SuiteResult("kobest", {"per_task": {"hellaswag": kobest.score_task(task, docs, lls)}, "summary": {}},
                       examples)


def write_run(folder: Path, seed: int, skill: float, n: int = 30) -> dict:
    """A report folder (report.json, predictions.jsonl, report.md, report.png) with tasks, seed4 and kobest."""
    from kositp.eval.report import build_report, write_report

    rng = random.Random(seed)
    results = [_tasks_result(rng, {YES_NO: n, SHORT: n, LONG: 3}, skill), _seed4_result(rng, n, skill),
               _kobest_result(rng, n, skill)]
    report = build_report({"model": folder.name}, {}, {"seed": 0}, results)
    write_report(folder, report, results)
    return report


# --------------------------------------------------------------------------- statistics as sums


def _expanded(rows: list, counts: np.ndarray) -> list:
    return [row for row, c in zip(rows, counts, strict=True) for _ in range(int(c))]


@pytest.mark.parametrize("labels", [["a", "b", "c"], None])
def test_macro_f1_on_a_redraw_equals_the_metric_on_the_redrawn_examples(labels):
    rng = random.Random(3)
    golds = [rng.choice("abc") for _ in range(40)]
    preds = [rng.choice(["a", "b", "c", None]) for _ in range(40)]
    strict = [p or "<invalid>" for p in preds]
    stat = stats.macro_f1_statistic(golds, strict if labels else preds, labels,
                                    mask=None if labels else [p is not None for p in preds])
    counts = stats.redraw_counts(40, 5, np.random.default_rng(0))
    redrawn = stat.finish(counts @ stat.columns)
    for row, value in zip(counts, redrawn, strict=True):
        g, p = _expanded(golds, row), _expanded(preds, row)
        if labels:
            expected = metrics.macro_f1(g, [x or "<invalid>" for x in p], labels=labels)
        else:  # valid only, classes seen: the seed's own figure
            kept = [(a, b) for a, b in zip(g, p, strict=True) if b is not None]
            expected = metrics.macro_f1([a for a, _ in kept], [b for _, b in kept]) if kept else 0.0
        assert value == pytest.approx(expected, abs=1e-12)


def test_group_macro_and_ratio_on_a_redraw_equal_their_direct_computation():
    values = [1.0, 0.0, 0.5, 0.25, 1.0, 0.0, 0.75]
    groups = ["x", "x", "y", "y", "y", "z", "z"]
    stat = stats.group_macro_statistic(values, groups)
    assert stat.value() == pytest.approx((0.5 + 1.75 / 3 + 0.375) / 3)
    counts = np.array([[0, 3, 1, 0, 0, 2, 1]], float)  # group y drawn once; x and z several times
    assert stat.finish(counts @ stat.columns)[0] == pytest.approx((0.0 + 0.5 + 0.25) / 3)
    ratio = stats.ratio_statistic([2, 0, 3], [3, 1, 3])  # followed / given instructions per prompt
    assert ratio.value() == pytest.approx(5 / 7)
    assert ratio.finish(np.array([[2.0, 1.0, 0.0]]) @ ratio.columns)[0] == pytest.approx(4 / 7)


def test_intervals_are_seeded_by_key_and_need_ten_examples():
    stat = stats.mean_statistic([float(i % 3 == 0) for i in range(30)])
    first = stats.interval(stat, "a/b/acc")
    assert first == stats.interval(stat, "a/b/acc")
    (same,), (other,) = stats.redrawn([stat], "a/b/acc"), stats.redrawn([stat], "a/c/acc")
    assert not np.array_equal(same, other)  # other redraws for another metric
    assert first[0] < stat.value() < first[1]
    assert stats.interval(stats.mean_statistic([1.0, 0.0] * 4 + [1.0]), "k") is None  # nine examples
    assert stats.interval(stats.mean_statistic([1.0, 0.0] * 5), "k") is not None


def test_every_headline_metric_gets_its_interval_recomputed_as_the_report_computes_it(tmp_path):
    report = write_run(tmp_path / "run", seed=1, skill=0.6)
    headline, sizes, intervals = report["headline"], report["sample_sizes"], report["intervals"]
    assert set(sizes) == set(headline)  # every headline metric recomputes from its examples
    assert sizes["tasks/mean_primary"] == 63 and sizes[f"tasks/{LONG}/rouge_l"] == 3
    assert sizes["seed4/nsmc/macro_f1"] == 30 and sizes["kobest/hellaswag/f1"] == 30
    # the macro metrics the old report left without one: macro over tasks, macro-F1 (strict, valid-only), KoBEST F1
    for key in ("tasks/mean_primary", "tasks/record_mean_primary", "tasks/valid_rate", "seed4/nsmc/macro_f1", "seed4/hatespeech/macro_f1_valid_only",
                "seed4/nsmc/invalid_rate", "kobest/hellaswag/f1", "kobest/hellaswag/acc"):
        low, high = intervals[key]
        assert low <= headline[key] + 1e-9 and headline[key] - 1e-9 <= high and low < high, key
    assert f"tasks/{LONG}/rouge_l" not in intervals  # three examples: too few
    md = (tmp_path / "run" / "report.md").read_text(encoding="utf-8")
    assert "| seed4/nsmc/macro_f1 | " in md and f"[{intervals['seed4/nsmc/macro_f1'][0]:.4f}, " in md
    assert "(n = 3: too few for an interval)" in md


def test_a_statistic_that_does_not_reproduce_the_reported_value_gets_no_interval():
    rows = [{"suite": "kobest", "task": "copa", "id": str(i), "valid": True, "scores": {"correct": 1.0}}
            for i in range(12)]  # no per-example classes: F1 cannot be recomputed
    intervals, sizes = stats.headline_uncertainty({"kobest/copa/acc": 1.0, "kobest/copa/f1": 1.0,
                                                   "kobest/copa/acc_norm": 0.5}, rows)
    assert sizes == {"kobest/copa/acc": 12} and set(intervals) == {"kobest/copa/acc"}


# --------------------------------------------------------------------------- the comparison figure and table


def test_comparison_draws_one_panel_per_suite_with_intervals_and_sizes(tmp_path):
    import matplotlib.image

    from kositp.eval.compare import compare

    dirs = []
    for name, seed, skill in (("base", 1, 0.3), ("sft", 2, 0.8)):
        write_run(tmp_path / name, seed, skill)
        dirs.append(tmp_path / name)
    result = compare(dirs, tmp_path / "cmp")
    panels = result["figure"]["panels"]
    assert [p["suite"] for p in panels] == ["tasks", "seed4", "kobest"]
    assert panels[0]["title"].endswith("n = 63 examples") and panels[1]["title"].endswith("n = 60 examples")
    assert panels[0]["metrics"][:3] == ["mean_primary (n=63)", "record_mean_primary (n=63)",
                                        "valid_rate (n=63)"]  # sizes differ: in the labels
    assert sorted(panels[0]["metrics"][3:]) == [f"{LONG}/rouge_l (n=3)", f"{SHORT}/token_f1 (n=30)",
                                                f"{YES_NO}/accuracy (n=30)"]
    assert panels[1]["metrics"] == ["nsmc/macro_f1", "nsmc/macro_f1_valid_only", "hatespeech/macro_f1",
                                    "hatespeech/macro_f1_valid_only"]  # invalid rates stay in the tables
    assert panels[2]["metrics"] == ["hellaswag/acc", "hellaswag/f1"]
    for panel in panels:  # one bar per run and metric; an error bar on each that has an interval
        assert panel["bars"] == 2 * len(panel["metrics"])
    assert [p["intervals"] for p in panels] == [2 * 5, 2 * 4, 2 * 2]  # the 3 open-ended answers have none
    image = matplotlib.image.imread(tmp_path / "cmp" / "comparison.png")
    assert list(image.shape[:2]) == result["figure"]["pixels"] and image.shape[0] > 700  # three panels stacked
    saved = json.loads((tmp_path / "cmp" / "comparison.json").read_text(encoding="utf-8"))
    assert saved["intervals"]["seed4/nsmc/macro_f1"]["sft"] == json.loads(
        (tmp_path / "sft" / "report.json").read_text(encoding="utf-8"))["intervals"]["seed4/nsmc/macro_f1"]
    assert saved["suite_sizes"] == {"tasks": {"base": 63, "sft": 63}, "seed4": {"base": 60, "sft": 60},
                                    "kobest": {"base": 30, "sft": 30}}
    # the single-run overview is the same figure
    overview = matplotlib.image.imread(tmp_path / "sft" / "report.png")
    assert overview.shape[1] == image.shape[1] and overview.shape[0] < image.shape[0]  # same layout, one run


def test_compare_marks_paired_differences_that_exclude_zero_for_seed4_and_kobest(tmp_path):
    from kositp.eval.compare import compare

    write_run(tmp_path / "base", seed=1, skill=0.1, n=60)
    write_run(tmp_path / "sft", seed=2, skill=0.95, n=60)
    result = compare([tmp_path / "base", tmp_path / "sft"], tmp_path / "cmp")
    (comparison,) = result["paired_bootstrap"]["comparisons"]
    found = comparison["statistics"]
    for key in ("tasks/mean_primary", "tasks/checkable/mean_primary", "seed4/nsmc/macro_f1", "kobest/hellaswag/acc",
                "kobest/hellaswag/f1"):
        assert found[key]["excludes_zero"] and found[key]["ci95"][0] > 0, key
    assert found["tasks/checkable/mean_primary"]["n"] == 120  # the 3 open-ended answers are left out
    assert f"tasks/{LONG}/rouge_l" not in found  # three examples: too few to pair
    md = (tmp_path / "cmp" / "comparison.md").read_text(encoding="utf-8").split("## Paired differences")[1]
    row = next(line for line in md.splitlines() if line.startswith("| kobest/hellaswag/f1 | 60 |"))
    assert row.count("**") == 2 and row.endswith("↑ |")


def test_real_seed4_and_kobest_examples_give_every_headline_metric_an_interval(tmp_path, benchmarks_dir):
    """The suites themselves (tiny model, shared benchmark files) carry the classes behind their macro-F1s."""
    from kositp.eval.run import EvalConfig, evaluate

    report = evaluate(EvalConfig(model="tiny", suites=["seed4", "kobest"], benchmarks=benchmarks_dir, limit=10,
                                 seed4_tasks=["nsmc", "hatespeech"], kobest_tasks=["copa", "hellaswag"],
                                 label_max_new_tokens=4, out=tmp_path / "r"), show_progress=False)
    keys = [k for k in report["headline"] if k.startswith(("seed4/", "kobest/"))]
    assert len(keys) == 2 * 3 + 2 * 2
    assert all(report["sample_sizes"][k] == 10 for k in keys)
    assert set(report["intervals"]) == set(keys)
    assert report["suite_sizes"] == {"seed4": 20, "kobest": 20}


def test_demo_table_states_the_sample_size_and_the_paired_intervals(tmp_path):
    from kositp.demo import summary_table
    from kositp.eval.compare import compare

    for name, seed, skill in (("base", 1, 0.2), ("sft", 2, 0.9), ("dpo", 3, 0.9)):
        write_run(tmp_path / name, seed, skill)
    table = summary_table(compare([tmp_path / n for n in ("base", "sft", "dpo")], tmp_path / "cmp"))
    assert "**n = 63 test records over 3 tasks**" in table
    assert "| metric | base | sft | dpo | sft − base | dpo − sft |" in table
    row = next(line for line in table.splitlines() if "`tasks/mean_primary`" in line)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert all("[" in c for c in cells[1:]), row  # every value and difference with its interval
    assert cells[4].startswith("**+") and cells[4].endswith("↑")  # SFT far above base: excludes zero
    assert "- seed4: 30 examples per benchmark;" in table and "- kobest: 30 examples per benchmark;" in table
