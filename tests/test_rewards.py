"""GRPO rewards on hand-made Korean completions: right, wrong, malformed and wrong-language replies."""

from __future__ import annotations

import pytest

from kositp.train.rewards import (
    REWARD_NAMES,
    Reward,
    format_score,
    korean_score,
    length_score,
    make_rewards,
    task_score,
    verifiable_tasks,
)

PASSAGE = ("해온시는 다음 달부터 공공자전거 300대를 지하철역 주변에 추가로 배치한다고 발표했다. "
           "이용 요금은 1시간에 1천 원으로 기존과 같다.")
YES_NO = [{"role": "user", "content": f"{PASSAGE}\n\n위 글에 따르면, 이용 요금은 1시간에 2천 원인가요? '예'/'아니요'로 답하세요."}]
OBJECTIVE = [{"role": "user", "content": f"질문 \"1시간 이용 요금은 얼마인가\"에 대한 답을 고르세요.\n\n{PASSAGE}\n\n"
                                         "보기: 1천 원, 5백 원, 3천 원, 2천 원"}]
ANSWERABILITY = [{"role": "user", "content": f"다음은 문서의 일부입니다.\n{PASSAGE}\n\n질문 \"시장의 이름은 무엇인가\"의 답이 "
                                             "문서에 나와 있는지 확인하고 '답변할 수 있음' 또는 '답변할 수 없음'으로 답변하세요."}]
SHORT = [{"role": "user", "content": f"{PASSAGE}\n\n질문: 해온시가 추가로 배치하는 공공자전거는 몇 대인가요?"}]
EXPLANATION = [{"role": "user", "content": f"{PASSAGE}\n\n위 글에 따르면, 요금은 1시간에 2천 원인가 '예'/'아니요'로 답하고 "
                                           "근거 문장을 쓰세요."}]
KEYWORDS = [{"role": "user", "content": f"글: {PASSAGE}\n\n키워드:"}]
SIMPLIFY = [{"role": "user", "content": f"다음 내용을 짧고 쉽게 다시 쓰세요. 50자를 넘기지 마세요.\n{PASSAGE}"}]


@pytest.mark.parametrize("task, prompt, gold, output, expected", [
    # yes/no: the label, a copula ending, the other label, a hedge
    ("extractive_qa_yes_no", YES_NO, "아니요", "아니요", 1.0),
    ("extractive_qa_yes_no", YES_NO, "아니요", "아니요, 1천 원입니다.", 1.0),
    ("extractive_qa_yes_no", YES_NO, "아니요", "예", 0.0),
    ("extractive_qa_yes_no", YES_NO, "아니요", "예 또는 아니요", 0.0),
    # objective: option text, option number, another option, no option
    ("extractive_qa_objective", OBJECTIVE, "1천 원", "1천 원", 1.0),
    ("extractive_qa_objective", OBJECTIVE, "1천 원", "1번", 1.0),
    ("extractive_qa_objective", OBJECTIVE, "1천 원", "2천 원", 0.0),
    ("extractive_qa_objective", OBJECTIVE, "1천 원", "모르겠습니다", 0.0),
    # answerability
    ("answerability_classification", ANSWERABILITY, "답변할 수 없음", "답변할 수 없음", 1.0),
    ("answerability_classification", ANSWERABILITY, "답변할 수 없음", "답변할 수 있음", 0.0),
    ("answerability_classification", ANSWERABILITY, "답변할 수 없음", "", 0.0),
    # explanation tasks are scored on the answer; the evidence is the format reward's business
    ("extractive_qa_yes_no_explanation", EXPLANATION, "아니요\n근거: 이용 요금은 1시간에 1천 원으로 기존과 같다.",
     "아니요\n근거: 요금은 1천 원이다.", 1.0),
    ("extractive_qa_yes_no_explanation", EXPLANATION, "아니요\n근거: 이용 요금은 1시간에 1천 원으로 기존과 같다.",
     "예\n근거: 요금은 2천 원이다.", 0.0),
    # short QA: morpheme token F1
    ("extractive_qa_short", SHORT, "300대", "300대", 1.0),
    ("extractive_qa_short", SHORT, "300대", "20개", 0.0),
    # keywords: set F1, order free
    ("keyword_tagging", KEYWORDS, "공공자전거, 요금, 지하철역", "지하철역, 공공자전거, 요금", 1.0),
    ("keyword_tagging", KEYWORDS, "공공자전거, 요금, 지하철역", "날씨, 축제", 0.0),
])
def test_task_reward_is_the_eval_metric(task, prompt, gold, output, expected):
    assert task_score(task, prompt, output, gold) == pytest.approx(expected)


def test_short_answer_partial_credit_sits_between_right_and_wrong():
    partial = task_score("extractive_qa_short", SHORT, "공공자전거 300대를 배치한다", "300대")
    assert 0.0 < partial < 1.0


