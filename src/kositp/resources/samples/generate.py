"""Render `topics.TOPICS` into every raw AIHub/KISTI layout (run: python -m kositp.resources.samples.generate).

The output files are committed; this script documents how they were made and regenerates them.
`mrc_document()` is also used by `kositp bench data` to synthesise large MRC files.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from kositp.resources.samples.topics import TOPICS

HERE = Path(__file__).parent


def _dump(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def context_of(t: dict) -> str:
    return " ".join(t["sents"])


def _table_html(t: dict) -> str:
    _, header, rows, _ = t["table"]
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tbody><tr>{head}</tr>{body}</tbody></table>"


def _ans(ctx: str, text: str, clue: str = "", options=None) -> dict:
    return {"text": text, "answer_start": ctx.find(text) if text in ctx else -1, "clue_text": clue,
            "clue_start": ctx.find(clue) if clue else None, "options": options or []}


def mrc_document(t: dict, kind: str, doc_id: str | None = None) -> dict:
    """One D3 (행정 문서) `data[]` document holding the questions of one TL_<kind> file."""
    ctx = context_of(t)
    did = doc_id or f"ADM_{t['id']}"
    if kind == "span_extraction":
        q, a = t["span"]
        qas = [{"question_id": f"{did}-01", "question": q, "qa_type": 1, "is_impossible": False, "answers": _ans(ctx, a)}]
    elif kind == "span_extraction_how":
        q, a = t["long"]
        qas = [{"question_id": f"{did}-02", "question": q, "qa_type": 2, "is_impossible": False, "answers": _ans(ctx, a)}]
    elif kind == "multiple_choice":
        q, a, wrong, clue_i = t["mc"]
        qas = [{"question_id": f"{did}-03", "question": q, "qa_type": 3, "is_impossible": False,
                "answers": _ans(ctx, a, t["sents"][clue_i], [a, *wrong])}]
    elif kind == "text_entailment":
        q, label, clue_i = t["yn"]
        qas = [{"question_id": f"{did}-04", "question": q, "qa_type": 3, "is_impossible": False,
                "answers": {"text": label, "answer_start": None, "clue_text": t["sents"][clue_i],
                            "clue_start": ctx.find(t["sents"][clue_i]), "options": []}}]
    elif kind == "unanswerable":
        # an unanswerable item that still carries a plausible span
        qas = [{"question_id": f"{did}-05", "question": t["unans"], "qa_type": 4, "is_impossible": True,
                "answers": _ans(ctx, t["span"][1])}]
    elif kind == "tableqa":
        title, _, _, (q, a) = t["table"]
        html = _table_html(t)
        return {"doc_id": did, "doc_title": t["title"], "doc_source": "가상군청", "doc_published": "20240102",
                "created": "2024-03-05", "doc_class": {"code": "D01", "name": "보도자료"},
                "paragraphs": [{"context_id": f"{did}-T", "context": html,
                                "qas": [{"question_id": f"{did}-06", "question": q, "qa_type": 1,
                                         "is_impossible": False, "answers": _ans(html, a)}]}]}
    else:
        raise ValueError(kind)
    return {"doc_id": did, "doc_title": t["title"], "doc_source": "가상군청", "doc_published": "20240102",
            "created": "2024-03-05", "doc_class": {"code": "D01", "name": "보도자료"},
            "paragraphs": [{"context_id": f"{did}-01", "context": ctx, "qas": qas}]}


class _CP949Name(zipfile.ZipInfo):
    """A zip member whose name is stored in CP949 without the UTF-8 flag, as AIHub zips do."""

    def _encodeFilenameFlags(self):
        return self.filename.encode("cp949"), self.flag_bits & ~0x800


def write_cp949_zip(path: Path, members: dict[str, bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            info = _CP949Name(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)


def generate(root: Path = HERE) -> None:
    admin = root / "aihub_mrc" / "admin"
    for kind in ("span_extraction", "span_extraction_how", "multiple_choice", "text_entailment", "unanswerable",
                 "tableqa"):
        _dump(admin / f"TL_{kind}.json", {"data": [mrc_document(t, kind) for t in TOPICS]})
    # D2 news layout inside a zip with a CP949 member name; answers as a one-element list (⚠️ variant)
    news = {"Dataset": {"Identifier": "TEXT_QnA_News_01", "name": "뉴스기사 대상 기계독해 데이터", "category": 2, "type": 0},
            "data": [{"doc_id": f"91000{t['id']}", "doc_title": t["title"], "doc_source": "가상일보",
                      "doc_published": "2021.05.03. 오전 9:10", "doc_class": {"class": "뉴스", "code": "사회"},
                      "paragraphs": [{"context": context_of(t), "qas": [
                          {"question_id": int(f"70000{t['id']}"), "question": t["span"][0], "qa_type": 1,
                           "is_impossible": False, "answers": [_ans(context_of(t), t["span"][1])]}]}]}
                     for t in TOPICS]}
    write_cp949_zip(root / "aihub_mrc" / "news" / "TL_뉴스_span_extraction.zip",
                    {"라벨링데이터/TL_뉴스기사_span_extraction.json": json.dumps(news, ensure_ascii=False).encode("utf-8")})
    for t in TOPICS:  # D5: one JSON per document, two phrasings per question
        q, a, wrong, clue_i = t["mc"]
        ctx = context_of(t)
        _dump(root / "aihub_mrc" / "tech" / f"TS00000{t['id']}.json", {
            "dataset_info": {"identifier": "TECH_MRC", "name": "기술과학 문서 기계독해 데이터"},
            "dataset": {"doc_id": f"TS00000{t['id']}", "doc_title": {"kor": t["title"], "eng": ""},
                        "context_info": [{"context_id": f"TS00000{t['id']}-01", "context": ctx,
                                          "context_length": len(ctx), "table_type": 0,
                                          "qas": [{"question_id": f"TS00000{t['id']}-01-01", "question-1": t["para"][0],
                                                   "question-2": t["para"][1], "question_level": "하",
                                                   "answer_type": "다지선다형", "answer": a, "wrong_answer": wrong,
                                                   "answer_start": str(ctx.find(a)),
                                                   "clue": [{"clue_text": t["sents"][clue_i]}]}]}]}})
    _dump(root / "aihub_table" / "TL_table_qa.json", {"data": [
        {"doc_id": f"TBL_{t['id']}", "doc_title": t["title"], "doc_source": "가상도청", "doc_published": 2023,
         "created": "2023-09-14", "doc_class": {"class": "보고서", "code": "R01"},
         "paragraphs": [{"context_id": f"TBL_{t['id']}-01", "table_title": t["table"][0],
                         "context": f"{t['sents'][0]}<br>{_table_html(t)}",
                         "qas": [{"question_id": f"TBL_{t['id']}-01-01", "question": t["table"][3][0], "is_impossible": False,
                                  "answer": {"text": t["table"][3][1], "answer_start": -1}},
                                 {"question_id": f"TBL_{t['id']}-01-02", "question": t["unans"], "is_impossible": True,
                                  "answer": {"text": "", "answer_start": -1}}]}]} for t in TOPICS]})
    docs = []
    for t in TOPICS:  # D7: nested sentence lists, an empty paragraph, extractive indices with a null
        s = t["sents"]
        text = [[{"index": 0, "sentence": s[0], "highlight_indices": ""}],
                [{"index": 1, "sentence": s[1], "highlight_indices": ""}, {"index": 2, "sentence": s[2], "highlight_indices": ""}],
                [], [{"index": 3, "sentence": s[3], "highlight_indices": ""}, {"index": 4, "sentence": s[4], "highlight_indices": ""}]]
        docs.append({"id": f"3900000{t['id']}", "category": "사회", "media_type": "online", "media_name": "가상일보",
                     "size": "small", "char_count": str(len(context_of(t))), "publish_date": "2020-03-02 00:00:00",
                     "title": t["title"], "text": text, "extractive": [0, 2, None],
                     "abstractive": [t["summary"]]})
    _dump(root / "aihub_summary" / "news_train_original.json",
          {"name": "문서요약 텍스트 (신문기사)", "delivery_date": "2020-12-23", "documents": docs})
    for t in TOPICS:  # D8: one file per passage, misspelled Meta(Acqusition), "null" strings
        _dump(root / "aihub_summary" / "report" / "2~3sent" / f"REPORT-news_r-000{t['id']}-00001.json", {
            "Meta(Acqusition)": {"doc_id": f"REPORT-news_r-000{t['id']}-00001", "doc_type": "news_r",
                                 "doc_name": t["title"], "doc_origin": "가상일보", "doc_source_type": "신문기사"},
            "Meta(Refine)": {"passage_id": f"REPORT-news_r-000{t['id']}-00001", "passage": "\n".join(t["sents"]),
                             "passage_Cnt": len(context_of(t))},
            "Annotation": {"summary1": t["summary"], "summary2": " ".join(t["sents"][:2]), "summary3": "null"}})
    for t in TOPICS:  # D9: nested metadata
        _dump(root / "aihub_summary" / "book" / f"BS_{t['id']}.json", {
            "passage_id": f"BS_{t['id']}_0001", "metadata": {"doc_id": f"BS_{t['id']}", "doc_name": "가상 생활 백서",
                                                            "author": "한예시", "publisher": "가상출판", "kdc_label": "사회과학"},
            "chapter": t["title"], "passage": context_of(t), "summary": t["summary"]})
    _dump(root / "aihub_summary" / "paper" / "논문요약_sample.json", {"data": [
        {"doc_type": "논문", "doc_id": f"DEMO-PAPER-{t['id']}", "title": t["title"], "date": "2022-06-30",
         "summary_entire": [{"orginal_text": context_of(t), "summary_text": t["summary"]}],
         # the section summary is written by hand (topics.py `simple`), never cut from the section itself
         "summary_section": [{"orginal_text": " ".join(t["sents"][3:]), "summary_text": t["simple"]}]}
        for t in TOPICS]})
    for t in TOPICS:  # D11: full text and QA trees with the same file stems
        stem = f"KISTI_{t['id']}"
        _dump(root / "kisti" / "fulltext" / "가상학회지" / "2021" / f"{stem}.json", {
            "title": {"ko": t["title"], "en": ""}, "authors": ["김예시", "박가상"],
            "keywords": {"ko": ", ".join(t["keywords"]), "en": ""}, "abstract": {"ko": t["summary"], "en": ""},
            "body_text": [{"section": "1. 서론", "text": t["sents"][:2]}, {"section": "2. 본론", "text": t["sents"][2:]}]})
        ctx = f"{t['title']}. {context_of(t)}"
        _dump(root / "kisti" / "qa" / "가상학회지" / "2021" / f"{stem}.json", {"context": ctx, "qas": [
            {"level": 0, "question": t["span"][0], "answer": {"answer_text": t["span"][1], "answer_start": ctx.find(t["span"][1])}},
            {"level": 2, "question": t["long"][0], "answer": {"answer_text": t["long"][1], "answer_start": ctx.find(t["long"][1])}}]})


if __name__ == "__main__":
    generate()
