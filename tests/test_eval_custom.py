"""Your own benchmark by YAML: files the test writes (CSV, JSONL, JSON), the tiny model, the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

QUESTIONS = [
    ("대한민국의 수도는?", ["부산", "서울", "대구", "광주"], 1),
    ("물의 화학식은?", ["H2O", "CO2", "O2", "NaCl"], 0),
    ("한글을 만든 왕은?", ["태조", "세종", "정조", "고종"], 1),
    ("1 더하기 2는?", ["일", "이", "삼", "사"], 2),
]
PROMPT = "{{ question.strip() }}\nA. {{ choices[0] }}\nB. {{ choices[1] }}\nC. {{ choices[2] }}\nD. {{ choices[3] }}\n정답:"


def write_spec(folder, name, **fields):
    import yaml

    spec = {"name": name, "kind": "multiple_choice", "prompt": PROMPT} | fields
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture
def three_layouts(tmp_path):
    """The same four questions as CSV (option columns, 1-based index), JSONL (option list, letter), JSON (text)."""
    lines = ["question,answer,A,B,C,D"] + [f"{q},{a + 1},{','.join(o)}" for q, o, a in QUESTIONS]
    (tmp_path / "quiz.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with (tmp_path / "quiz.jsonl").open("w", encoding="utf-8") as handle:
        for q, o, a in QUESTIONS:
            handle.write(json.dumps({"question": q, "options": o, "gold": "ABCD"[a]}, ensure_ascii=False) + "\n")
    data = [{"question": q, "options": o, "gold": o[a]} for q, o, a in QUESTIONS]
    (tmp_path / "quiz.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return [
        write_spec(tmp_path, "csv", files="quiz.csv", choices=["A", "B", "C", "D"], answer="answer",
                   answer_format="index1"),
        write_spec(tmp_path, "jsonl", files="quiz.jsonl", choices="options", answer="gold", answer_format="letter"),
        write_spec(tmp_path, "json", files="quiz.json", choices="options", answer="gold", answer_format="text"),
    ]


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    from kositp.eval.loading import load_for_eval

    return load_for_eval(str(tiny_model_dir))


def test_three_layouts_give_the_same_items_and_prompts(three_layouts):
    from kositp.eval.suites.custom import context_for, load_items, load_spec, template

    seen = []
    for path in three_layouts:
        spec, folder = load_spec(path)
        items, skipped = load_items(spec, folder, None, None, 0)
        assert skipped == 0
        assert [i["gold"] for i in items] == [a for _, _, a in QUESTIONS]
        assert [i["options"] for i in items] == [o for _, o, _ in QUESTIONS]
        seen.append([context_for(spec, template(spec.prompt), i, {}) for i in items])
    assert seen[0] == seen[1] == seen[2]
    assert seen[0][0] == "대한민국의 수도는?\nA. 부산\nB. 서울\nC. 대구\nD. 광주\n정답:"


def test_multiple_choice_scores_are_the_argmax_of_each_options_loglikelihood(three_layouts, loaded):
    from kositp.eval import loglik
    from kositp.eval.suites.custom import load_spec, run_multiple_choice

    def scorer(requests, advance):
        return loglik.score(loaded.model, loaded.tokenizer, requests, batch_size=4)

    results = [run_multiple_choice(*load_spec(p), None, scorer, None, 0) for p in three_layouts]
    assert len({r[0]["acc"] for r in results}) == 1
    assert len({tuple(e["output"] for e in r[1]) for r in results}) == 1
    result, examples = results[0]
    # independent recomputation: one request per (question, letter), first argmax
    expected = []
    for q, options, answer in QUESTIONS:
        context = f"{q}\nA. {options[0]}\nB. {options[1]}\nC. {options[2]}\nD. {options[3]}\n정답:"
        scored = loglik.score(loaded.model, loaded.tokenizer, [(context, f" {x}") for x in "ABCD"], batch_size=1)
        values = [s.logprob for s in scored]
        expected.append(float(values.index(max(values)) == answer))
    assert [e["scores"]["correct"] for e in examples] == expected
    assert result["acc"] == pytest.approx(sum(expected) / len(expected))
    assert result["n"] == 4 and 0.0 <= result["acc_norm"] <= 1.0


def test_fewshot_context_puts_solved_examples_of_the_same_subject_first(tmp_path):
    from kositp.eval.suites.custom import context_for, fewshot_pool, load_items, load_spec, template

    (tmp_path / "dev.csv").write_text("question,answer,A,B,subject\n쉬운 문제,2,가,나,국어\n수학 문제,1,일,이,수학\n"
                                      "또 다른 문제,1,다,라,국어\n", encoding="utf-8")
    (tmp_path / "test.csv").write_text("question,answer,A,B,subject\n본 문제,1,마,바,국어\n", encoding="utf-8")
    path = write_spec(tmp_path, "shots", files="test.csv", fewshot_files="dev.csv", num_fewshot=2,
                      choices=["A", "B"], answer="answer", answer_format="index1", subject="subject",
                      prompt="{{ question }}\nA. {{ A }}\nB. {{ B }}\n정답:")
    spec, folder = load_spec(path)
    items, _ = load_items(spec, folder, None, None, 0)
    context = context_for(spec, template(spec.prompt), items[0], fewshot_pool(spec, folder, None))
    assert context == ("쉬운 문제\nA. 가\nB. 나\n정답: B\n\n또 다른 문제\nA. 다\nB. 라\n정답: A\n\n"
                       "본 문제\nA. 마\nB. 바\n정답:")


def test_generative_text_metric_scores_each_reply(tmp_path, loaded):
    from kositp.eval import metrics
    from kositp.eval.generate import LocalGenerator
    from kositp.eval.suites.custom import load_spec, run_generative

    rows = [{"q": "대한민국의 수도는 어디인가요?", "a": "서울"}, {"q": "가장 큰 바다는?", "a": "태평양"}]
    (tmp_path / "open.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                                         encoding="utf-8")
    path = write_spec(tmp_path, "open", kind="generative", files="open.jsonl", answer="a", prompt="{{ q }}",
                      metric="token_f1", max_new_tokens=8)
    result, examples = run_generative(*load_spec(path), None, LocalGenerator(loaded, batch_size=2), None, 0)
    assert result["n"] == 2
    for example, row in zip(examples, rows, strict=True):
        assert example["gold"] == row["a"]
        assert example["scores"]["token_f1"] == metrics.token_f1(example["output"], row["a"])
    assert result["token_f1"] == pytest.approx(sum(e["scores"]["token_f1"] for e in examples) / 2)


def test_shipped_nsmc_spec_reproduces_the_seed4_suite(benchmarks_dir, loaded):
    """The seed4 NSMC benchmark written as a YAML spec asks the same prompts and scores the same way."""
    from kositp.eval.generate import LocalGenerator
    from kositp.eval.suites import seed4
    from kositp.eval.suites.custom import load_spec, run_generative

    generator = LocalGenerator(loaded, batch_size=4)
    suite = seed4.run(generator, benchmarks_dir, ["nsmc"], 4, 0, 16)
    result, examples = run_generative(*load_spec("benchmark/nsmc"), benchmarks_dir, generator, 4, 0)
    assert [e["prompt"] for e in examples] == [e["prompt"] for e in suite.examples]
    assert [e["gold"] for e in examples] == [e["gold"] for e in suite.examples]
    assert [e["parsed"] for e in examples] == [e["parsed"] for e in suite.examples]
    expected = suite.metrics["per_task"]["nsmc"]
    assert result["macro_f1"] == expected["macro_f1"] and result["invalid_rate"] == expected["invalid_rate"]


@pytest.mark.parametrize(
    ("content", "answer_format", "message"),
    [
        ("question,answer,A,B\n문제,3,가,나\n", "index1", r"quiz.csv:2: answer '3' is not a valid index1"),
        ("question,answer,A,B\n문제,E,가,나\n", "letter", r"quiz.csv:2: answer 'E' is not a valid letter"),
        ("question,answer,A\n문제,1,가\n", "index1", r"quiz.csv:2: missing option field\(s\) B"),
    ],
)
def test_bad_records_name_the_file_and_line(tmp_path, content, answer_format, message):
    from kositp.errors import KositpError
    from kositp.eval.suites.custom import load_items, load_spec

    (tmp_path / "quiz.csv").write_text(content, encoding="utf-8")
    path = write_spec(tmp_path, "bad", files="quiz.csv", choices=["A", "B"], answer="answer",
                      answer_format=answer_format)
    with pytest.raises(KositpError, match=message):
        load_items(*load_spec(path), None, None, 0)


def _cli(*args):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "kositp.cli", *args], capture_output=True, text=True, env=env,
                          timeout=600)


def test_cli_runs_a_user_benchmark_and_refuses_a_bad_spec(tmp_path, three_layouts):
    ok = _cli("eval", "--model", "tiny", "--benchmark", str(three_layouts[0]), "--benchmark", str(three_layouts[1]),
              "--out", str(tmp_path / "r"), "--quiet")
    assert ok.returncode == 0, ok.stderr
    report = json.loads((tmp_path / "r" / "report.json").read_text(encoding="utf-8"))
    assert report["config"]["suites"] == ["custom"]
    assert report["headline"]["custom/csv/acc"] == report["headline"]["custom/jsonl/acc"]
    assert report["sample_sizes"]["custom/csv/acc"] == 4 and "custom/csv/acc" not in report["intervals"]  # too few
    assert "## Your benchmarks" in (tmp_path / "r" / "report.md").read_text(encoding="utf-8")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nkind: multiple_choice\nfiles: quiz.csv\nanswer: a\nprompt: q\nchoices: [A]\n"
                   "answer_fromat: index1\n", encoding="utf-8")
    refused = _cli("eval", "--model", "tiny", "--benchmark", str(bad), "--out", str(tmp_path / "b"), "--quiet")
    assert refused.returncode == 2
    lines = [x for x in refused.stderr.splitlines() if x.strip() and "Loading weights" not in x]
    assert len(lines) == 1 and "answer_fromat" in lines[0] and "answer_format" in lines[0], refused.stderr


def test_compare_shows_each_runs_interval(tmp_path, three_layouts):
    from kositp.eval.compare import compare
    from kositp.eval.run import EvalConfig, evaluate

    for model in ("tiny", "tiny:1"):
        evaluate(EvalConfig(model=model, suites=["custom"], benchmark_specs=[str(three_layouts[0])],
                            out=tmp_path / model.replace(":", "-")), show_progress=False)
    result = compare([tmp_path / "tiny", tmp_path / "tiny-1"], tmp_path / "cmp")
    reports = [json.loads((tmp_path / d / "report.json").read_text(encoding="utf-8")) for d in ("tiny", "tiny-1")]
    # four questions: each run's size is shown, and why there is no interval
    assert result["sample_sizes"]["custom/csv/acc"] == {"tiny": 4, "tiny-1": 4}
    assert all(r["sample_sizes"]["custom/csv/acc"] == 4 and not r["intervals"] for r in reports)
    assert "(n = 4: too few for an interval)" in (tmp_path / "cmp" / "comparison.md").read_text(encoding="utf-8")
