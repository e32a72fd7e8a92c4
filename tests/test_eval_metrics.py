"""Metric and answer-parsing unit tests with hand-computed Korean examples."""

from __future__ import annotations

import pytest

from kositp.data.task_names import NO, UNANSWERABLE, YES
from kositp.eval import answers, metrics
from kositp.eval.suites import seed4
from kositp.eval.suites.tasks import score_example


def test_rouge_score_default_tokenizer_drops_hangul_which_is_why_we_use_kiwi():
    from rouge_score import rouge_scorer

    default = rouge_scorer.RougeScorer(["rougeL"]).score("서울은 대한민국의 수도이다", "서울은 한국의 수도이다")
    assert default["rougeL"].fmeasure == 0.0
    assert metrics.rouge_l("서울은 한국의 수도이다.", "서울은 대한민국의 수도이다") > 0


def test_korean_rouge_l_matches_a_hand_count():
    pred, ref = "서울은 한국의 수도이다.", "서울은 대한민국의 수도이다"
    # Kiwi morphemes (punctuation dropped):
    assert metrics.morphemes(pred) == ["서울", "은", "한국", "의", "수도", "이", "다"]
    assert metrics.morphemes(ref) == ["서울", "은", "대한민국", "의", "수도", "이", "다"]
    # LCS = 서울 은 의 수도 이 다 = 6 of 7 on both sides: P = R = F = 6/7.
    assert metrics.rouge_l(pred, ref) == pytest.approx(6 / 7)


def test_rouge_l_handles_particles_that_whitespace_tokens_miss():
    # Whitespace tokens share nothing ("청솔군이" vs "청솔군은"); morphemes share 청솔군, 교통비, 지원, 하, 다 ...
    pred, ref = "청솔군이 교통비를 지원한다", "청솔군은 교통비 지원을 한다"
    assert metrics.rouge_l(pred, ref) > 0.5


def test_token_f1_on_morphemes_hand_count():
    # 읍 면 행정 복지 센터 에서 vs 읍 면 행정 복지 센터: common 5, P = 5/6, R = 5/5, F1 = 10/11.
    assert metrics.token_f1("읍면 행정복지센터에서", "읍면 행정복지센터") == pytest.approx(10 / 11)
    assert metrics.token_f1("", "서울") == 0.0
    assert metrics.token_f1("부산", "서울") == 0.0


def test_exact_match_ignores_spacing_quotes_and_final_period():
    assert metrics.exact_match("읍면 행정복지 센터.", "읍면 행정복지센터") == 1.0
    assert metrics.exact_match("\"2만 원\"", "2만원") == 1.0
    assert metrics.exact_match("3만 원", "2만 원") == 0.0


def test_chrf_is_sacrebleu_sentence_chrf():
    assert metrics.chrf("서울은 수도다", "서울은 수도다") == pytest.approx(100.0)
    assert 0 < metrics.chrf("서울은 수도다", "서울은 한국의 수도다") < 100


def test_keyword_f1_hand_count():
    # pred {혼합냉매, 효율, 압축기}, gold {혼합냉매, 냉동사이클, 효율}: common 2, P = R = 2/3.
    assert metrics.keyword_f1("혼합 냉매, 효율, 압축기", "혼합냉매, 냉동 사이클, 효율") == pytest.approx(2 / 3)
    assert metrics.split_keywords("#AI, 딥러닝;\n딥러닝") == ["ai", "딥러닝"]


def test_macro_f1_matches_sklearn_definition_by_hand():
    golds = ["a", "a", "b", "b"]
    preds = ["a", "b", "b", "b"]
    # a: tp1 fp0 fn1 -> 2/3 ; b: tp2 fp1 fn0 -> 4/5 ; macro = (2/3 + 4/5) / 2
    assert metrics.macro_f1(golds, preds) == pytest.approx((2 / 3 + 4 / 5) / 2)


