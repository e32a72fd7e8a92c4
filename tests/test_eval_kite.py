"""KITE: every checker with Korean passing and failing responses; the suite on the tiny model."""

from __future__ import annotations

import json

import pytest

from kositp.eval.suites.kite_checks import CHECKERS, check

# instruction id -> (kwargs, a response that follows it, a response that does not)
CASES = {
    "combination:repeat_prompt": (
        {"prompt_to_repeat": "서울의 명소를 소개하세요."},
        "서울의 명소를 소개하세요. 경복궁과 남산타워가 유명합니다.",
        "경복궁과 남산타워가 유명합니다. 서울의 명소를 소개하세요."),
    "combination:two_responses": (
        {}, "첫 번째 답변입니다.\n******\n두 번째 답변입니다.", "답변 하나뿐입니다.\n******\n답변 하나뿐입니다."),
    "detectable_content:number_placeholders": (
        {"num_placeholders": 2}, "[이름]님, [주소]로 보내 드리겠습니다.", "[이름]님, 곧 보내 드리겠습니다."),
    "detectable_content:postscript": (
        {"postscript_marker": "P.P.S"}, "본문입니다.\n\nP.P.S 추신: 다음에 또 뵙겠습니다.", "본문입니다. 추신은 없습니다."),
    "detectable_format:constrained_response": (
        {}, "내 대답은 아니요입니다.", "아마 그럴 겁니다."),
    "detectable_format:json_format": (
        {}, '```json\n{"도시": "서울", "인구": 9400000}\n```', "도시: 서울, 인구: 940만"),
    "detectable_format:multiple_sections": (
        {"section_spliter": "단락", "num_sections": 2}, "단락 1\n봄 이야기\n단락 2\n여름 이야기", "봄 이야기와 여름 이야기"),
    "detectable_format:number_bullet_lists": (
        {"num_bullets": 3}, "* 사과\n* 배\n- 포도", "* 사과\n* 배"),
    "detectable_format:number_highlighted_sections": (
        {"num_highlights": 2}, "*첫째* 준비하고 **둘째** 실행합니다.", "*첫째* 준비하고 실행합니다."),
    "detectable_format:title": (
        {}, "<<봄날의 서울>>\n벚꽃이 핍니다.", "봄날의 서울\n벚꽃이 핍니다."),
    "keywords:existence": (
        {"keywords": ["한강", "야경"]}, "한강의 야경은 아름답습니다.", "한강은 넓습니다."),
    "keywords:forbidden_words": (
        {"forbidden_words": ["사랑"]}, "우정은 소중합니다.", "사랑은 소중합니다."),
    "keywords:frequency": (
        {"keyword": "평화", "relation": "최소", "frequency": 2}, "평화를 원합니다. 평화가 오기를.", "평화를 원합니다."),
    "keywords:letter_frequency": (
        {"letter": "q", "let_relation": "미만", "let_frequency": 2}, "Q&A 시간입니다.", "qq 아니면 q입니다."),
    "length_constraints:nth_paragraph_first_word": (
        {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "그러나"},
        "첫 문단입니다.\n\n그러나 둘째 문단은 다릅니다.", "첫 문단입니다.\n\n둘째 문단은 그러나 다릅니다."),
    "length_constraints:number_paragraphs": (
        {"num_paragraphs": 2}, "첫 문단입니다.\n***\n둘째 문단입니다.", "첫 문단입니다.\n\n둘째 문단입니다."),
    "length_constraints:number_sentences": (
        {"relation": "less than", "num_sentences": 3}, "날씨가 좋아요. 산책을 갑니다.",
        "날씨가 좋아요. 산책을 갑니다. 공원에 도착했어요. 집에 왔습니다."),
    "length_constraints:number_words": (
        {"relation": "적어도", "num_words": 5}, "오늘은 날씨가 정말 좋아서 산책을 했습니다.", "날씨가 좋습니다."),
    "punctuation:no_comma": (
        {}, "사과와 배와 포도를 샀습니다.", "사과, 배, 포도를 샀습니다."),
    "startend:end_checker": (
        {"end_phrase": "다른 질문 있으신가요?"}, "답변을 드렸습니다. 다른 질문 있으신가요?", "다른 질문 있으신가요? 답변을 드렸습니다."),
    "startend:quotation": (
        {}, '"서울은 대한민국의 수도입니다."', "서울은 대한민국의 수도입니다."),
    "Korean:acrostic_poem": (
        {"target_word": "자유"}, "자: 자유롭게 하늘을 나는 새처럼\n유: 유유히 흐르는 강물처럼",
        "하늘을 나는 새처럼\n강물처럼 흐르는 마음"),
    "Korean:honorifics": (
        {"direction_to": "honorific"}, "여기까지 오시느라 고생하셨어요. 이제 좀 쉬세요.",
        "여기까지 오느라 고생했어. 이제 좀 쉬어."),
    "Korean:numbers": (
        {"direction_to": "korean"}, "나는 매일 오후 세 시에 운동을 해.", "나는 매일 오후 3시에 운동을 해."),
    "Korean:postposition_drop": (
        {}, "냄비 물 붓고 끓이기. 면 스프 넣고 삼 분 기다리기.", "냄비에 물을 붓고 끓입니다."),
}


