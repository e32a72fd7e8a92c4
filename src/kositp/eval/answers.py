"""Turning free-form model outputs into labels and options, with an explicit "invalid" outcome.

An output that does not give one recognisable answer is *invalid*, never silently dropped: suites
count it as wrong and report how often it happens. The surface forms accepted for each label are
listed here so the rule is visible and testable.
"""

from __future__ import annotations

import re
import unicodedata

from kositp.data.task_names import ANSWERABLE, NO, OPTIONS_PREFIX, UNANSWERABLE, YES
from kositp.eval.metrics import normalize

# Markers that leak when a model does not stop where its chat template ends a turn.
TEMPLATE_MARKERS = ("<|im_start|>", "<|im_end|>", "<start_of_turn>", "<end_of_turn>", "<|endoftext|>")

# Lead-ins a model may put before the answer ("정답: 예").
_LEAD_IN = re.compile(r"^\s*(?:정답|답변|답|출력|결과|분류|판단|레이블|라벨|label|answer)\s*[:：은는]\s*", re.I)
# Endings that may follow a label word without changing it: "긍정입니다", "함의예요", "예."
_COPULA = ("입니다", "이다", "이에요", "예요", "이요", "임", "요", "다")
_HANGUL = re.compile(r"[\uac00-\ud7a3\u3131-\u318e]")

YES_NO_SURFACES: dict[str, tuple[str, ...]] = {
    YES: (YES, "네", "그렇다", "맞다", "맞습니다", "yes"),
    NO: (NO, "아니오", "아니다", "아닙니다", "아니", "no"),
}


def first_line(text: str) -> str:
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()
    return ""


def _compact(text: str) -> str:
    text = unicodedata.normalize("NFC", text).lower()
    return re.sub(r"[\s\"'“”‘’`*「」『』\[\]()<>.,!?~:;]", "", text)


def _starts_with_label(text: str, surface: str) -> bool:
    """`text` begins with `surface`, followed by nothing, a non-Hangul character, or a copula ending."""
    if not text.startswith(surface):
        return False
    rest = text[len(surface):]
    if not rest or not _HANGUL.match(rest[0]):
        return True
    return any(rest.startswith(end) and not _HANGUL.match(rest[len(end):len(end) + 1] or " ") for end in _COPULA)


def _standalone_labels(text: str, ordered: list[tuple[str, str]]) -> set[str]:
    """Labels whose surface occurs in `text` as a word of its own (a copula ending allowed after it)."""
    found = set()
    text = unicodedata.normalize("NFC", text or "").lower()
    for label, surface in ordered:
        surface = surface.lower()
        for hit in re.finditer(re.escape(surface), text):
            before = text[hit.start() - 1] if hit.start() else " "
            if not (_HANGUL.match(before) or before.isalpha()) and _starts_with_label(text[hit.start():], surface):
                found.add(label)
                break
    return found


def match_label(output: str, surfaces: dict[str, tuple[str, ...]]) -> str | None:
    """The one label `output` gives, or None (invalid).

    1. The first non-empty line, lead-in ("정답:") removed, starts with a label's surface form, and
       no other label stands in that line ("긍정 또는 부정" is a hedge, not an answer).
    2. Otherwise exactly one label's surface appears as a word of its own anywhere in the output.
    Longer surfaces are tried first so 아니요 is not read as 아니.
    """
    ordered = sorted(
        ((label, form) for label, forms in surfaces.items() for form in forms), key=lambda pair: -len(pair[1])
    )
    line = _LEAD_IN.sub("", first_line(output))
    head = line.lstrip("\"'“”‘’`*「」『』[(<- ").lower()
    for label, surface in ordered:
        if _starts_with_label(head, surface.lower()):
            return label if _standalone_labels(line, ordered) <= {label} else None
    found = _standalone_labels(output, ordered)
    return found.pop() if len(found) == 1 else None


def parse_yes_no(output: str) -> str | None:
    return match_label(output, YES_NO_SURFACES)


def is_unanswerable(text: str) -> bool:
    return _compact(UNANSWERABLE) in _compact(text or "")


def parse_answerability(output: str) -> str | None:
    """`UNANSWERABLE`, `ANSWERABLE`, or None when the output is empty.

    Gold targets are either 답변할 수 없음 or (for answerable items) 답변할 수 있음 / the answer text
    itself, so any other non-empty output counts as "answerable".
    """
    if not normalize(output):
        return None
    if is_unanswerable(output):
        return UNANSWERABLE
    return ANSWERABLE


_OPTION_NUMBER = re.compile(r"^\s*(?:\(?\d{1,2}[).번:]|[①②③④⑤⑥⑦⑧⑨⑩]|[a-eA-E][).]|[-*•])\s*")


def parse_options(prompt: str) -> list[str]:
    """The options listed after `보기:` in a prompt, whether numbered lines or one comma list."""
    text = unicodedata.normalize("NFC", prompt or "")
    match = re.search(re.escape(OPTIONS_PREFIX).replace(":", r"\s*:"), text)
    if not match:
        return []
    rest = text[match.end():]
    same_line, _, after = rest.partition("\n")
    lines = [same_line] + after.split("\n")
    numbered = [line for line in lines[1:] if _OPTION_NUMBER.match(line) and line.strip()]
    if len([x for x in lines if x.strip()]) > 1 and numbered and not same_line.strip():
        options = []
        for line in lines[1:]:
            if not line.strip():
                if options:
                    break
                continue
            if not _OPTION_NUMBER.match(line):
                break
            options.append(_OPTION_NUMBER.sub("", line).strip())
        return [o for o in options if o]
    return [o.strip() for o in same_line.split(",") if o.strip()]


_CIRCLED = "①②③④⑤⑥⑦⑧⑨⑩"


def match_option(output: str, options: list[str]) -> str | None:
    """The option `output` picks: equal text (spaces ignored), a number (2, 2번, ②), or the one option it contains."""
    head = _LEAD_IN.sub("", first_line(output))
    compact = _compact(head)
    if not compact:
        return None
    by_text = {_compact(o): o for o in options}
    if compact in by_text:
        return by_text[compact]
    number = re.match(r"^\(?(\d{1,2})\)?(?:번|\.|\)|$)", head.strip())
    circled = head.strip()[:1]
    index = int(number.group(1)) - 1 if number else (_CIRCLED.index(circled) if circled in _CIRCLED else -1)
    if 0 <= index < len(options):
        return options[index]
    contained = [o for key, o in by_text.items() if key and key in _compact(output)]
    # the longest contained option wins only if the others are parts of it (e.g. "서울" in "서울특별시")
    contained.sort(key=len, reverse=True)
    if contained and all(_compact(o) in _compact(contained[0]) for o in contained):
        return contained[0]
    return None


def leaks_template(output: str) -> bool:
    return any(marker in (output or "") for marker in TEMPLATE_MARKERS)