def test_invalid_outputs_count_as_wrong_and_the_seed_figure_drops_them():
    bench = seed4.BENCHMARKS["nsmc"]
    golds = ["긍정", "긍정", "부정", "부정"]
    preds = ["긍정", None, "부정", "긍정"]  # the second output was unparseable
    result = seed4.score(bench, golds, preds)
    # Strict, over the gold classes: 긍정 tp1 fp1 fn1 -> 1/2 ; 부정 tp1 fp0 fn1 -> 2/3.
    assert result["macro_f1"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert result["accuracy"] == pytest.approx(2 / 4)
    assert result["invalid_rate"] == pytest.approx(1 / 4)
    # Seed style, invalid dropped: golds 긍 부 부, preds 긍 부 긍: 긍 tp1 fp1 fn0 -> 2/3 ; 부 tp1 fp0 fn1 -> 2/3.
    assert result["macro_f1_valid_only"] == pytest.approx(2 / 3)
    assert result["prediction_counts"] == {"긍정": 2, "부정": 1, "invalid": 1}


def test_question_pair_label_is_inverted():
    assert seed4.qpair_label("0") == YES  # 0 = the same question
    assert seed4.qpair_label("1") == NO
    with pytest.raises(ValueError):
        seed4.qpair_label("2")


@pytest.mark.parametrize(
    ("output", "label"),
    [
        ("긍정", "긍정"),
        ("긍정입니다.", "긍정"),
        ("정답: 부정", "부정"),
        ('"부정"', "부정"),
        ("이 리뷰는 부정적입니다.", "부정"),
        ("긍정 또는 부정", None),  # a hedge is not an answer
        ("잘 모르겠어요", None),
        ("", None),
    ],
)
def test_label_parsing_rule(output, label):
    assert answers.match_label(output, seed4.BENCHMARKS["nsmc"].surfaces) == label


@pytest.mark.parametrize(
    ("output", "label"),
    [("예", YES), ("네, 같은 의미입니다.", YES), ("아니요.", NO), ("아니오", NO), ("예를 들어 보면", None)],
)
def test_yes_no_parsing(output, label):
    assert answers.parse_yes_no(output) == label


def test_options_parsing_and_matching():
    assert answers.parse_options("질문\n보기: 1만 원, 2만 원, 3만 원") == ["1만 원", "2만 원", "3만 원"]
    numbered = answers.parse_options("질문: 과일은?\n보기:\n1. 배추\n2. 사과\n3. 당근\n\n답하세요.")
    assert numbered == ["배추", "사과", "당근"]
    for output in ("사과", "2번", "②", "정답은 사과입니다"):
        assert answers.match_option(output, numbered) == "사과"
    assert answers.match_option("포도", numbered) is None


def test_task_scoring_rules():
    prompt = [{"role": "user", "content": "질문\n보기: 1만 원, 2만 원, 3만 원"}]
    assert score_example("extractive_qa_objective", prompt, "2만 원", "2만 원", True)["scores"]["accuracy"] == 1.0
    wrong = score_example("extractive_qa_objective", prompt, "5만 원", "2만 원", True)
    assert wrong == {"valid": False, "scores": {"accuracy": 0.0}}

    unans = score_example("answerability_classification", [], "답변할 수 없음", UNANSWERABLE, True)
    assert unans["scores"]["accuracy"] == 1.0 and unans["valid"]
    answered = score_example("answerability_classification", [], "만 65세 이상입니다", "만 65세 이상", True)
    assert answered["scores"]["accuracy"] == 1.0

    explained = score_example("extractive_qa_yes_no_explanation", [], "아니요\n근거: 2024년부터 지원한다.",
                              "아니요\n근거: 2024년 3월부터 지원한다.", True)
    assert explained["valid"] and explained["scores"]["accuracy"] == 1.0
    assert 0 < explained["scores"]["evidence_rouge_l"] < 1
    no_evidence = score_example("extractive_qa_yes_no_explanation", [], "아니요", "아니요\n근거: 문장.", True)
    assert not no_evidence["valid"]

    short = "청솔군이 어르신 교통비를 준다."
    assert score_example("text_simplification", [], short, short, True)["scores"]["within_50_chars"] == 1.0
    long_text = "가" * 51
    assert score_example("text_simplification", [], long_text, short, True)["scores"]["within_50_chars"] == 0.0
    cut = score_example("summarization", [], "요약이 끝나지 않고", "요약", finished=False)
    assert not cut["valid"]
    leaked = score_example("summarization", [], "요약<|im_start|>user", "요약", finished=True)
    assert not leaked["valid"]
