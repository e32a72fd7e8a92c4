"""LLM-judged chat: strict score parsing, the judge prompts, the cache, and the whole path with a real
`kositp serve` (the tiny model) as the judge. Its judgments are noise; the tests check the plumbing and
that every judgment is counted as scored, unparsable or failed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from kositp.eval.suites.judge import parse_score


@pytest.mark.parametrize(
    ("judgment", "score"),
    [
        ("설명: 정확합니다.\n점수: [[8]]", 8.0),
        ("평가: [[ 7.5 ]]", 7.5),
        ("[[3]] 다시 말해 점수는 [[3]]입니다.", 3.0),  # the same score twice is one score
        ("점수: [[11]]", None),  # out of range
        ("점수: [[0]]", None),
        ("점수: [[4]] 또는 [[6]]", None),  # two different scores
        ("점수: 8점", None),  # no [[n]]
        ("점수: [8]", None),
        ("", None),
    ],
)
def test_scores_are_parsed_strictly(judgment, score):
    assert parse_score(judgment) == score


def test_prompts_and_questions_come_from_the_files(benchmarks_dir):
    from kositp.eval.suites.judge import judge_messages, load_prompts, load_questions

    prompts = load_prompts(benchmarks_dir)
    logickor, komt = load_questions(benchmarks_dir, "logickor"), load_questions(benchmarks_dir, "komt")
    assert (len(logickor), len(komt)) == (42, 80)
    assert len({q["category"] for q in logickor}) == 6 and len({q["category"] for q in komt}) == 8
    assert all(len(q["turns"]) == 2 for q in logickor + komt)
    math = next(q for q in komt if q["category"] == "math")
    writing = next(q for q in komt if q["category"] == "writing")
    assert math["references"] and not writing["references"]
    name, messages = judge_messages(prompts, math, ["첫 답", "둘째 답"], 2)
    assert name == "single-math-v1-multi-turn"
    assert messages[0]["content"] == prompts[name]["system_prompt"]
    assert "첫 답" in messages[1]["content"] and "둘째 답" in messages[1]["content"]
    assert math["references"][1] in messages[1]["content"]
    name, messages = judge_messages(prompts, writing, ["첫 답", "둘째 답"], 1)
    assert name == "single-v1" and "둘째 답" not in messages[1]["content"]


@pytest.fixture(scope="module")
def judge_server(tiny_model_dir):
    from kositp.serve.process import ServeProcess

    with ServeProcess(["--model", str(tiny_model_dir), "--served-model-name", "tiny-judge"]) as proc:
        yield proc


def test_judge_path_against_a_real_kositp_serve(tmp_path, benchmarks_dir, judge_server, tiny_model_dir):
    from kositp.eval.generate import LocalGenerator
    from kositp.eval.loading import load_for_eval
    from kositp.eval.suites import judge

    generator = LocalGenerator(load_for_eval(str(tiny_model_dir)), batch_size=2)
    cache = judge.JudgeCache(tmp_path / "cache.jsonl")
    first_judge = judge.Judge(judge_server.url + "/v1", None, "unused", cache, max_tokens=24)
    assert first_judge.model == "tiny-judge"  # found through /v1/models
    first = judge.run(generator, first_judge, benchmarks_dir, ["logickor", "komt"], 2, 0, 8)
    for entry in first.metrics["per_task"].values():
        assert entry["n_judgments"] == 4  # 2 questions x 2 turns
        assert entry["n_scored"] + entry["unparsable"] + entry["judge_errors"] == 4  # nothing dropped
    assert len(first.examples) == 8
    answered = [e for e in first.examples if e["judge_error"] is None]
    assert answered, "the tiny judge answered nothing"
    for e in first.examples:
        assert (e["scores"]["score"] is None) == (parse_score(e["judgment"] or "") is None)
    assert first.settings["judge"]["model"] == "tiny-judge"
    assert set(first.settings["judge_prompts"]) >= {"single-v1", "single-v1-multi-turn"}
    # a re-run asks the judge only for what failed before; every answered judgment comes from the cache
    second_judge = judge.Judge(judge_server.url + "/v1", "tiny-judge", "unused", judge.JudgeCache(cache.path),
                               max_tokens=24)
    second = judge.run(generator, second_judge, benchmarks_dir, ["logickor", "komt"], 2, 0, 8)
    assert second_judge.cache_hits == len(answered)
    assert second_judge.requests == len(first.examples) - len(answered)
    assert [e["judgment"] for e in second.examples if e["judge_error"] is None] == [e["judgment"] for e in answered]


def test_cli_judge_suite_reports_the_judge_and_never_the_key(tmp_path, benchmarks_dir, judge_server):
    secret = "judge-key-that-must-not-leak"
    env = dict(os.environ, OMP_NUM_THREADS="1", KOSITP_JUDGE_KEY=secret, KOSITP_HOME=str(tmp_path / "home"))
    result = subprocess.run(
        [sys.executable, "-m", "kositp.cli", "eval", "--model", "tiny", "--suite", "judge", "--benchmarks",
         str(benchmarks_dir), "--judge-url", judge_server.url + "/v1", "--judge-model", "tiny-judge", "--limit", "1",
         "--max-new-tokens", "8", "--set", "judge_max_tokens=16", "--set", "judge_sets=[komt]",
         "--out", str(tmp_path / "r"), "--quiet"],
        capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "r" / "report.json").read_text(encoding="utf-8"))
    assert report["suites"]["judge"]["settings"]["judge"]["model"] == "tiny-judge"
    assert "judge/komt/mean_score" in report["headline"] and "judge/komt/scored_rate" in report["headline"]
    assert "judge `tiny-judge`" in (tmp_path / "r" / "report.md").read_text(encoding="utf-8")
    assert (tmp_path / "home" / "judge-cache.jsonl").is_file()
    for path in (tmp_path / "r").rglob("*"):
        if path.is_file() and path.suffix in (".json", ".jsonl", ".md"):
            assert secret not in path.read_text(encoding="utf-8")
    missing = subprocess.run([sys.executable, "-m", "kositp.cli", "eval", "--model", "tiny", "--suite", "judge",
                              "--out", str(tmp_path / "x"), "--quiet"], capture_output=True, text=True, env=env,
                             timeout=300)
    assert missing.returncode == 2 and "needs --judge-url" in missing.stderr
