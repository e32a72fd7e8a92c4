"""On-policy preference pairs (`kositp data pairs --samples N`): chosen and rejected both the model's own answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kositp.errors import KositpError
from kositp.train.pairs import build_pairs, on_policy_pair

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests/fixtures/train/sft"

PROMPT = [{"role": "user", "content": (
    "다음 글을 읽고 질문의 답을 보기에서 고르세요.\n\n"
    "해온시는 다음 달부터 공공자전거 300대를 지하철역 주변에 추가로 배치한다고 발표했다. "
    "이용 요금은 1시간에 1천 원으로 기존과 같다.\n\n"
    "질문: 해온시 공공자전거의 1시간 이용 요금은 얼마인가\n보기: 3천 원, 5백 원, 1천 원, 2천 원")}]
TASK, GOLD = "extractive_qa_objective", "1천 원"


def _pair(answers: list[str]) -> dict | None:
    return on_policy_pair(TASK, PROMPT, GOLD, [(a, True) for a in answers], wrong_below=0.5, min_gap=0.1)


def test_a_right_sample_is_chosen_over_the_wrong_greedy_answer():
    pair = _pair(["3천 원", "2천 원", "1천 원", "3천 원"])
    assert (pair["chosen"]["text"], pair["chosen"]["greedy"]) == ("1천 원", False)
    # both wrong samples score 0 like the greedy answer: the greedy one is what the pair pushes away from
    assert (pair["rejected"]["text"], pair["rejected"]["greedy"]) == ("3천 원", True)
    assert (pair["chosen"]["score"], pair["rejected"]["score"]) == (1.0, 0.0)


def test_a_right_greedy_answer_is_chosen_over_a_wrong_sample():
    pair = _pair(["1천 원", "1천 원", "5백 원"])
    assert pair["chosen"]["greedy"] and pair["chosen"]["text"] == "1천 원"
    assert pair["rejected"]["text"] == "5백 원" and not pair["rejected"]["greedy"]


def test_no_right_answer_or_no_lead_gives_no_on_policy_pair():
    assert _pair(["3천 원", "2천 원", "5백 원"]) is None  # nothing right: the record falls back to the gold answer
    assert _pair(["1천 원", "1천 원"]) is None  # every answer equal: nothing to rank
    assert _pair(["", "  "]) is None  # empty answers are not candidates


@pytest.mark.slow
def test_low_temperature_samples_are_the_greedy_answers_of_their_own_prompts(default_model_dir):
    from kositp.eval.generate import LocalGenerator
    from kositp.eval.loading import load_for_eval

    generator = LocalGenerator(load_for_eval(str(default_model_dir)), batch_size=4)
    prompts = [[{"role": "user", "content": question}] for question in (
        "대한민국의 수도는 어디인가요?", "1 더하기 1은 얼마인가요? 숫자로만 답하세요.",
        "김치를 영어로 한 단어로 쓰세요.", "다음 단어의 반대말을 쓰세요: 높다",
        "사과는 무슨 색인가요? 한 단어로 답하세요.")]
    greedy = generator.generate(prompts, 6)
    assert len({g.text for g in greedy}) == len(prompts)  # so a row given to the wrong prompt shows
    # prompts of different lengths in batches of 2 (4 rows // 2 samples): each row must come back to
    # its own prompt, which near-zero temperature makes checkable against the greedy answers
    near_greedy = generator.sample(prompts, 6, n=2, temperature=1e-4, seed=1)
    assert [[s.text for s in row] for row in near_greedy] == [[g.text, g.text] for g in greedy]
    drawn = generator.sample(prompts, 6, n=3, temperature=1.5, seed=7)
    assert [len(row) for row in drawn] == [3] * 5
    assert drawn == generator.sample(prompts, 6, n=3, temperature=1.5, seed=7)  # seeded
    assert drawn != generator.sample(prompts, 6, n=3, temperature=1.5, seed=8)
    # reading each prompt once and copying its cache to its rows samples the very same tokens
    assert drawn == generator.sample(prompts, 6, n=3, temperature=1.5, seed=7, share_prefill=False)
    with pytest.raises(KositpError, match="temperature > 0"):
        generator.sample(prompts, 6, n=2, temperature=0)


def test_build_pairs_with_samples_records_where_each_side_came_from(tmp_path, tiny_model_dir):
    card = build_pairs(FIXTURE, tmp_path / "pairs", model="tiny", splits=("train",), max_records=6,
                       max_new_tokens=6, tasks="checkable", samples=2, seed=3, progress=False)
    info = card["splits"]["train"]
    assert (card["samples"], card["temperature"], card["seed"], card["tasks"]) == (2, 1.0, 3, "checkable")
    # the random tiny model is never right, so every record falls back to the gold answer as chosen
    assert info["chosen_from"] == {"gold": 6} and info["pairs"] == 6
    pairs = [json.loads(line) for line in (tmp_path / "pairs" / "train.jsonl").read_text().splitlines()]
    assert all(p["chosen_from"] == "gold" and p["rejected_from"] == "model" for p in pairs)
    from kositp.eval.stats import is_checkable

    assert all(is_checkable(p["task"]) for p in pairs)
    card_md = (tmp_path / "pairs" / "card.md").read_text()
    assert "2 sampled answers per record besides the greedy one (temperature 1.0, seed 3)" in card_md
    assert "| gold | 6 |" in card_md and "records of checkable tasks only" in card_md


def test_samples_need_a_model_and_the_metric_filter(tmp_path):
    with pytest.raises(KositpError, match="give --model"):
        build_pairs(FIXTURE, tmp_path / "a", samples=2, progress=False)
    with pytest.raises(KositpError, match="--no-filter"):
        build_pairs(FIXTURE, tmp_path / "b", model="tiny", samples=2, min_gap=None, progress=False)
    with pytest.raises(KositpError, match="all or checkable"):
        build_pairs(FIXTURE, tmp_path / "c", tasks="open", progress=False)
    with pytest.raises(KositpError, match="none of the splits"):
        build_pairs(FIXTURE, tmp_path / "d", splits=("test",), progress=False)


def test_pairs_cli_says_what_samples_need(tmp_path, monkeypatch, capsys):
    import sys

    from kositp.cli import main

    monkeypatch.setattr(sys, "argv", ["kositp", "data", "pairs", "--data", str(FIXTURE), "--out",
                                      str(tmp_path / "pairs"), "--samples", "2"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code != 0
    assert "give --model" in capsys.readouterr().err


def test_bench_sample_quick_writes_both_variants_and_their_ratio(tmp_path, monkeypatch):
    import sys

    from kositp.cli import main

    out = tmp_path / "bench"
    monkeypatch.setattr(sys, "argv", ["kositp", "bench", "sample", "--out", str(out), "--quick", "--data", str(FIXTURE)])
    main()
    report = json.loads((out / "bench_sample.json").read_text())
    assert set(report["seconds"]) == {"repeated prompts", "shared prefill"}
    assert report["identical"] is True and report["spec"]["prompts"] == 4
    assert report["speedup"] == pytest.approx(report["seconds"]["repeated prompts"][0]
                                              / report["seconds"]["shared prefill"][0])
    assert "speed-up of the shared prefill" in (out / "bench_sample.md").read_text()


def test_the_card_counts_the_labels_chosen_replies_teach(tmp_path):
    from kositp.train.pairs import chosen_label

    assert chosen_label("extractive_qa_yes_no", "예") == "예"
    assert chosen_label("extractive_qa_yes_no_explanation", "아니요\n근거: 글에 없다.") == "아니요"
    assert chosen_label("answerability_classification", "답변할 수 없음") == "답변할 수 없음"
    assert chosen_label("answerability_classification", "장제스와 국민당 정부") == "other"  # a span, not a label
    assert chosen_label("extractive_qa_short", "1천 원") is None
    card = build_pairs(FIXTURE, tmp_path / "pairs", splits=("train",), progress=False)
    # every yes/no record of the fixture says 예: its pairs would lean the task wholly towards it
    assert card["splits"]["train"]["chosen_labels"] == {"extractive_qa_yes_no": {"예": 15}}
    assert "| extractive_qa_yes_no | 예 15 |" in (tmp_path / "pairs" / "card.md").read_text()
