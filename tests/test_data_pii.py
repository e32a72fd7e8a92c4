"""DATA stage: the PII detector (kositp.data.pii) on tricky Korean text, and the build's mask/drop/keep modes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kositp.data.build import BuildConfig, SourceConfig, build
from kositp.data.pii import KINDS, PLACEHOLDERS, find, luhn_ok, mask


@pytest.mark.parametrize(("text", "masked"), [
    # reporters' bylines, the most common personal data in AIHub news
    ("홍길동 기자 hong@yna.co.kr", "홍길동 기자 <이메일>"),
    ("문의는hong.gil-dong+news@example.com으로 보내면 된다.", "문의는<이메일>으로 보내면 된다."),
    # mobile numbers with dashes, dots, spaces or nothing, Korean glued to both sides
    ("연락처는010-1234-5678입니다", "연락처는<전화번호>입니다"),
    ("010.1234.5678로 전화", "<전화번호>로 전화"),
    ("번호 010 1234 5678", "번호 <전화번호>"),
    ("01012345678번으로 문자", "<전화번호>번으로 문자"),
    ("옛 번호 011-123-4567", "옛 번호 <전화번호>"),
    # landlines: Seoul, area codes, parentheses, internet phone
    ("상담실 02-123-4567", "상담실 <전화번호>"),
    ("군청(031)123-4567로", "군청<전화번호>로"),
    ("대표 051.987.6543", "대표 <전화번호>"),
    ("070-1234-5678 인터넷 전화", "<전화번호> 인터넷 전화"),
    # +82: national 0 dropped, kept, or written as (0)
    ("+82 10-1234-5678", "<전화번호>"),
    ("+82-2-123-4567에서", "<전화번호>에서"),
    ("+82 (0)10 1234 5678", "<전화번호>"),
    ("+821012345678", "<전화번호>"),
    ("주민등록번호 900101-1234567 확인", "주민등록번호 <주민등록번호> 확인"),
    ("주민번호는9001012345678이다", "주민번호는<주민등록번호>이다"),
    ("카드 1234-5678-9012-3456로 결제", "카드 <카드번호>로 결제"),
    ("아멕스 3782 822463 10005", "아멕스 <카드번호>"),
    ("카드번호4111111111111111입니다", "카드번호<카드번호>입니다"),
    ("국민은행 계좌 123456-78-901234로 입금", "국민은행 계좌 <계좌번호>로 입금"),
    ("농협 301-0123-4567-81 예금주 홍길동", "농협 <계좌번호> 예금주 홍길동"),
    ("계좌번호는 1101234567890입니다", "계좌번호는 <계좌번호>입니다"),
    # only the login part of a URL: the host still says which service it was
    ("https://admin:s3cret@db.example.com/x 접속", "https://<계정정보>@db.example.com/x 접속"),
])
def test_personal_data_is_masked_with_typed_placeholders(text, masked):
    assert mask(text) == masked


@pytest.mark.parametrize("text", [
    "2023-01-05, 2023.01.05, 20230105, 2023년 1월 5일",  # dates
    "가격은 1,250,000원이며 할인가는 990,000원이다.",  # prices
    "1988년 서울 올림픽과 2002년 월드컵",  # years
    "ISBN 978-89-12345-67-8, ISBN 979-11-6224-123-4",  # ISBNs
    "979-11-010-1234-5678-0",  # a phone-shaped piece inside a longer hyphenated number
    "주문번호 20240101012345678",  # a phone-shaped piece inside a longer digit run
    "오전 10:30부터 오후 02:15까지",  # times
    "버전 1.10.1234, v0.10.1234",  # version numbers
    "헌법 제10조 제1항, 법률 제12345호",  # law article numbers
    "특허 10-2020-0123456 출원",  # account-shaped but no banking word before it
    "4111111111111112는 검사 숫자가 틀린 16자리다",  # bare 16 digits failing Luhn
    "은행나무 출판사, ISBN 9788956601236",  # a banking word before it, but the number is a valid ISBN-13
    "인구는 9,700,000명, 면적은 605.2㎢다.",
    "점수는 010점이 아니라 100점이다.",
    "대화 *** 님이 입장했습니다",  # source-side '*' masks are the build's masked_pii check, not this one
])
def test_ordinary_numbers_survive(text):
    assert mask(text) == text and not find(text)


def test_url_password_is_not_read_again_as_an_email():
    assert find("ftp://user:pass@files.example.org 와 메일 a@b.co") == {"url_userinfo": 1, "email": 1}


def test_every_kind_has_a_korean_placeholder():
    assert set(PLACEHOLDERS) == set(KINDS)
    assert all(p.startswith("<") and p.endswith(">") and any("가" <= c <= "힣" for c in p) for p in PLACEHOLDERS.values())


def test_luhn():
    assert luhn_ok("4111111111111111") and luhn_ok("378282246310005") and not luhn_ok("4111111111111112")


# ------------------------------------------------------------------ the build's pii step


MRC = {"data": [{"doc_id": "N1", "doc_title": "가상시 버스", "paragraphs": [{
    "context": "가상시는 3일 시내버스 12개 노선을 전기버스로 바꾼다고 밝혔다. 교체 비용은 총 84억 원이다. "
               "문의는 교통과 02-123-4567로 하면 된다. 김가상 기자 kim@example.co.kr",
    "qas": [{"question_id": 1, "question": "가상시 전기버스 교체 비용은 모두 얼마인가", "is_impossible": False,
             "answers": {"text": "84억 원", "answer_start": 40}},
            {"question_id": 2, "question": "가상시 교통과 문의 번호는 무엇인가", "is_impossible": False,
             "answers": {"text": "02-123-4567", "answer_start": 60}}]}]}]}
ALPACA = [{"instruction": "가게 연락처를 알려 줘", "input": "", "output": "010-2345-6789로 연락하세요."},
          {"instruction": "인사해 줘", "input": "", "output": "안녕하세요."},
          {"instruction": "별표 가득한 답", "input": "", "output": "고객 *** *** ***** 님, 주소 ***-**** ****."}]


def _sources(tmp_path: Path) -> list[SourceConfig]:
    (tmp_path / "mrc.json").write_text(json.dumps(MRC, ensure_ascii=False), encoding="utf-8")
    (tmp_path / "alpaca.json").write_text(json.dumps(ALPACA, ensure_ascii=False), encoding="utf-8")
    return [SourceConfig(format="aihub-mrc", path=str(tmp_path / "mrc.json"), tasks=["extractive_qa_short"]),
            SourceConfig(format="alpaca", path=str(tmp_path / "alpaca.json"))]


def _build(tmp_path: Path, mode: str) -> tuple[dict, list[dict], list[dict]]:
    cfg = BuildConfig(sources=_sources(tmp_path), pii=mode, splits={"validation": 0, "test": 0}, plot=False)
    out = tmp_path / mode
    card = build(cfg, out).card
    rows = [json.loads(line) for line in (out / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text(encoding="utf-8").splitlines()]
    return card, rows, rejects


def test_mask_mode_writes_placeholders_and_counts_per_kind(tmp_path):
    card, rows, rejects = _build(tmp_path, "mask")
    text = json.dumps(rows, ensure_ascii=False)
    assert "02-123-4567" not in text and "kim@example.co.kr" not in text and "010-2345-6789" not in text
    by_q = {r["messages"][0]["content"]: r["messages"][-1]["content"] for r in rows}
    assert {"<전화번호>", "<전화번호>로 연락하세요."} <= set(by_q.values())
    # both MRC records carry the context (phone + byline e-mail), one also answers with the phone;
    # the alpaca answer holds a mobile number
    assert card["pii"] == {"mode": "mask", "found": dict.fromkeys(KINDS, 0) | {"phone": 4, "email": 2},
                           "records": dict.fromkeys(KINDS, 0) | {"phone": 3, "email": 2}}
    # the source's own '*' masks stay a separate check with its own reason
    assert [r["reason"] for r in rejects] == ["masked_pii"] and card["counts"]["written"] == 4
    md = (tmp_path / "mask" / "card.md").read_text(encoding="utf-8")
    assert "| phone | `<전화번호>` | 4 | 3 |" in md and "mode `mask`" in md


def test_drop_mode_rejects_records_with_personal_data(tmp_path):
    card, rows, rejects = _build(tmp_path, "drop")
    assert [r["messages"][-1]["content"] for r in rows] == ["안녕하세요."]
    pii_rejects = [r for r in rejects if r["reason"] == "pii"]
    assert len(pii_rejects) == 3 and {r["detail"] for r in pii_rejects} == {"email, phone", "phone"}
    assert card["reject_reasons"]["pii"] == 3 and card["pii"]["found"]["phone"] == 4
    c = card["counts"]
    assert c["read"] == c["written"] + c["rejected"] + c["duplicates"]


def test_keep_mode_leaves_text_and_still_counts(tmp_path):
    card, rows, _ = _build(tmp_path, "keep")
    assert "010-2345-6789로 연락하세요." in [r["messages"][-1]["content"] for r in rows]
    assert card["pii"]["mode"] == "keep" and card["pii"]["records"]["phone"] == 3


def test_preference_pairs_are_masked_too(tmp_path):
    pair = {"prompt": "담당자 메일 주소를 알려 줘", "chosen": "담당자는 lee@example.org 입니다.", "rejected": "모릅니다."}
    (tmp_path / "pref.jsonl").write_text(json.dumps(pair, ensure_ascii=False) + "\n", encoding="utf-8")
    cfg = BuildConfig(sources=[SourceConfig(format="preference", path=str(tmp_path / "pref.jsonl"))],
                      splits={"validation": 0, "test": 0}, plot=False)
    card = build(cfg, tmp_path / "out").card
    (row,) = [json.loads(line) for line in (tmp_path / "out" / "preference.jsonl").read_text(encoding="utf-8").splitlines()]
    assert row["chosen"][-1]["content"] == "담당자는 <이메일> 입니다." and card["pii"]["found"]["email"] == 1
