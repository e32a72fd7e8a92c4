"""DATA stage: target-quality rules (kositp.data.quality), each with a hit and a near miss, and the build's rejects."""

from __future__ import annotations

import json

import pytest

from kositp.data.build import BuildConfig, SourceConfig, build
from kositp.data.quality import REASONS, RULES, check_target
from kositp.data.task_names import TASKS, with_explanation

PASSAGE = ("해온시는 다음 달부터 공공자전거 300대를 추가로 배치한다. 이용 요금은 1시간에 1천 원이다. "
           "시는 대여 기록을 분석해 자전거를 주말마다 옮길 계획이다.")
PROMPT = f"다음 글을 요약하세요.\n\n{PASSAGE}"


def reason(task: str, target: str, passage: str = PASSAGE, prompt: str = PROMPT) -> str | None:
    found = check_target(task, target, prompt, passage)
    return found[0] if found else None


@pytest.mark.parametrize(("target", "expected"), [
    ("해온시가 공공자전거 300대를 더 놓는다..", "doubled_final_punctuation"),
    ("해온시가 공공자전거 300대를 더 놓는다?.", "doubled_final_punctuation"),
    ("해온시가 공공자전거 300대를 더 놓는다.", None),
    ("해온시 공공자전거는 300대가 끝이 아니다……", None),  # an ellipsis trails off on purpose
    ("해온시가 공공자전거를 더 놓을지는 아직 모른다…….", None),  # ellipsis + period, as Korean orthography writes it
    ("해온시가 공공자전거를 또 늘린다니...", None),
    ("해온시가 공공자전거를 300대나 늘린다고?!", None),
])
def test_doubled_final_punctuation(target, expected):
    assert reason("summarization", target) == expected


@pytest.mark.parametrize(("target", "expected"), [
    ("해온시가 공공자전거 300대를 더 놓는다", "missing_final_punctuation"),
    ("시는 “자전거 300대를 더 놓는다.”", None),  # the mark may sit inside closing quotes
    ("해온시가 공공자전거 300대를 더 놓는다!", None),
])
def test_missing_final_punctuation(target, expected):
    assert reason("summarization", target) == expected


def test_short_answers_need_no_final_mark():
    assert reason("extractive_qa_short", "300대") is None and reason("title_generation", "공공자전거 300대 추가") is None


@pytest.mark.parametrize(("task", "target", "expected"), [
    # cut out of the passage in the middle of a word ("계획이다" -> "계")
    ("text_simplification", "시는 대여 기록을 분석해 자전거를 주말마다 옮길 계.", "truncated_target"),
    ("summarization", "시는 대여 기록을 분석해 자전거를 주말마다 옮길 계획이다.", "target_copies_prompt"),
    # a connective ending waits for the next clause
    ("summarization", "해온시는 공공자전거 300대를 추가로 배치했으며.", "truncated_target"),
    ("summarization", "해온시는 공공자전거를 늘렸지만.", "truncated_target"),
    ("text_composition", "그런데 자전거는 왜 또 늘렸는데?", None),  # a spoken question closed by "?"
    ("summarization", "해온시 공공자전거 이용이 역대 최고.", None),  # a noun ending in 고, not the connective
    ("summarization", "해온시가 자전거를 나눠 두는 곳은 스무 곳의 마을.", None),  # 마을 ends in 을, a noun
    # a question that stops at its topic particle
    ("paraphrasing", "청솔군이 지원하는 교통비가 충전되는 곳은", "truncated_target"),
    ("paraphrasing", "청솔군이 지원하는 교통비는 어디에 충전되나", None),
    ("paraphrasing", "해온시 공공자전거의 1시간 요금은 얼마인가", None),  # 인가 ends a question
])
def test_truncated_targets(task, target, expected):
    assert reason(task, target) == expected


@pytest.mark.parametrize(("task", "target", "passage", "expected"), [
    ("summarization", PASSAGE, PASSAGE, "target_copies_prompt"),  # the passage itself
    ("summarization", "이용 요금은 1시간에 1천 원이다.", PASSAGE, "target_copies_prompt"),  # one sentence of it
    ("summarization", "해온시가 공공자전거 300대를 더 배치하고 요금은 그대로 둔다.", PASSAGE, None),
    ("paraphrasing", "해온시 공공자전거 요금은 얼마인가", "해온시 공공자전거 요금은 얼마인가", "target_copies_prompt"),
    ("paraphrasing", "해온시에서 자전거를 한 시간 빌리면 얼마인가", "해온시 공공자전거 요금은 얼마인가", None),
    ("extractive_qa_long", "대여 기록을 분석해 자전거를 주말마다 옮길 계획", PASSAGE, None),  # a span must be contained
])
def test_target_copies_prompt(task, target, passage, expected):
    assert reason(task, target, passage, f"지시문\n\n{passage}") == expected


