"""AIHub 한국어 대화 요약 through the `aihub-summary` adapter: the real layout's keys, turns rendered as lines."""

from __future__ import annotations

import json
from pathlib import Path

from kositp.data.build import BuildConfig, SourceConfig, build
from kositp.data.schema import Document, Reject
from kositp.data.sources.aihub_summary import read_summary


def _utterance(n: int, turn: int, speaker: str, text: str) -> dict:
    return {"utterance": text, "utteranceID": f"U{n}", "participantID": speaker, "date": "2020-12-13",
            "turnID": f"T{turn}", "time": f"13:{30 + n:02d}:00"}


def _dialogue(dialogue_id: str, utterances: list[dict], summary: str | None) -> dict:
    body: dict = {"dialogue": utterances}
    if summary is not None:
        body["summary"] = summary
    speakers = sorted({u["participantID"] for u in utterances if "participantID" in u})
    return {"header": {"dialogueInfo": {"numberOfParticipants": len(speakers), "numberOfUtterances": len(utterances),
                                        "numberOfTurns": len({u.get("turnID") for u in utterances}),
                                        "type": "일상 대화", "topic": "식음료", "dialogueID": dialogue_id},
                       "participantsInfo": [{"age": "20대", "residentialProgince": "서울특별시", "gender": "여성",
                                             "participantID": s} for s in speakers]},
            "body": body}


LUNCH = [_utterance(1, 1, "P01", "오늘 점심 뭐 먹을까?"), _utterance(2, 1, "P01", "나는 국수가 당기는데"),
         _utterance(3, 2, "P02", "좋아 역 앞에 새로 생긴 칼국숫집 가 보자"),
         _utterance(4, 3, "P01", "거기 줄 길다던데 괜찮아?"), _utterance(5, 4, "P02", "열한 시 반에 가면 괜찮을 거야"),
         _utterance(6, 4, "P02", "내가 먼저 가서 줄 서 있을게"), _utterance(7, 5, "P01", "고마워 이따 봐")]
LUNCH_SUMMARY = "두 사람은 점심으로 역 앞 칼국숫집에 가기로 하고, P02가 먼저 가서 줄을 서기로 했다."


def _file(path: Path, items: list[dict]) -> Path:
    path.write_text(json.dumps({"numberOfItems": len(items), "data": items}, ensure_ascii=False), encoding="utf-8")
    return path


def test_dialogue_layout_renders_one_line_per_turn(tmp_path):
    path = _file(tmp_path / "개인및관계.json", [_dialogue("d-lunch", LUNCH, LUNCH_SUMMARY)])
    (doc,) = list(read_summary(str(path), "aihub-dialogue"))
    assert isinstance(doc, Document) and doc.doc_id == "d-lunch" and doc.kind == "dialogue"
    assert doc.sentences == ["P01: 오늘 점심 뭐 먹을까? 나는 국수가 당기는데",
                             "P02: 좋아 역 앞에 새로 생긴 칼국숫집 가 보자",
                             "P01: 거기 줄 길다던데 괜찮아?",
                             "P02: 열한 시 반에 가면 괜찮을 거야 내가 먼저 가서 줄 서 있을게",
                             "P01: 고마워 이따 봐"]
    assert doc.summaries == [LUNCH_SUMMARY]


def test_dialogue_builds_summarization_only_and_counts_what_it_cannot_use(tmp_path):
    no_speaker = [dict(u) for u in LUNCH]
    del no_speaker[2]["participantID"]
    items = [_dialogue("d-lunch", LUNCH, LUNCH_SUMMARY), _dialogue("d-empty-summary", LUNCH, ""),
             _dialogue("d-no-speaker", no_speaker, LUNCH_SUMMARY), {"header": {}, "body": {"utterances": []}}]
    path = _file(tmp_path / "dialogue.json", items)
    result = build(BuildConfig(sources=[SourceConfig(format="aihub-summary", name="dialogue", path=str(path))],
                               splits={"validation": 0, "test": 0}, plot=False), tmp_path / "out")
    records = [json.loads(line) for line in (tmp_path / "out" / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["task"] for r in records] == ["summarization"]  # a dialogue is not a text to simplify or complete
    user, answer = (m["content"] for m in records[0]["messages"])
    assert "P01: 오늘 점심 뭐 먹을까? 나는 국수가 당기는데\nP02: 좋아 역 앞에 새로 생긴 칼국숫집 가 보자\n" in user
    assert answer == LUNCH_SUMMARY
    reasons = result.card["reject_reasons"]
    assert reasons == {"empty_summary": 1, "missing_field:participantID": 1, "unknown_layout": 1}
    rejects = [json.loads(line) for line in (tmp_path / "out" / "rejects.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {r["reason"]: r["ref"].rsplit("#", 1)[-1] for r in rejects}["missing_field:participantID"] == "data.2"
    c = result.card["counts"]
    assert c["read"] == c["written"] + c["rejected"] + c["duplicates"]


def test_a_file_of_other_keys_is_still_an_unknown_layout(tmp_path):
    path = _file(tmp_path / "x.json", [{"header": {"dialogueInfo": {}}, "talk": []}])
    (item,) = list(read_summary(str(path), "s"))
    assert isinstance(item, Reject) and item.reason == "unknown_layout"
