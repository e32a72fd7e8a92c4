"""Incremental decoding never shows U+FFFD for Korean split across tokens; stop sequences are cut exactly."""

from __future__ import annotations

import pytest

from kositp.serve.textstream import REPLACEMENT, IncrementalDecoder, StopMatcher

KOREAN = "대한민국은 민주공화국이다. 모든 권력은 국민으로부터 나온다. 훈민정음 똠방각하 뷁 😀 끝."


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_byte_level_tokens_do_split_hangul(tokenizer):
    # The premise of the decoder: some single tokens are not valid UTF-8 on their own.
    ids = tokenizer(KOREAN, add_special_tokens=False)["input_ids"]
    pieces = [tokenizer.decode([i]) for i in ids]
    assert any(REPLACEMENT in p for p in pieces), "expected rare syllables/emoji to split across byte tokens"


def test_incremental_decode_is_exact_and_never_emits_replacement(tokenizer):
    ids = tokenizer(KOREAN, add_special_tokens=False)["input_ids"]
    decoder = IncrementalDecoder(tokenizer)
    pieces = [decoder.push(i) for i in ids]
    pieces.append(decoder.flush())
    assert all(REPLACEMENT not in p for p in pieces)
    assert "".join(pieces) == KOREAN


def test_stop_sequence_is_cut_and_never_partially_streamed():
    matcher = StopMatcher(["###", "끝."])
    released = [matcher.push(p) for p in ["안녕", "하세요 #", "#", "# 다음"]]
    assert "".join(released) == "안녕하세요 "
    assert matcher.stopped
    assert all("#" not in r for r in released)


def test_held_back_prefix_is_released_when_it_is_not_a_stop():
    matcher = StopMatcher(["끝이다"])
    out = matcher.push("이것은 끝") + matcher.push("나지 않는다")
    assert not matcher.stopped
    assert out + matcher.flush() == "이것은 끝나지 않는다"


def test_stop_spanning_many_pieces_and_earliest_stop_wins():
    matcher = StopMatcher(["ABC", "B"])
    assert matcher.push("xA") == "x"
    assert matcher.push("BC") == ""
    assert matcher.stopped and matcher.text == "x"


def test_reply_cut_inside_a_character_drops_the_incomplete_bytes(tokenizer):
    ids = tokenizer("뷁", add_special_tokens=False)["input_ids"]
    assert len(ids) > 1, "a rare syllable should need several byte tokens"
    decoder = IncrementalDecoder(tokenizer)
    pieces = [decoder.push(i) for i in ids[:-1]]  # max_tokens reached before the last byte
    assert "".join(pieces) + decoder.flush() == ""


def test_sse_event_is_one_line_for_any_text():
    import json

    from kositp.serve.schemas import sse_event

    text = "줄\u2028바꿈\u2029문단\x85다음\n개행\r복귀\x0b\x0c\x1c\x1d\x1e끝"
    raw = sse_event({"choices": [{"delta": {"content": text}}]}).decode("utf-8")
    assert raw.endswith("\n\n")
    lines = raw[:-2].splitlines()  # the strictest splitter any client uses
    assert len(lines) == 1 and lines[0].startswith("data: ")
    assert json.loads(lines[0][len("data: "):])["choices"][0]["delta"]["content"] == text
    assert "줄" in raw  # Hangul stays readable, not \uXXXX
