"""DATA stage: hand-written edge-case files in tests/fixtures/data, one behaviour each."""

from __future__ import annotations

from pathlib import Path

from kositp.data.build import BuildConfig, SourceConfig, build
from kositp.data.schema import Document, Reject
from kositp.data.sources.aihub_mrc import read_mrc, read_table
from kositp.data.sources.aihub_summary import read_summary

FIXTURES = Path(__file__).parent / "fixtures" / "data"


def _read(reader, name: str) -> tuple[list[Document], list[Reject]]:
    items = list(reader(str(FIXTURES / name), "fx"))
    return [i for i in items if isinstance(i, Document)], [i for i in items if isinstance(i, Reject)]


def test_unanswerable_item_carrying_an_answer_is_never_gold():
    (doc,), rejects = _read(read_mrc, "unanswerable_with_answer.json")
    impossible, answerable = doc.passages[0].qas
    assert not rejects
    assert impossible.is_impossible and impossible.answer is None and impossible.qtype == "unanswerable"
    assert answerable.answer == "사서 두 명" and answerable.answer_start == doc.passages[0].context.index("사서 두 명")


def test_utf8_bom_file_reads_like_plain_utf8():
    (doc,), rejects = _read(read_mrc, "bom_mrc.json")
    assert not rejects and doc.doc_id == "FX-BOM" and doc.title == "세린시 빗물 저금통 보급"
    assert doc.passages[0].qas[0].answer == "80%"


def test_truncated_json_is_one_malformed_json_reject_with_the_path():
    docs, rejects = _read(read_mrc, "truncated.json")
    assert not docs  # small files are parsed whole: nothing half-read is passed on
    assert [r.reason for r in rejects] == ["malformed_json"] and rejects[0].ref.endswith("truncated.json")


def test_html_table_context_answers_come_from_cells_and_broken_tables_are_rejected():
    (doc,), rejects = _read(read_table, "html_context.json")
    (passage,) = doc.passages
    assert passage.context_format == "html" and passage.table_title == "누리군 읍면별 경로당 수"
    assert [qa.answer for qa in passage.qas] == ["17"]
    assert sorted(r.reason for r in rejects) == ["answer_not_in_context", "malformed_html"]


def test_null_extractive_index_is_skipped_not_fatal():
    (doc,), rejects = _read(read_summary, "null_extractive.json")
    assert not rejects and len(doc.sentences) == 3
    assert doc.extractive_summary == [doc.sentences[0], doc.sentences[1]]
    assert doc.summaries == []  # empty abstractive: no summary invented


def test_cp949_member_names_in_a_zip_are_decoded(tmp_path):
    (doc,), rejects = _read(read_mrc, "cp949_names.zip")
    assert not rejects and "라벨링데이터/TL_놀이터_정비.json" in doc.ref
    result = build(BuildConfig(sources=[SourceConfig(format="aihub-mrc", path=str(FIXTURES / "cp949_names.zip"))],
                               tasks=["extractive_qa_short"], splits={"validation": 0, "test": 0}), tmp_path / "out")
    assert result.card["per_task"]["extractive_qa_short"]["train"] == 1
