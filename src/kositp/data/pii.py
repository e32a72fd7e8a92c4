"""Personal data in Korean text: find it, count it by kind, and mask it with typed placeholders.

Real AIHub texts carry personal data: news articles end with the reporter's e-mail address,
call-center and dialogue sets hold phone, card and account numbers. `kositp data build` runs every
message of every record through `scan` (config key `pii: mask | drop | keep`).

Kinds and their placeholders (Korean, so a model trained on masked text writes them in Korean):

| kind             | placeholder        | shape                                                   |
|------------------|--------------------|---------------------------------------------------------|
| `url_userinfo`   | `<계정정보>`       | the `user:password` part of `scheme://user:password@host` |
| `email`          | `<이메일>`         | `local@domain.tld`                                      |
| `resident_id`    | `<주민등록번호>`   | `YYMMDD-Gxxxxxx`, G = 1..8 (also foreigners' numbers)  |
| `card_number`    | `<카드번호>`       | 4-4-4-4 / 4-6-5 digit groups, or 15-16 bare digits passing Luhn |
| `phone`          | `<전화번호>`       | Korean mobile (01x), landline (02, 0xx area codes), 070, `+82` forms |
| `account_number` | `<계좌번호>`       | 10-14 digits (grouped by hyphens or bare) right after a banking word |

Detectors run in the order of the table: each sees the text the earlier ones left, so a URL's
`password@host` is not read again as an e-mail address and a card number is not read as an account.
Every numeric pattern is fenced with "no digit (or digit group) directly before or after", so a
phone-shaped piece inside a longer number (an ISBN, an order number, a date-time stamp) is left
alone, while Korean written around the number without spaces ("연락처는010-1234-5678입니다") is not
a fence and does not stop a match.

Not covered (see docs/data.md): personal names, street addresses, passport and driver's licence
numbers, and text that arrives already masked with '*' (the build's separate `masked_pii` check).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

PLACEHOLDERS: dict[str, str] = {
    "url_userinfo": "<계정정보>",
    "email": "<이메일>",
    "resident_id": "<주민등록번호>",
    "card_number": "<카드번호>",
    "phone": "<전화번호>",
    "account_number": "<계좌번호>",
}
KINDS: tuple[str, ...] = tuple(PLACEHOLDERS)
MODES = ("mask", "drop", "keep")

# A number starts where no digit, and no "digit + separator", comes right before it, and ends where
# no digit, and no "separator + digit", follows. This keeps "010-1234-5678" inside
# "979-11-010-1234-5678-0" or "2024.010.1234.5678" from matching, while Hangul, spaces and
# punctuation around the number are fine.
_START = r"(?<!\d)(?<!\d[-.])"
_END = r"(?!\d)(?![-.]\d)"
_SEP = r"[-. ]?"  # dash, dot or a single space between groups, or nothing

# scheme://user:password@host -- only the part before '@' is personal (a login and often its
# password); the host stays, so the text still says which service it was.
_URL_USERINFO = re.compile(r"(?i)(?P<head>\b[a-z][a-z0-9+.-]*://)(?P<userinfo>[^\s/@<>]+)@(?=[^\s@])")

# Local part in ASCII (what mail systems accept in practice), a domain of dot-separated labels and
# a letter-only top-level domain: "hong@yna.co.kr로" stops before the Korean particle because
# Hangul is neither in the local part nor in the TLD.
_EMAIL = re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
                    r"(?![A-Za-z0-9-])")

# 주민등록번호: YYMMDD, then the 7-digit tail whose first digit encodes century and sex (1-4 for
# citizens, 5-8 for the foreigner registration numbers that share the layout). The month and day
# are checked, so a 13-digit order number rarely qualifies, and a dash or space may sit in between.
_RESIDENT_ID = re.compile(_START + r"\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])[- ]?[1-8]\d{6}" + _END)

# Payment cards print their number as 4-4-4-4 (Visa, Mastercard, Korean domestic cards) or 4-6-5
# (Amex); in that grouped form the shape alone is telling. A bare run of 15-16 digits is only taken
# when it passes the Luhn checksum every issued card number satisfies (9 in 10 random runs fail it).
_CARD_GROUPED = re.compile(_START + r"(?:\d{4}([- ])\d{4}\1\d{4}\1\d{4}|\d{4}([- ])\d{6}\2\d{5})" + _END)
_CARD_BARE = re.compile(r"(?<!\d)\d{15,16}(?!\d)")

# Korean phone numbers. Mobile: 010 (and the older 011/016/017/018/019), then 3-4 and 4 digits.
# Landline: Seoul 02, or an area code 031-033, 041-044, 051-055, 061-064, or 070 (internet phone),
# then 3-4 and 4 digits. The same separator (or none) is used between all groups of one number,
# which is how people write them and keeps "2023-01-05"-like mixtures out; an area code may also
# stand in parentheses, "(02) 123-4567". International form: +82, the leading 0 of the national
# number dropped (sometimes kept, or written as "(0)").
_MOBILE = r"01[016789]"
_AREA = r"0(?:2|3[1-3]|4[1-4]|5[1-5]|6[1-4]|70)"
_PHONE = re.compile(
    _START + r"(?:" + _MOBILE + r"|" + _AREA + r")(?P<sep>[-. ]?)\d{3,4}(?P=sep)\d{4}" + _END
    + r"|\(" + _AREA + r"\) ?\d{3,4}[-. ]?\d{4}" + _END
    + r"|\+82[-. ]?(?:\(0\)[-. ]?|0)?(?:1[016789]|2|3[1-3]|4[1-4]|5[1-5]|6[1-4]|70)" + _SEP + r"\d{3,4}" + _SEP
    + r"\d{4}" + _END)

# Bank account numbers have no common shape (3-3-6, 6-2-6, 4-3-6, 3-4-4-2, ... by bank) and look
# like order, patent or business registration numbers. So a digit run of 10-14 digits, bare or in
# hyphenated groups, counts as an account only when a banking word stands within a few characters
# before it ("계좌 110-123-456789", "농협 301-0123-4567-81로 입금").
_ACCOUNT_NUMBER = re.compile(r"(?<![\d-])\d{2,6}(?:-\d{2,8}){1,4}(?![\d-])|(?<!\d)\d{10,14}(?!\d)")
_BANK_WORDS = re.compile(r"계좌|입금|송금|이체|예금주|은행|뱅크|금고|농협|수협|신협|우체국")
_ACCOUNT_WINDOW = 20  # characters before the number searched for a banking word


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum of a card number (every second digit from the right doubled)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _isbn13_ok(digits: str) -> bool:
    """A valid ISBN-13 (978/979 prefix and checksum): a book number, never an account."""
    if len(digits) != 13 or digits[:3] not in ("978", "979"):
        return False
    return sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(digits)) % 10 == 0


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def _bank_word_before(match: re.Match, text: str) -> bool:
    return _BANK_WORDS.search(text, max(0, match.start() - _ACCOUNT_WINDOW), match.start()) is not None


def _is_resident_id(match: re.Match, text: str) -> bool:
    # 13 bare digits after a banking word ("계좌번호는 1101234567890") are an account number that
    # happens to start with a valid date; written with its dash, the number is a resident id.
    return not (match.group().isdigit() and _bank_word_before(match, text))


def _is_card(match: re.Match, text: str) -> bool:
    return luhn_ok(match.group())


def _is_account(match: re.Match, text: str) -> bool:
    digits = _digits(match.group())
    if not 10 <= len(digits) <= 14 or _isbn13_ok(digits):
        return False
    return _bank_word_before(match, text)


@dataclass(frozen=True)
class Detector:
    kind: str
    pattern: re.Pattern
    group: str | int = 0  # the part of the match that is personal (and replaced)
    accept: Callable[[re.Match, str], bool] | None = None  # a check beyond the shape


DETECTORS: tuple[Detector, ...] = (
    Detector("url_userinfo", _URL_USERINFO, group="userinfo"),
    Detector("email", _EMAIL),
    Detector("resident_id", _RESIDENT_ID, accept=_is_resident_id),
    Detector("card_number", _CARD_GROUPED),
    Detector("card_number", _CARD_BARE, accept=_is_card),
    Detector("phone", _PHONE),
    Detector("account_number", _ACCOUNT_NUMBER, accept=_is_account),
)


def scan(text: str) -> tuple[str, Counter[str]]:
    """(`text` with every finding replaced by its kind's placeholder, findings per kind)."""
    found: Counter[str] = Counter()
    for det in DETECTORS:
        pieces, last = [], 0
        for match in det.pattern.finditer(text):
            if det.accept is not None and not det.accept(match, text):
                continue
            start, end = match.span(det.group)
            pieces += [text[last:start], PLACEHOLDERS[det.kind]]
            last = end
            found[det.kind] += 1
        if pieces:
            text = "".join(pieces) + text[last:]
    return text, found


def mask(text: str) -> str:
    """`text` with personal data replaced by typed placeholders."""
    return scan(text)[0]


def find(text: str) -> Counter[str]:
    """Findings per kind in `text` (nothing replaced)."""
    return scan(text)[1]
