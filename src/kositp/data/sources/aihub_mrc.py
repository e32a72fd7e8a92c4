"""AIHub machine-reading-comprehension layouts (D1–D6) -> `Document`s with normalised `QA`s.

One parser accepts every variant in AIHUB_FORMATS.md: SQuAD-style `answers` lists (D1, D4), the
news/administrative `answers` object with clue/options (D2, D3), the singular `answer` of table
QA (D6), the technical-science `dataset.context_info[]` layout with two question phrasings and
`wrong_answer` (D5), and bare `{context, qas}` paragraphs. The variant is sniffed per item.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from kositp.data.io import iter_items
from kositp.data.schema import QA, Document, Passage, Reject
from kositp.data.text import (
    clean,
    clean_keep_lines,
    is_null,
    linearize_table,
    locate,
    looks_html,
    normalize_yes_no,
    parse_table,
    to_int,
)

CONTAINER_KEYS = ("data",)
_D5_TYPES = {"다지선다형": "multiple_choice", "yes/no 단문형": "yes_no", "yes/no단문형": "yes_no",
             "절차형": "how", "표 정답 추출형": "table", "정답경계추출형": "span"}


def _first(value: Any) -> dict:
    """`answers` arrives as a list of objects or as one object; empty list -> {}."""
    if isinstance(value, list):
        return value[0] if value and isinstance(value[0], dict) else {}
    return value if isinstance(value, dict) else {}


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() in ("true", "1", "yes"))


def _title(value: Any) -> str | None:
    if isinstance(value, dict):  # D5 doc_title {"kor", "eng"}
        value = value.get("kor") or value.get("ko")
    text = clean(value).replace("_", " ") if value else ""
    return text or None


def _qtype(raw: dict, answer_text: str, options: list[str], is_html: bool, ref: str) -> str:
    """The normalised question type; `answer_text` is already clean."""
    answer_type = raw.get("answer_type")
    if answer_type is not None:
        answer_type = clean(answer_type).lower()
        if answer_type in _D5_TYPES:
            return _D5_TYPES[answer_type]
    lowered = ref.lower()
    if answer_text.lower() in ("yes", "no") or "entailment" in lowered:
        return "yes_no"
    if len(options) >= 2 or "multiple_choice" in lowered:
        return "multiple_choice"
    if is_html or "tableqa" in lowered:
        return "table"
    if "_how" in lowered or "절차" in lowered:
        return "how"
    if "inference" in lowered:
        return "inference"
    return "span"


def normalize_qa(raw: Any, passage: Passage, ref: str, source: str) -> QA | Reject:
    """One raw qas[] item -> a checked QA, or a Reject with the first problem found.

    This runs once per question (millions of times on a full AIHub set), so it reads each raw key
    once and cleans only strings it keeps; per-passage work (context cleaning, HTML parsing,
    sentence splitting) happens in `_passage` or lazily, never here.
    """
    if not isinstance(raw, dict):
        return Reject(source, ref, "malformed_record", detail="qas item is not an object")
    get = raw.get
    qid = clean(get("question_id") or get("id")) or ref
    question = clean(raw["question"] if "question" in raw else get("question-1"))
    second = get("question-2")
    alts = [] if second is None or is_null(second) else [clean(second)]
    if not question and alts:
        question, alts = alts[0], []
    if not question:
        return Reject(source, ref, "missing_field:question")
    has_answer_key = "answers" in raw or "answer" in raw
    ans_raw = raw["answers"] if "answers" in raw else get("answer")
    if isinstance(ans_raw, dict):
        ans = ans_raw
    elif isinstance(ans_raw, str):  # D5: answer is a plain string with offsets beside it
        ans = {"text": ans_raw, "answer_start": get("answer_start")}
    else:
        ans = _first(ans_raw)
    text = clean(ans["text"] if "text" in ans else ans.get("answer_text"))
    start = ans.get("answer_start")
    if start.__class__ is not int or start < 0:  # str, float, None, -1, bool: the general rule
        start = to_int(start)
    clue_text = ans.get("clue_text")
    evidence = [] if clue_text is None or clue_text == "" or is_null(clue_text) else [clean(clue_text)]
    for clue in get("clue") or ():
        if isinstance(clue, dict) and not is_null(clue.get("clue_text")):
            evidence.append(clean(clue["clue_text"]))
    raw_options, raw_wrong = ans.get("options"), get("wrong_answer")
    options = [clean(o) for o in raw_options if not is_null(o)] if raw_options else []
    wrong = [clean(o) for o in raw_wrong if not is_null(o)] if raw_wrong else []
    if wrong and text:
        options = [text, *wrong]
    flag = get("is_impossible")
    impossible = (flag is True or (isinstance(flag, str) and _truthy(flag)) or (not has_answer_key)
                  or (not text and ans_raw in ([], {})))
    level = raw["question_level"] if "question_level" in raw else get("level")
    level = None if level is None else clean(level) or None
    if impossible:
        # An unanswerable item may carry a plausible span; never use it as gold.
        return QA(qid, question, None, "unanswerable", True, None, [], evidence, alts, level)
    if not text:
        return Reject(source, ref, "missing_field:answer")
    qtype = _qtype(raw, text, options, passage.context_format == "html", ref)
    if qtype == "yes_no":
        label = normalize_yes_no(text)
        if label is None:
            return Reject(source, ref, "bad_yes_no_label", detail=text[:50])
        return QA(qid, question, label, "yes_no", False, None, [], evidence, alts, level)
    if qtype == "multiple_choice":
        if len(set(options)) < 2:
            return Reject(source, ref, "missing_field:options")
        if text not in options:
            return Reject(source, ref, "answer_not_in_options")
        return QA(qid, question, text, "multiple_choice", False, None, list(dict.fromkeys(options)), evidence,
                  alts, level)
    if passage.context_format == "html":
        # Offsets into HTML are unreliable once cells are read: the answer must be a cell's text
        # or appear in the table's text.
        found = locate(passage.context, text, start)
        if found is None and text not in linearize_table(passage.context):
            return Reject(source, ref, "answer_not_in_context")
        return QA(qid, question, text, "table", False, found, [], evidence, alts, level)
    found = locate(passage.context, text, start)
    if found is None:
        return Reject(source, ref, "answer_not_in_context")
    return QA(qid, question, text, qtype, False, found, [], evidence, alts, level)  # type: ignore[arg-type]


def _passage(raw: dict, ref: str, source: str, rejects: list[Reject]) -> Passage | None:
    context_raw = raw.get("context")
    if not isinstance(context_raw, str) or not context_raw or context_raw.isspace():
        rejects.append(Reject(source, ref, "missing_field:context"))
        return None
    is_html = looks_html(context_raw) or bool(to_int(raw.get("table_type")))
    if is_html:
        _, _, balanced = parse_table(context_raw)
        if not balanced:
            rejects.append(Reject(source, ref, "malformed_html"))
            return None
    context = context_raw.strip() if is_html else clean_keep_lines(context_raw)
    table_title = raw.get("table_title")
    passage = Passage(context, "html" if is_html else "text",
                      table_title=None if table_title is None else clean(table_title) or None)
    for j, qa_raw in enumerate(raw.get("qas") or []):
        qa = normalize_qa(qa_raw, passage, f"{ref}.qas.{j}", source)
        if isinstance(qa, Reject):
            rejects.append(qa)
        else:
            passage.qas.append(qa)
    return passage


def parse_mrc_item(item: Any, ref: str, source: str, kind: str = "mrc") -> Iterator[Document | Reject]:
    """One top-level item (a `data[]` document, a D5 file, or a bare paragraph) -> Document + rejects."""
    if not isinstance(item, dict):
        yield Reject(source, ref, "malformed_record", detail=f"expected an object, got {type(item).__name__}")
        return
    rejects: list[Reject] = []
    if isinstance(item.get("dataset"), dict):  # D5: one document per file
        meta = item["dataset"]
        doc_id = clean(meta.get("doc_id"))
        title = _title(meta.get("doc_title"))
        raw_passages = meta.get("context_info") or []
    elif "paragraphs" in item:
        doc_id = clean(item.get("doc_id") or item.get("content_id"))
        title = _title(item.get("doc_title") or item.get("title"))
        raw_passages = item.get("paragraphs") or []
    elif "context" in item and "qas" in item:
        doc_id = clean(item.get("doc_id") or item.get("context_id"))
        title = _title(item.get("doc_title") or item.get("title"))
        raw_passages = [item]
    else:
        yield Reject(source, ref, "unknown_layout", detail="no paragraphs, dataset.context_info or context/qas")
        return
    if not isinstance(raw_passages, list) or not raw_passages:
        yield Reject(source, ref, "missing_field:paragraphs")
        return
    doc = Document(source=source, doc_id=doc_id or (title or ref), ref=ref, title=title, kind=kind)
    for i, raw in enumerate(raw_passages):
        pref = f"{ref}.p{i}"
        if not isinstance(raw, dict):
            rejects.append(Reject(source, pref, "malformed_record"))
            continue
        passage = _passage(raw, pref, source, rejects)
        if passage is not None:
            doc.passages.append(passage)  # doc.sentences: split from text passages on first use
    yield from rejects
    if doc.passages:
        yield doc


def read_mrc(path: str, source: str, kind: str = "mrc", **_: Any) -> Iterator[Document | Reject]:
    for entry in iter_items(path, CONTAINER_KEYS):
        if isinstance(entry, Reject):
            entry.source = source
            yield entry
            continue
        ref, item = entry
        yield from parse_mrc_item(item, ref, source, kind)


def read_table(path: str, source: str, **kw: Any) -> Iterator[Document | Reject]:
    """표 정보 질의응답 (D6): the MRC skeleton with HTML contexts, `table_title` and singular `answer`."""
    yield from read_mrc(path, source, kind="table")
