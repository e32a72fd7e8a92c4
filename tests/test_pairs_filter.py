"""Preference pairs are kept only when the task metric ranks chosen above rejected; the rest are counted."""

from __future__ import annotations

import json

import pytest

from kositp.train.pairs import build_pairs, candidates, pick_rejected, rule_negative

# The demo's own case (runs/demo/pairs): the SFT model picked the right option but left out the
# 근거 line, so the evaluation calls it invalid while its accuracy equals the gold answer's.
OPTION_PROMPT = [{"role": "user", "content": (
    "다음 글을 읽고 질문의 답을 보기에서 고르세요. 답을 쓴 다음 줄에 '근거:'로 시작하는 근거 문장을 글에서 그대로 옮겨 쓰세요.\n\n"
    "해온시는 다음 달부터 공공자전거 300대를 지하철역 주변에 추가로 배치한다고 발표했다. "
    "이용 요금은 1시간에 1천 원으로 기존과 같다.\n\n"
    "질문: 해온시 공공자전거의 1시간 이용 요금은 얼마인가\n보기: 3천 원, 5백 원, 1천 원, 2천 원")}]
OPTION_GOLD = "1천 원\n근거: 이용 요금은 1시간에 1천 원으로 기존과 같다."
OPTION_TASK = "extractive_qa_objective_explanation"
SUMMARY = "해온시는 다음 달부터 공공자전거 300대를 지하철역 주변에 추가로 배치하고, 요금은 1시간에 1천 원으로 유지한다."


def test_a_model_answer_right_by_the_metric_gives_way_to_a_grounded_rule_negative():
    offered = candidates(OPTION_TASK, OPTION_PROMPT, OPTION_GOLD, ("1천 원", True), "opt-1", wrong_below=0.5)
    assert [c["source"] for c in offered] == ["model", "rule"]  # wrong by format, so offered first
    picked, discarded = pick_rejected(OPTION_TASK, OPTION_PROMPT, OPTION_GOLD, offered, min_gap=0.1)
    assert [(c["source"], c["chosen_score"], c["rejected_score"]) for c in discarded] == [("model", 1.0, 1.0)]
    assert picked["source"] == "rule" and picked["rule"] == "wrong_option"
    assert (picked["chosen_score"], picked["rejected_score"]) == (1.0, 0.0)
    assert picked["text"].split("\n")[0] in ("3천 원", "5백 원", "2천 원")


def test_a_tie_is_never_a_lead_and_no_filter_keeps_the_first_candidate():
    model_only = candidates(OPTION_TASK, OPTION_PROMPT, OPTION_GOLD, ("1천 원", True), "opt-1", 0.5)[:1]
    picked, discarded = pick_rejected(OPTION_TASK, OPTION_PROMPT, OPTION_GOLD, model_only, min_gap=0.0)
    assert picked is None and len(discarded) == 1
    picked, discarded = pick_rejected(OPTION_TASK, OPTION_PROMPT, OPTION_GOLD, model_only, min_gap=None)
    assert picked["text"] == "1천 원" and discarded == [] and "rejected_score" not in picked


def _record(rid: str, task: str, user: str, gold: str) -> dict:
    return {"id": rid, "task": task, "source": "test", "messages": [
        {"role": "user", "content": user}, {"role": "assistant", "content": gold}]}


@pytest.fixture
def data(tmp_path):
    summary_prompt = "다음 글을 요약하세요.\n해온시는 공공자전거 300대를 추가로 배치한다."
    # the rule each summary record gets is fixed by its id (a hash): one near-copy, one off-topic reply
    assert rule_negative("summarization", SUMMARY, summary_prompt, "sum-1")[0] == "truncated"
    assert rule_negative("summarization", SUMMARY, summary_prompt, "sum-6")[0] == "english"
    records = [
        _record("yn-1", "extractive_qa_yes_no", "글: 서울은 대한민국의 수도이다.\n질문: 서울은 수도인가요?", "예"),
        _record("sum-1", "summarization", summary_prompt, SUMMARY),
        _record("sum-6", "summarization", summary_prompt, SUMMARY),
        _record("empty", "summarization", summary_prompt, "  "),
    ]
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def test_build_pairs_drops_pairs_the_metric_cannot_rank_and_counts_every_record(data, tmp_path):
    card = build_pairs(data, tmp_path / "pairs", min_gap=0.5, progress=False)
    info = card["splits"]["train"]
    pairs = [json.loads(line) for line in (tmp_path / "pairs" / "train.jsonl").read_text().splitlines()]
    rejects = [json.loads(line) for line in (tmp_path / "pairs" / "rejects.jsonl").read_text().splitlines()]
    assert [p["id"] for p in pairs] == ["yn-1-pair", "sum-6-pair"]
    assert all(p["chosen_score"] - p["rejected_score"] >= 0.5 for p in pairs)
    by_id = {r["id"]: r for r in rejects}
    assert by_id.keys() == {"sum-1", "empty"}
    near_copy = by_id["sum-1"]
    assert near_copy["reason"] == "rejected_not_worse" and near_copy["rejected_from"] == "rule"
    assert near_copy["chosen_score"] == 1.0 and 0.5 < near_copy["rejected_score"] < 1.0
    assert by_id["empty"]["reason"] == "no_gold_answer"
    assert info["records"] == info["pairs"] + info["skipped"] == 4  # never silent loss
    assert info["rejects"] == {"rejected_not_worse": 1, "no_gold_answer": 1}
    assert info["not_worse_candidates"] == {"rule": 1}
    card_md = (tmp_path / "pairs" / "card.md").read_text()
    assert "| rejected_not_worse | 1 |" in card_md and "at least 0.5" in card_md


def test_without_the_filter_every_record_with_a_negative_gives_a_pair(data, tmp_path):
    card = build_pairs(data, tmp_path / "pairs", min_gap=None, progress=False)
    assert card["splits"]["train"]["pairs"] == 3
    assert card["splits"]["train"]["rejects"] == {"no_gold_answer": 1}
    first = json.loads((tmp_path / "pairs" / "train.jsonl").read_text().splitlines()[0])
    assert "rejected_score" not in first


def test_pairs_cli_takes_the_gap_and_names_the_rejects_file(data, tmp_path, monkeypatch, capsys):
    import sys

    from kositp.cli import main

    out = tmp_path / "pairs"
    monkeypatch.setattr(sys, "argv", ["kositp", "data", "pairs", "--data", str(data), "--out", str(out),
                                      "--min-gap", "0.5"])
    main()  # returns on success; errors exit non-zero
    assert "train: 2 (2 records without a pair)" in capsys.readouterr().out
    assert json.loads((out / "card.json").read_text())["min_gap"] == 0.5