def test_every_instruction_id_has_a_case():
    assert set(CASES) == set(CHECKERS)


@pytest.mark.parametrize("instruction_id", sorted(CASES))
def test_checker_passes_and_fails_korean_examples(instruction_id):
    kwargs, good, bad = CASES[instruction_id]
    assert check(instruction_id, good, kwargs), good
    assert not check(instruction_id, bad, kwargs), bad
    assert not check(instruction_id, "", kwargs)  # an empty reply follows nothing


@pytest.mark.parametrize(
    ("instruction_id", "kwargs", "good", "bad"),
    [
        ("Korean:honorifics", {"direction_to": "non-honorific"}, "오늘 날씨가 참 좋다. 산책하러 갈래?",
         "오늘 날씨가 참 좋네요. 산책하러 가실래요?"),
        ("Korean:numbers", {"direction_to": "chinese"}, "회의는 이십 분 동안 진행될 예정입니다.",
         "사과 하나, 배 둘, 포도 세 송이를 샀어요."),
        ("Korean:acrostic_poem", {"target_word": "밤하늘"}, "밤: 밤이 깊어\n하: 하늘의 별이\n늘: 늘 빛나네",
         "밤: 밤이 깊어\n늘: 늘 빛나네\n하: 하늘의 별이"),
        ("keywords:frequency", {"keyword": "봄", "relation": "less than", "frequency": 2}, "봄이 왔다.", "봄, 봄, 봄."),
    ],
)
def test_the_other_direction_of_korean_checkers(instruction_id, kwargs, good, bad):
    assert check(instruction_id, good, kwargs)
    assert not check(instruction_id, bad, kwargs)


def test_loose_accepts_an_intro_line_and_markdown_that_strict_refuses():
    reply = "반말로 바꾸면 다음과 같습니다:\n여기까지 오느라 고생했어. 이제 좀 쉬어."
    assert not check("Korean:honorifics", reply, {"direction_to": "non-honorific"})
    assert check("Korean:honorifics", reply, {"direction_to": "non-honorific"}, loose=True)
    assert not check("startend:quotation", '**"안녕하세요"**', {})
    assert check("startend:quotation", '**"안녕하세요"**', {}, loose=True)


def test_every_record_in_the_shared_files_has_a_checker(benchmarks_dir):
    from kositp.eval.suites.kite import load

    general, korean = load(benchmarks_dir, "general"), load(benchmarks_dir, "korean")
    assert (len(general), len(korean)) == (427, 100)
    for item in general + korean:
        for instruction_id, kwargs in zip(item["ids"], item["kwargs"], strict=True):
            check(instruction_id, "예시 답변입니다.", kwargs)  # every kwargs shape is accepted
            check(instruction_id, "예시 답변입니다.", kwargs, loose=True)


def test_ifeval_accuracies_are_computed_from_the_verdicts():
    from kositp.eval.suites.kite import score

    items = [{"ids": ["punctuation:no_comma", "keywords:existence"], "kwargs": [{}, {"keywords": ["서울"]}]},
             {"ids": ["punctuation:no_comma"], "kwargs": [{}]}]
    result, verdicts = score(items, ["서울에 갑니다.", "사과, 배"])
    assert verdicts[0]["strict"] == [True, True] and verdicts[1]["strict"] == [False]
    assert result["prompt_strict"] == 0.5 and result["instruction_strict"] == pytest.approx(2 / 3)
    assert result["per_instruction_strict"]["punctuation:no_comma"] == {"n": 2, "acc": 0.5}


def test_kite_suite_on_the_tiny_model(tmp_path, benchmarks_dir):
    from kositp.eval.run import EvalConfig, evaluate

    cfg = EvalConfig(model="tiny", suites=["kite"], benchmarks=benchmarks_dir, limit=2, kite_max_new_tokens=24,
                     out=tmp_path / "r")
    report = evaluate(cfg, show_progress=False)
    per_task = report["suites"]["kite"]["metrics"]["per_task"]
    assert set(per_task) == {"general", "korean"} and per_task["general"]["n"] == 2
    rows = [json.loads(line) for line in (tmp_path / "r" / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 4
    from kositp.eval.suites.kite import load

    for row in rows:  # the verdicts in predictions.jsonl are the checkers' verdicts on the saved output
        item = next(i for i in load(benchmarks_dir, row["task"]) if i["id"] == row["id"])
        assert row["followed_strict"] == [check(i, row["output"], k) for i, k in zip(item["ids"], item["kwargs"],
                                                                                        strict=True)]
    for key in ("prompt_strict", "instruction_strict", "prompt_loose", "instruction_loose"):
        assert f"kite/general/{key}" in report["headline"]
    for part in per_task.values():  # loose reads also try the unchanged response, so it never scores lower
        assert part["prompt_strict"] <= part["prompt_loose"] and part["instruction_strict"] <= part["instruction_loose"]
    assert (tmp_path / "r" / "charts" / "kite.png").is_file()
    assert "## KITE" in (tmp_path / "r" / "report.md").read_text(encoding="utf-8")
