"""Suites, backends and reports on the tiny model: real generation, real scoring, real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURE = Path(__file__).parent / "fixtures" / "eval"


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    from kositp.eval.loading import load_for_eval

    return load_for_eval(str(tiny_model_dir))


def test_loglik_batched_left_padding_equals_one_by_one_and_a_manual_sum(loaded):
    import torch

    from kositp.eval import loglik

    requests = [("서울은 대한민국의", " 수도이다"), ("문장: 영화가 재미있다 긍부정:", " 긍정"),
                ("짧은 문맥", " 아주 길게 이어지는 연속 문장입니다"), ("질문: 답변: ", "예")]
    batched = loglik.score(loaded.model, loaded.tokenizer, requests, batch_size=4)
    single = loglik.score(loaded.model, loaded.tokenizer, requests, batch_size=1)
    for a, b in zip(batched, single, strict=True):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-4)
        assert a.n_tokens == b.n_tokens
    # manual: full sequence, unpadded, sum of log p(continuation token | prefix)
    ctx, cont = loglik.encode_pair(loaded.tokenizer, *requests[0])
    ids = torch.tensor([ctx + cont])
    with torch.inference_mode():
        logprobs = torch.log_softmax(loaded.model(input_ids=ids).logits[0].float(), -1)
    manual = sum(float(logprobs[len(ctx) - 1 + k, tok]) for k, tok in enumerate(cont))
    assert batched[0].logprob == pytest.approx(manual, abs=1e-4)
    # lm-eval's convention: the context's trailing space moves into the continuation
    ctx_space, cont_space = loglik.encode_pair(loaded.tokenizer, "질문: 답변: ", "예")
    assert loaded.tokenizer.decode(cont_space).startswith(" ")


def test_batched_generation_equals_unbatched(loaded):
    from kositp.eval.generate import LocalGenerator

    prompts = [[{"role": "user", "content": text}] for text in ("안녕하세요", "대한민국의 수도는 어디인가요? 한 단어로 답하세요.",
                                                               "요약해 주세요: 청솔군은 교통비를 지원한다.")]
    batched = LocalGenerator(loaded, batch_size=3).generate(prompts, max_new_tokens=12)
    single = LocalGenerator(loaded, batch_size=1).generate(prompts, max_new_tokens=12)
    assert [g.text for g in batched] == [g.text for g in single]
    assert all(g.n_tokens <= 12 for g in batched)
    assert "<|im_start|>assistant\n" in LocalGenerator(loaded).prompt_text(prompts[0])  # the model's ChatML


def _cfg(tmp_path, **kw):
    from kositp.eval.run import EvalConfig

    base = {"model": "tiny", "suites": ["tasks"], "data": FIXTURE, "max_new_tokens": 16, "out": tmp_path / "r"}
    return EvalConfig(**(base | kw))


def test_tasks_suite_report_files_are_complete_and_deterministic(tmp_path):
    from kositp.eval.run import evaluate

    first = evaluate(_cfg(tmp_path, out=tmp_path / "a"), show_progress=False)
    evaluate(_cfg(tmp_path, out=tmp_path / "b"), show_progress=False)
    a, b = tmp_path / "a", tmp_path / "b"
    for name in ("report.json", "report.md", "predictions.jsonl", "run_info.json", "charts/tasks.png"):
        assert (a / name).is_file() and (a / name).stat().st_size > 0, name
    assert (a / "report.json").read_bytes() == (b / "report.json").read_bytes()
    assert (a / "predictions.jsonl").read_bytes() == (b / "predictions.jsonl").read_bytes()

    per_task = first["suites"]["tasks"]["metrics"]["per_task"]
    fixture_tasks = {json.loads(line)["task"] for line in (FIXTURE / "test.jsonl").read_text().splitlines()}
    assert set(per_task) == fixture_tasks
    assert per_task["answerability_classification"]["n"] == 2
    assert {"rouge_l", "chrf", "within_50_chars", "valid_rate"} <= set(per_task["text_simplification"])
    assert {"exact_match", "token_f1"} <= set(per_task["extractive_qa_short"])
    rows = [json.loads(line) for line in (a / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 12
    assert {"suite", "task", "id", "prompt", "output", "gold", "valid", "scores"} <= set(rows[0])
    assert first["decoding"]["strategy"] == "greedy" and first["decoding"]["max_new_tokens"] == 16
    assert "out" not in first["config"]  # the report does not depend on where it is written
    assert "held-out tasks" in (a / "report.md").read_text(encoding="utf-8")


def test_tasks_limit_samples_per_task(tmp_path):
    from kositp.eval.run import evaluate

    report = evaluate(_cfg(tmp_path, limit=1), show_progress=False)
    assert all(e["n"] == 1 for e in report["suites"]["tasks"]["metrics"]["per_task"].values())


def test_seed4_and_kobest_on_the_shared_files(tmp_path, benchmarks_dir):
    from kositp.eval.run import evaluate

    report = evaluate(_cfg(tmp_path, suites=["seed4", "kobest"], data=None, benchmarks=benchmarks_dir, limit=3,
                           label_max_new_tokens=6), show_progress=False)
    seed = report["suites"]["seed4"]["metrics"]["per_task"]
    assert set(seed) == {"nsmc", "kornli", "qpair", "hatespeech"}
    for entry in seed.values():
        assert entry["n"] == 3
        assert 0 <= entry["macro_f1"] <= 1 and 0 <= entry["invalid_rate"] <= 1
        assert entry["n_valid"] == round(3 * (1 - entry["invalid_rate"]))
    kobest = report["suites"]["kobest"]["metrics"]["per_task"]
    assert set(kobest) == {"boolq", "copa", "hellaswag", "sentineg", "wic"}
    assert all(e["n"] == 3 and 0 <= e["acc"] <= 1 for e in kobest.values())
    assert "acc_norm" in kobest["hellaswag"]
    rows = [json.loads(x) for x in (tmp_path / "r" / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    hellaswag = [r for r in rows if r["task"] == "hellaswag"]
    assert len(hellaswag) == 3 and all(len(r["loglikelihoods"]) == 4 for r in hellaswag)
    assert (tmp_path / "r" / "charts" / "seed4.png").is_file() and (tmp_path / "r" / "charts" / "kobest.png").is_file()


def test_benchmark_loaders_read_the_real_layouts(benchmarks_dir):
    from kositp.eval.suites import kobest, seed4

    qpair, _ = seed4.load(seed4.BENCHMARKS["qpair"], benchmarks_dir)
    # first line of question_pair/test.txt: "밤만 되면 미치겟네. / 밥먹기 참 힘드네" is_duplicate=1 -> different
    assert qpair[0]["row"]["question2"].startswith("밥먹기") and qpair[0]["gold"] == "아니요"
    csv_pairs, _ = seed4.load(seed4.BENCHMARKS["qpair"], benchmarks_dir, "question_pair/kor_Pair_test.csv")
    assert len(csv_pairs) > 600 and {p["gold"] for p in csv_pairs} == {"예", "아니요"}
    hate, _ = seed4.load(seed4.BENCHMARKS["hatespeech"], benchmarks_dir)
    assert len(hate) == 471 and {h["gold"] for h in hate} == {"성별", "기타", "없음"}
    nsmc, skipped = seed4.load(seed4.BENCHMARKS["nsmc"], benchmarks_dir)
    assert len(nsmc) + skipped == 50000
    copa = kobest.load(kobest.KOBEST["copa"], benchmarks_dir, "test")
    assert len(copa) == 1000 and {d["label"] for d in copa} == {0, 1}
    assert kobest.KOBEST["copa"].context(copa[0]).endswith("  그래서")  # lm-eval's connector, double space
    assert len(kobest.load(kobest.KOBEST["hellaswag"], benchmarks_dir, "test")) == 500


def test_run_dir_with_lora_adapter_loads_and_changes_outputs(tmp_path, tiny_model_dir, loaded):
    import torch
    from peft import LoraConfig, get_peft_model

    from kositp.eval.generate import LocalGenerator
    from kositp.eval.loading import load_for_eval
    from kositp.models import load_model, load_tokenizer

    torch.manual_seed(0)
    model = get_peft_model(load_model(str(tiny_model_dir)), LoraConfig(
        r=4, target_modules=["q_proj", "v_proj", "o_proj"], init_lora_weights=False, lora_alpha=64))
    run = tmp_path / "run"
    model.save_pretrained(run / "adapter")
    load_tokenizer(str(tiny_model_dir)).save_pretrained(run / "adapter")
    (run / "run.json").write_text(json.dumps({"kind": "sft", "method": "sft", "base_model": "tiny",
                                              "base_model_path": str(tiny_model_dir), "adapter": "adapter",
                                              "model": None, "chat_format": "chatml", "final_step": 1}))
    adapted = load_for_eval(str(run))
    assert adapted.description["adapter"].endswith("adapter")
    prompt = [{"role": "user", "content": "대한민국의 수도는?"}]
    text = LocalGenerator(adapted).prompt_text(prompt)
    assert text == LocalGenerator(loaded).prompt_text(prompt)  # same chat format through the run dir
    ids = loaded.tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        base_logits = loaded.model(input_ids=ids).logits
        new_logits = adapted.model(input_ids=ids).logits
    assert not torch.allclose(base_logits, new_logits, atol=1e-4)  # the adapter is applied


def test_compare_puts_runs_side_by_side(tmp_path):
    from kositp.eval.compare import compare
    from kositp.eval.run import evaluate

    evaluate(_cfg(tmp_path, out=tmp_path / "base"), show_progress=False)
    evaluate(_cfg(tmp_path, model="tiny:1", out=tmp_path / "sft"), show_progress=False)
    result = compare([tmp_path / "base", tmp_path / "sft"], tmp_path / "cmp")
    assert [r["name"] for r in result["runs"]] == ["base", "sft"]
    assert set(result["metrics"]["tasks/mean_primary"]) == {"base", "sft"}
    table = (tmp_path / "cmp" / "comparison.md").read_text(encoding="utf-8")
    assert "| tasks/mean_primary |" in table and "base" in table and "sft" in table
    assert (tmp_path / "cmp" / "comparison.png").stat().st_size > 0


def _cli(*args, env_extra=None):
    env = dict(os.environ, OMP_NUM_THREADS="1") | (env_extra or {})
    return subprocess.run([sys.executable, "-m", "kositp.cli", *args], capture_output=True, text=True, env=env,
                          timeout=600)


def test_cli_both_spellings_and_compare(tmp_path):
    first = _cli("eval", "--model", "tiny", "--suite", "tasks", "--data", str(FIXTURE), "--limit", "1",
                 "--max-new-tokens", "8", "--out", str(tmp_path / "one"), "--quiet")
    assert first.returncode == 0, first.stderr
    assert "tasks/mean_primary" in first.stdout
    second = _cli("eval", "run", "--model", "tiny", "--suite", "tasks", "--data", str(FIXTURE), "--limit", "1",
                  "--max-new-tokens", "8", "--out", str(tmp_path / "two"), "--quiet")
    assert second.returncode == 0, second.stderr
    assert (tmp_path / "one" / "report.json").read_bytes() == (tmp_path / "two" / "report.json").read_bytes()
    cmp = _cli("eval", "compare", str(tmp_path / "one"), str(tmp_path / "two"), "--out", str(tmp_path / "cmp"))
    assert cmp.returncode == 0, cmp.stderr
    assert (tmp_path / "cmp" / "comparison.json").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "tiny", "--api", "http://127.0.0.1:9/v1", "--suite", "seed4"], "exactly one of --model or --api"),
        (["--api", "http://127.0.0.1:9/v1", "--suite", "kobest"], "kobest suite needs log-likelihoods"),
        (["--model", "tiny", "--suite", "tasks"], "needs --data"),
        (["--model", "tiny", "--suite", "tasks,nope", "--data", "x"], "suites"),
        (["--model", "tiny", "--suite", "tasks", "--data", "/nonexistent/dir"], "no test split"),
        (["--model", "/nonexistent/model", "--suite", "tasks", "--data", str(FIXTURE)], "/nonexistent/model"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    result = _cli("eval", *args, "--out", str(tmp_path / "r"), "--quiet")
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip() and "Loading weights" not in line]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_malformed_test_split_names_the_line(tmp_path):
    from kositp.errors import KositpError
    from kositp.eval.suites.tasks import load_test_split

    bad = tmp_path / "test.jsonl"
    good = (FIXTURE / "test.jsonl").read_text(encoding="utf-8").splitlines()[0]
    bad.write_text(good + "\n{not json\n", encoding="utf-8")
    with pytest.raises(KositpError, match=r"test.jsonl:2: malformed JSON"):
        load_test_split(tmp_path)
    bad.write_bytes(good.encode() + b"\n" + '{"task": "x", "messages": []}'.encode("cp949") + b"\n")
    with pytest.raises(KositpError, match=r":2: 'messages' must be"):
        load_test_split(tmp_path)
    bad.write_bytes(b'{"task": "\xb0\xa1"}\n')
    with pytest.raises(KositpError, match=r":1: not UTF-8"):
        load_test_split(tmp_path)