def test_simplification_combines_content_overlap_with_the_length_rule():
    gold = "해온시가 다음 달 공공자전거 300대를 더 놓는다."
    right = task_score("text_simplification", SIMPLIFY, "해온시가 공공자전거 300대를 더 놓는다.", gold)
    too_long = task_score("text_simplification", SIMPLIFY, gold + " 이용 요금은 1시간에 1천 원으로 기존과 같다고 한다.", gold)
    off_topic = task_score("text_simplification", SIMPLIFY, "오늘은 비가 온다.", gold)
    assert right > 0.5 + 1e-9  # within 50 characters (0.5) plus overlap
    assert too_long <= 0.5  # all the content but over 50 characters: the length half is lost
    assert 0.5 <= off_topic < right  # short but unrelated: only the length half


@pytest.mark.parametrize("task, prompt, gold, output, finished, expected", [
    ("extractive_qa_yes_no", YES_NO, "아니요", "아니요", True, 1.0),
    ("extractive_qa_yes_no", YES_NO, "아니요", "예", True, 1.0),  # wrong but well-formed
    ("extractive_qa_yes_no", YES_NO, "아니요", "아니요", False, 0.0),  # never ended its turn
    ("extractive_qa_yes_no", YES_NO, "아니요", "잘 모르겠어요", True, 0.0),  # no label
    ("extractive_qa_yes_no", YES_NO, "아니요", "아니요<end_of_turn>\n<start_of_turn>user", True, 0.0),  # leaks
    ("extractive_qa_yes_no_explanation", EXPLANATION, "아니요\n근거: 요금은 1천 원이다.", "아니요", True, 0.0),
    ("extractive_qa_yes_no_explanation", EXPLANATION, "아니요\n근거: 요금은 1천 원이다.",
     "아니요\n근거: 요금은 1천 원이다.", True, 1.0),
    ("extractive_qa_objective", OBJECTIVE, "1천 원", "7번", True, 0.0),  # no such option
    ("keyword_tagging", KEYWORDS, "공공자전거, 요금", "공공자전거, " + "아주 긴 키워드" * 6, True, 0.0),
    ("extractive_qa_short", SHORT, "300대", "", True, 0.0),
])
def test_format_reward_is_the_eval_validity_plus_end_of_turn(task, prompt, gold, output, finished, expected):
    assert format_score(task, prompt, output, gold, finished) == expected


@pytest.mark.parametrize("output, low, high", [
    ("아니요, 요금은 1천 원입니다.", 1.0, 1.0),
    ("300", 1.0, 1.0),  # no letters: nothing drifted
    ("No, the fee is 1,000 won.", 0.0, 0.0),  # English
    ("不是，费用是一千元。", 0.0, 0.0),  # Chinese
    ("いいえ、料金は千ウォンです。", 0.0, 0.0),  # Japanese
    ("아니요, the fee is same.", 0.2, 0.5),  # code-switching mid-reply
])
def test_korean_reward_penalises_other_scripts(output, low, high):
    assert low <= korean_score(output, YES_NO[0]["content"]) <= high


def test_korean_reward_does_not_penalise_words_copied_from_the_prompt():
    source = "글: kositp는 LoRA와 GRPO로 모델을 학습한다.\n질문: 어떤 방법으로 학습하나요?"
    assert korean_score("LoRA와 GRPO로 학습합니다.", source) == 1.0
    assert korean_score("LoRA와 PPO로 학습합니다.", source) < 1.0  # PPO is not in the source


def test_length_penalty():
    gold = "300대"  # 4 characters: no penalty up to 8, -1 from 16 on
    assert length_score("300대", gold) == 0.0
    assert length_score("자전거 300대", gold) == 0.0  # 8 characters
    assert length_score("가" * 12, gold) == pytest.approx(-0.5)
    assert length_score("가" * 40, gold) == -1.0


def test_reward_functions_take_trls_batch_and_name_themselves():
    end_of_turn = [106, 1]
    rewards, weights = make_rewards({"task": 1.0, "format": 0.5, "korean": 0.5, "length": 0.0}, end_of_turn)
    assert [r.__name__ for r in rewards] == ["task", "format", "korean"] and weights == [1.0, 0.5, 0.5]
    batch = {
        "prompts": [YES_NO] * 4,
        "completions": [[{"role": "assistant", "content": text}] for text in
                        ("아니요", "예", "아니요", "No, it is not.")],
        "completion_ids": [[5, 106], [7, 106], [5, 9], [8, 1]],  # the third was cut before its end-of-turn
        "task": ["extractive_qa_yes_no"] * 4,
        "gold": ["아니요"] * 4,
    }
    by_name = {r.__name__: r(**batch, trainer_state=None, log_metric=None) for r in rewards}
    assert by_name["task"] == [1.0, 0.0, 1.0, 1.0]  # the eval's parser reads "No" as 아니요 ...
    assert by_name["format"] == [1.0, 1.0, 0.0, 1.0]
    assert by_name["korean"][:3] == [1.0, 1.0, 1.0] and by_name["korean"][3] == 0.0  # ... the Korean reward does not
    assert isinstance(rewards[0], Reward)


def test_defaults_leave_out_open_ended_tasks():
    tasks = verifiable_tasks()
    assert "extractive_qa_yes_no" in tasks and "table_qa_short" in tasks and "text_simplification" in tasks
    for open_ended in ("summarization", "abstractive_qa_long", "text_composition", "summary_expansion",
                       "title_generation"):
        assert open_ended not in tasks
    assert set(REWARD_NAMES) == {"task", "format", "korean", "length"}
