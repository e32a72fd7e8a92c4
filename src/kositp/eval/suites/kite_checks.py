"""Rule-based checkers for every KITE `instruction_id`, written for Korean text.

Each checker takes (response, kwargs) and says whether the response follows that instruction. They
follow IFEval's definitions (google-research/instruction_following_eval) where those carry over,
and count in Korean where IFEval counts in English:
* words are 어절 (whitespace-separated units with a letter or digit), not English tokens;
* sentences come from Kiwi's Korean sentence splitter, not NLTK's English one;
* keywords and forbidden words match as substrings, because a Korean word carries its particle
  (서울은, 서울을) and `\\b` word boundaries never fall between a noun and its particle;
* relations are given in English or Korean (at least / 최소 / 적어도 / 최소한, less than / 미만).
The Korean-specific ones: acrostic initials (Hangul syllable starting consecutive lines), honorific
or plain sentence endings (Kiwi sentences, final ending checked), Sino-Korean vs native numbers
(Kiwi numerals plus numbers before counters; Arabic digits fail both), and postposition drop (no
particle from the instruction's list, found by Kiwi's J* tags).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import lru_cache

AT_LEAST = ("at least", "최소", "적어도", "최소한")
LESS_THAN = ("less than", "미만")


def relation_holds(relation: str, count: int, target: int) -> bool:
    relation = str(relation).strip().lower()
    if relation in AT_LEAST:
        return count >= target
    if relation in LESS_THAN:
        return count < target
    raise ValueError(f"unknown relation {relation!r}")


@lru_cache(maxsize=1)
def _kiwi():
    from kiwipiepy import Kiwi

    return Kiwi()


def sentences(text: str) -> list[str]:
    """Korean sentences (Kiwi's splitter), without empty ones."""
    return [s.text.strip() for s in _kiwi().split_into_sents(text) if s.text.strip()]


def words(text: str) -> list[str]:
    """어절: whitespace-separated units that hold a letter or a digit."""
    return [w for w in text.split() if re.search(r"\w", w)]


# --------------------------------------------------------------------------- IFEval-derived checkers


def repeat_prompt(response: str, kw: dict) -> bool:
    return response.strip().lower().startswith(kw["prompt_to_repeat"].strip().lower())


def two_responses(response: str, kw: dict) -> bool:
    parts = [p.strip() for p in response.split("******")]
    filled = [p for p in parts if p]
    return len(filled) == 2 and len(parts) - len(filled) <= 2 and filled[0] != filled[1]


def number_placeholders(response: str, kw: dict) -> bool:
    return len(re.findall(r"\[.*?\]", response)) >= kw["num_placeholders"]


def postscript(response: str, kw: dict) -> bool:
    marker = kw["postscript_marker"].strip().lower()
    if marker == "p.p.s":
        pattern = r"\s*p\.\s?p\.\s?s.*$"
    elif marker == "p.s.":
        pattern = r"\s*p\.\s?s\..*$"
    else:
        pattern = r"\s*" + re.escape(marker) + r".*$"
    return bool(re.search(pattern, response.lower(), flags=re.MULTILINE))


CONSTRAINED_OPTIONS = ("my answer is yes.", "my answer is no.", "my answer is maybe.",
                       "내 대답은 예입니다", "내 대답은 아니요입니다", "내 대답은 아니오입니다", "내 대답은 아마도입니다")


def constrained_response(response: str, kw: dict) -> bool:
    text = response.strip().lower()
    return any(option in text for option in CONSTRAINED_OPTIONS)


def json_format(response: str, kw: dict) -> bool:
    text = response.strip()
    text = re.sub(r"^```(?:json|Json|JSON)?\s*", "", text)
    text = re.sub(r"\s*```$", "", text).strip()
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def multiple_sections(response: str, kw: dict) -> bool:
    parts = re.split(r"\s?" + re.escape(kw["section_spliter"]) + r"\s?\d+\s?", response)
    return len(parts) - 1 >= kw["num_sections"]


def number_bullet_lists(response: str, kw: dict) -> bool:
    stars = re.findall(r"^\s*\*[^\*].*$", response, flags=re.MULTILINE)
    dashes = re.findall(r"^\s*-.*$", response, flags=re.MULTILINE)
    return len(stars) + len(dashes) == kw["num_bullets"]


def number_highlighted_sections(response: str, kw: dict) -> bool:
    count = sum(1 for h in re.findall(r"\*[^\n\*]*\*", response) if h.strip("*").strip())
    count += sum(1 for h in re.findall(r"\*\*[^\n\*]*\*\*", response) if h.removeprefix("**").removesuffix("**").strip())
    return count >= kw["num_highlights"]


def title(response: str, kw: dict) -> bool:
    return any(t.strip("<>").strip() for t in re.findall(r"<<[^\n]+>>", response))


def keywords_existence(response: str, kw: dict) -> bool:
    return all(k.lower() in response.lower() for k in kw["keywords"])


def forbidden_words(response: str, kw: dict) -> bool:
    return not any(w.lower() in response.lower() for w in kw["forbidden_words"])


def keyword_frequency(response: str, kw: dict) -> bool:
    count = response.lower().count(kw["keyword"].strip().lower())
    return relation_holds(kw["relation"], count, kw["frequency"])


def letter_frequency(response: str, kw: dict) -> bool:
    count = response.lower().count(kw["letter"].lower())
    return relation_holds(kw["let_relation"], count, kw["let_frequency"])


def paragraphs_by_divider(response: str) -> list[str]:
    return re.split(r"\s?\*\*\*\s?", response)


def number_paragraphs(response: str, kw: dict) -> bool:
    parts = paragraphs_by_divider(response)
    count = len(parts)
    for i, part in enumerate(parts):
        if not part.strip():
            if i in (0, len(parts) - 1):
                count -= 1
            else:
                return False
    return count == kw["num_paragraphs"]


def nth_paragraph_first_word(response: str, kw: dict) -> bool:
    """Paragraphs split by blank lines; the nth starts with `first_word` (a particle may follow it)."""
    parts = [p for p in re.split(r"\n\s*\n", response) if p.strip()]
    if len(parts) != kw["num_paragraphs"] or len(parts) < kw["nth_paragraph"]:
        return False
    paragraph = parts[kw["nth_paragraph"] - 1].strip().lstrip("\"'“”‘’*#-([ ").lower()
    return paragraph.startswith(kw["first_word"].strip().lower())


def number_sentences(response: str, kw: dict) -> bool:
    return relation_holds(kw["relation"], len(sentences(response)), kw["num_sentences"])


def number_words(response: str, kw: dict) -> bool:
    return relation_holds(kw["relation"], len(words(response)), kw["num_words"])


def no_comma(response: str, kw: dict) -> bool:
    return "," not in response and "，" not in response


def end_checker(response: str, kw: dict) -> bool:
    return response.strip().strip("\"'“”").strip().lower().endswith(kw["end_phrase"].strip().lower())


def quotation(response: str, kw: dict) -> bool:
    text = response.strip()
    return len(text) > 1 and ((text[0] == '"' and text[-1] == '"') or (text[0] == "“" and text[-1] == "”"))


# --------------------------------------------------------------------------- Korean-specific checkers

_HANGUL_SYLLABLE = re.compile(r"[\uac00-\ud7a3]")


def acrostic_poem(response: str, kw: dict) -> bool:
    """Consecutive non-empty lines whose first Hangul syllables spell `target_word` (자: 자유..., **유**...)."""
    target = [c for c in kw["target_word"] if _HANGUL_SYLLABLE.match(c)]
    initials = []
    for line in response.splitlines():
        found = _HANGUL_SYLLABLE.search(line)
        if line.strip() and found:
            initials.append(found.group())
    n = len(target)
    return n > 0 and any(initials[i:i + n] == target for i in range(len(initials) - n + 1))


_POLITE_END = re.compile(r"(요|니다|니까|십시오|시오|세요|죠)$")


def _sentence_end(sentence: str) -> str:
    return re.sub(r"[^\w]+$", "", sentence.strip())


def honorifics(response: str, kw: dict) -> bool:
    """honorific: every sentence ends politely (-요, -니다, -니까, -시오, -죠); non-honorific: none does."""
    ends = [_sentence_end(s) for line in response.splitlines() for s in sentences(line)]
    ends = [e for e in ends if _HANGUL_SYLLABLE.search(e[-1:] or "")]
    if not ends:
        return False
    polite = [bool(_POLITE_END.search(e)) for e in ends]
    return all(polite) if kw["direction_to"] == "honorific" else not any(polite)


NATIVE_NUMBERS = frozenset([
    "하나", "둘", "셋", "넷", "다섯", "여섯", "일곱", "여덟", "아홉", "열", "스물", "서른", "마흔", "쉰", "예순",
    "일흔", "여든", "아흔", "한", "두", "세", "네", "스무", "첫째", "둘째", "셋째", "넷째",
])
SINO_NUMBERS = frozenset(["일", "이", "삼", "사", "오", "육", "칠", "팔", "구", "십", "백", "천", "만", "억", "영", "공"])
_SINO_COUNTED = re.compile(r"(?<![가-힣])(?:[일이삼사오육칠팔구]?십[일이삼사오육칠팔구]?|[일이삼사오육칠팔구백천])"
                           r"\s?(?:분|시간|시|일|명|번|개|송이|가지|살|층|원|년|월|째|권|잔|마리|세|주|회|km|kg)")


def number_systems(text: str) -> tuple[int, int]:
    """(native numerals, Sino-Korean numerals) Kiwi finds, plus Sino-Korean numbers before a counter."""
    native = sino = 0
    for token in _kiwi().tokenize(text):
        if token.tag in ("NR", "MM") and token.form in NATIVE_NUMBERS:
            native += 1
        elif token.tag == "NR" and all(c in SINO_NUMBERS for c in token.form):
            sino += 1
    return native, sino + len(_SINO_COUNTED.findall(text))


def numbers(response: str, kw: dict) -> bool:
    """chinese: Sino-Korean numbers only; korean: native numbers only; Arabic digits fail both."""
    if re.search(r"[0-9]", response):
        return False
    native, sino = number_systems(response)
    if kw["direction_to"] == "chinese":
        return sino > 0 and native == 0
    return native > 0 and sino == 0


DROPPABLE_PARTICLES = frozenset(["가", "이", "은", "는", "을", "를", "에", "에서", "와", "과", "로", "으로"])


def postposition_drop(response: str, kw: dict) -> bool:
    """No particle of the instruction's list (가 이 은 는 을 를 에 에서 와 과 로 으로), by Kiwi's J* tags."""
    if not response.strip():
        return False
    return not any(t.tag.startswith("J") and t.form in DROPPABLE_PARTICLES for t in _kiwi().tokenize(response))


CHECKERS: dict[str, Callable[[str, dict], bool]] = {
    "combination:repeat_prompt": repeat_prompt,
    "combination:two_responses": two_responses,
    "detectable_content:number_placeholders": number_placeholders,
    "detectable_content:postscript": postscript,
    "detectable_format:constrained_response": constrained_response,
    "detectable_format:json_format": json_format,
    "detectable_format:multiple_sections": multiple_sections,
    "detectable_format:number_bullet_lists": number_bullet_lists,
    "detectable_format:number_highlighted_sections": number_highlighted_sections,
    "detectable_format:title": title,
    "keywords:existence": keywords_existence,
    "keywords:forbidden_words": forbidden_words,
    "keywords:frequency": keyword_frequency,
    "keywords:letter_frequency": letter_frequency,
    "length_constraints:nth_paragraph_first_word": nth_paragraph_first_word,
    "length_constraints:number_paragraphs": number_paragraphs,
    "length_constraints:number_sentences": number_sentences,
    "length_constraints:number_words": number_words,
    "punctuation:no_comma": no_comma,
    "startend:end_checker": end_checker,
    "startend:quotation": quotation,
    "Korean:acrostic_poem": acrostic_poem,
    "Korean:honorifics": honorifics,
    "Korean:numbers": numbers,
    "Korean:postposition_drop": postposition_drop,
}


def loose_variants(response: str) -> list[str]:
    """IFEval's loose reading: the response, without its first and/or last line, with and without '*'."""
    lines = response.split("\n")
    bases = [response, "\n".join(lines[1:]).strip(), "\n".join(lines[:-1]).strip(), "\n".join(lines[1:-1]).strip()]
    return [v for b in bases for v in (b, b.replace("*", ""))]


def check(instruction_id: str, response: str, kwargs: dict, loose: bool = False) -> bool:
    checker = CHECKERS[instruction_id]
    kwargs = {k: v for k, v in (kwargs or {}).items() if v is not None}
    if not loose:
        return bool(response.strip()) and checker(response, kwargs)
    return any(v.strip() and checker(v, kwargs) for v in loose_variants(response))
