"""KMMLU: the shared files read by column name, lm-eval's prompt, 5-shot layout, both variants on the tiny model."""

from __future__ import annotations

import csv
import json

import pytest

from kositp.eval.suites.custom import load_items, load_spec, parse_choice


@pytest.fixture(scope="module")
def spec():
    return load_spec("benchmark/kmmlu")


def test_all_45_subjects_and_35030_questions_read_by_column_name(benchmarks_dir, spec):
    items, skipped = load_items(*spec, benchmarks_dir, None, 0)
    assert skipped == 0 and len(items) == 35030
    subjects = {i["subject"] for i in items}
    assert len(subjects) == 45 and subjects == set(spec[0].groups)
    # math-test.csv swaps the last two columns (Human Accuracy, Category): options must still be A-D
    with (benchmarks_dir / "kmmlu" / "data" / "math-test.csv").open(encoding="utf-8-sig") as handle:
        first = next(csv.DictReader(handle))
    math = next(i for i in items if i["subject"] == "Math")
    assert math["options"] == [first[c] for c in "ABCD"] and math["gold"] == int(first["answer"]) - 1


def test_limit_is_a_seeded_sample_per_subject(benchmarks_dir, spec):
    a, _ = load_items(*spec, benchmarks_dir, 3, 0)
    b, _ = load_items(*spec, benchmarks_dir, 3, 0)
    c, _ = load_items(*spec, benchmarks_dir, 3, 1)
    assert len(a) == 135 and [i["id"] for i in a] == [i["id"] for i in b] != [i["id"] for i in c]


def test_prompt_is_lm_evals_and_five_shot_uses_the_dev_split_of_the_same_subject(benchmarks_dir, spec):
    from kositp.eval.suites.custom import context_for, fewshot_pool, template

    kmmlu, folder = spec
    items, _ = load_items(kmmlu, folder, benchmarks_dir, 1, 0)
    item = next(i for i in items if i["subject"] == "Accounting")
    r = item["record"]
    zero = context_for(kmmlu, template(kmmlu.prompt), item, {})
    assert zero == f"{r['question'].strip()}\nA. {r['A']}\nB. {r['B']}\nC. {r['C']}\nD. {r['D']}\n정답："
    five = kmmlu.model_copy(update={"num_fewshot": 5})
    context = context_for(five, template(five.prompt), item, fewshot_pool(five, folder, benchmarks_dir))
    with (benchmarks_dir / "kmmlu" / "data" / "Accounting-dev.csv").open(encoding="utf-8-sig") as handle:
        dev = list(csv.DictReader(handle))
    blocks = context.split("\n\n")
    assert len(blocks) >= 6 and context.endswith(zero)
    assert blocks[0].startswith(dev[0]["question"].strip())
    assert blocks[0].endswith("정답： " + "ABCD"[int(dev[0]["answer"]) - 1])


@pytest.mark.parametrize(
    ("reply", "parsed"),
    [("B", 1), ("(C)", 2), ("정답: D", 3), ("정답은 A입니다.", 0), ("2번", 1), ("3", 2), ("**B**", 1),
     ("A와 B 모두 맞습니다", None), ("모르겠습니다", None), ("", None), ("E", None)],
)
def test_generative_answers_are_parsed_or_invalid(reply, parsed):
    assert parse_choice(reply, ["가", "나", "다", "라"]) == parsed


def test_kmmlu_suite_on_the_tiny_model_both_variants(tmp_path, benchmarks_dir):
    from kositp.eval.run import EvalConfig, evaluate

    cfg = EvalConfig(model="tiny", suites=["kmmlu"], benchmarks=benchmarks_dir, limit=1, out=tmp_path / "r")
    report = evaluate(cfg, show_progress=False)
    per_task = report["suites"]["kmmlu"]["metrics"]["per_task"]
    rows = [json.loads(x) for x in (tmp_path / "r" / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    for variant in ("loglik", "generate"):
        entry, mine = per_task[variant], [r for r in rows if r["task"] == variant]
        assert entry["n"] == len(mine) == 45
        assert entry["acc"] == pytest.approx(sum(r["scores"]["correct"] for r in mine) / 45, abs=1e-6)
        # macro = mean over subjects (one question each here, so it equals the micro average)
        assert entry["macro_acc"] == pytest.approx(sum(e["acc"] for e in entry["per_subject"].values()) / 45, abs=1e-6)
        assert sum(g["n"] for g in entry["per_group"].values()) == 45
        assert set(entry["per_group"]) == {"STEM", "Applied Science", "HUMSS", "Other"}
    generate = per_task["generate"]
    invalid = [r for r in rows if r["task"] == "generate" and not r["valid"]]
    assert generate["invalid_rate"] == pytest.approx(len(invalid) / 45, abs=1e-6)
    assert all(r["scores"]["correct"] == 0.0 for r in invalid)  # invalid counts as wrong
    assert all(len(r["loglikelihoods"]) == 4 for r in rows if r["task"] == "loglik")
    headline = report["headline"]
    assert {"kmmlu/loglik/acc", "kmmlu/loglik/macro_acc", "kmmlu/generate/acc", "kmmlu/generate/invalid_rate"} <= set(
        headline)
    low, high = report["intervals"]["kmmlu/loglik/acc"]
    assert low <= headline["kmmlu/loglik/acc"] <= high
    assert (tmp_path / "r" / "charts" / "kmmlu.png").is_file()


def test_options_sharing_one_context_share_one_forward_pass_with_identical_scores(tiny_model_dir):
    from kositp.eval import loglik
    from kositp.eval.loading import load_for_eval

    loaded = load_for_eval(str(tiny_model_dir))
    calls = []
    hook = loaded.model.register_forward_hook(lambda module, args, kwargs_out: calls.append(1))
    context = "대한민국의 수도는?\nA. 부산\nB. 서울\nC. 대구\nD. 광주\n정답："
    requests = [(context, f" {x}") for x in "ABCD"] + [("다른 문맥", " 긴 연속 문장입니다")]
    try:
        shared = loglik.score(loaded.model, loaded.tokenizer, requests, batch_size=8)
        assert len(calls) == 1  # five requests, two distinct inputs, one batch
        alone = [loglik.score(loaded.model, loaded.tokenizer, [r], batch_size=1)[0] for r in requests]
    finally:
        hook.remove()
    for a, b in zip(shared, alone, strict=True):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-4) and a.n_tokens == b.n_tokens
    assert len({round(s.logprob, 4) for s in shared[:4]}) > 1  # the four options read different tokens


def test_suite_all_runs_what_it_finds(benchmarks_dir, tmp_path):
    from kositp.eval.run import EvalConfig, expand_all

    local = EvalConfig(model="tiny", suites=["all"], benchmarks=benchmarks_dir, out=tmp_path)
    assert expand_all(local) == ["seed4", "kobest", "kmmlu", "kite"]
    everything = local.model_copy(update={"data": tmp_path, "judge_url": "http://127.0.0.1:9/v1",
                                          "benchmark_specs": ["benchmark/nsmc"]})
    assert expand_all(everything) == ["tasks", "seed4", "kobest", "kmmlu", "kite", "judge", "custom"]
    api = EvalConfig(api="http://127.0.0.1:9/v1", suites=["all"], benchmarks=benchmarks_dir, out=tmp_path)
    assert "kobest" not in expand_all(api)  # log-likelihood suites need --model