def test_a_short_target_is_not_a_copy_of_the_instruction():
    # "요약." appears in "요약하세요" by chance: too short to count as copying
    assert reason("summarization", "요약.", "가상시가 버스를 바꾼다.", "다음 글을 요약하세요. 가상시가 버스를 바꾼다.") is None


@pytest.mark.parametrize(("task", "target", "passage", "expected"), [
    ("extractive_qa_short", "500대", PASSAGE, "answer_not_in_passage"),
    ("extractive_qa_short", "300대", PASSAGE, None),
    ("extractive_qa_short", "1시간에 1천 원", PASSAGE.replace("1시간에 1천", "1시간에  1천"), None),  # spacing differs
    ("table_qa_short", "17", "<table><tr><th>읍면</th><th>경로당</th></tr><tr><td>누리읍</td><td>17</td></tr></table>", None),
    ("table_qa_short", "18", "<table><tr><th>읍면</th><th>경로당</th></tr><tr><td>누리읍</td><td>17</td></tr></table>",
     "answer_not_in_passage"),
])
def test_answer_not_in_passage(task, target, passage, expected):
    assert reason(task, target, passage, passage) == expected


@pytest.mark.parametrize(("target", "expected"), [
    (with_explanation("1천 원", "이용 요금은 1시간에 1천 원이다."), None),
    (with_explanation("1천 원", "이용 요금은 1시간에 2천 원이다."), "evidence_not_in_passage"),
    ("1천 원", "evidence_not_in_passage"),
])
def test_evidence_not_in_passage(target, expected):
    assert reason("extractive_qa_objective_explanation", target) == expected


def test_rule_table_names_known_tasks_and_reasons():
    assert set(RULES) <= set(TASKS)
    assert {rule.__name__ for rules in RULES.values() for rule in rules} == set(REASONS)
    for label_task in ("answerability_classification", "abstractive_qa_yes_no", "extractive_qa_objective",
                       "keyword_tagging"):
        assert label_task not in RULES


def test_build_rejects_bad_targets_by_reason(tmp_path):
    rows = [
        {"input": "다음 글을 요약하세요. 가상시는 3일 시내버스 12개 노선을 전기버스로 바꾼다고 밝혔다.",
         "output": "가상시가 버스 12개 노선을 전기버스로 바꾼다..", "Task_name": "Summarization"},
        {"input": "다음 글을 요약하세요. 가상군은 올해 도서관 두 곳을 새로 연다고 밝혔다. 개관은 가을이다.",
         "output": "가상군이 올해 도서관 두 곳을 새로 연다", "Task_name": "Summarization"},
        {"input": "다음 글을 요약하세요. 가상읍은 장날마다 무료 셔틀버스를 운행한다. 노선은 세 개다.",
         "output": "가상읍이 장날마다 무료 셔틀버스를 운행한다.", "Task_name": "Summarization"},
        {"input": "다음 글을 요약하세요. 가상면은 마을 회관을 고친다. 공사는 한 달 걸린다.",
         "output": "가상면은 마을 회관을 고친다.", "Task_name": "Summarization"},
    ]
    (tmp_path / "seed.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                                         encoding="utf-8")
    # a chat set is not one of the 22 tasks: casual ".." passes unchecked
    (tmp_path / "chat.json").write_text(json.dumps([{"instruction": "인사해 줘", "output": "안녕하세요.."}],
                                                   ensure_ascii=False), encoding="utf-8")
    cfg = BuildConfig(sources=[SourceConfig(format="kositp", path=str(tmp_path / "seed.jsonl")),
                               SourceConfig(format="alpaca", path=str(tmp_path / "chat.json"))],
                      splits={"validation": 0, "test": 0}, plot=False)
    card = build(cfg, tmp_path / "out").card
    assert card["counts"]["written"] == 2 and card["per_task"]["instruction"]["train"] == 1
    assert card["target_quality"] == dict.fromkeys(REASONS, 0) | {
        "doubled_final_punctuation": 1, "missing_final_punctuation": 1, "target_copies_prompt": 1}
    rejects = [json.loads(line) for line in (tmp_path / "out" / "rejects.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sorted(r["reason"] for r in rejects if r.get("task") == "summarization") == [
        "doubled_final_punctuation", "missing_final_punctuation", "target_copies_prompt"]
    assert all(r.get("detail") for r in rejects if r.get("task") == "summarization")
    md = (tmp_path / "out" / "card.md").read_text(encoding="utf-8")
    assert "| `doubled_final_punctuation` | 1 |" in md and "| `evidence_not_in_passage` | 0 |" in md
