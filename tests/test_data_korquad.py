"""KorQuAD 1.0 as a source: the real layout, honest unanswerable questions, multiple choice, split by article.

The small files are invented Korean articles in KorQuAD's exact layout, written by the tests; one test
also reads the real KorQuAD 1.0 dev file from ../shared when it is there (it is never copied into kositp).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from kositp.config import load_config
from kositp.data.build import BuildConfig, SourceConfig, build
from kositp.data.io import resolve_path
from kositp.data.schema import Document, Reject
from kositp.data.sources.korquad import DISTRACTORS, read_korquad, subject
from kositp.data.task_names import ANSWERABLE, UNANSWERABLE
from kositp.data.text import dedup_key
from kositp.errors import KositpError

REPO = Path(__file__).resolve().parents[1]
SHARED_KORQUAD = Path(__file__).resolve().parents[2] / "shared" / "data" / "corpora" / "korquad" / "KorQuAD_v1.0_dev.json"
SPLITS = ("train", "validation", "test")

NAMES = ["한가람", "서도윤", "민하율", "탁지훈", "표은결", "길소민", "반시온", "국하준", "석도현", "옥예준", "남궁별", "추서진"]
CITIES = ["청주", "목포", "안동", "속초", "김해", "군산", "충주", "여수", "원주", "경주", "포항", "순천"]
SCHOOLS = ["한빛음악원", "누리예술학교", "솔내음악학교", "가온대학교", "미르예술원", "다솜음대", "라온학당", "새벽음악원",
           "아라대학교", "여울예술학교", "바름음악원", "도담대학교"]
WORKS = ["푸른 파도", "겨울 숲", "새벽 종", "달빛 강", "붉은 들", "하늘 길", "바람 노래", "고요한 섬", "먼 산", "은빛 비",
         "첫눈", "봄 언덕"]


def _article(i: int, extra: tuple[str, str] = ("", "")) -> tuple[dict, dict[str, str]]:
    """An invented KorQuAD article (title, two paragraphs, seven questions) and its {question: answer}."""
    name, city, school, work = NAMES[i], CITIES[i], SCHOOLS[i], WORKS[i]
    year = 1900 + 7 * i
    orchestra, award, hall, student = f"{city}시향", f"{school} 작곡상", f"{work}홀", f"{name}의 제자 {i}호"
    p1 = (f"{name}은 {year}년 {city}에서 태어난 음악가이다. {name}은 어린 시절부터 피아노를 배웠다. "
          f"{name}은 {school}에서 작곡을 공부한 뒤 {orchestra}에 입단하였다. "
          f"{name}은 {year + 25}년 {award}을 받으며 이름을 알렸다.{extra[0]}")
    p2 = (f"{name}의 대표작은 교향곡 {work}이다. 교향곡 {work}은 {year + 30}년 {hall}에서 처음 연주되었다. "
          f"평론가들은 {name}의 교향곡이 {city}의 바다를 그렸다고 평가하였다. "
          f"말년의 {name}은 {student}를 비롯한 여러 제자를 길러 냈다.{extra[1]}")
    questions = [(p1, f"{name}이 태어난 도시는?", city), (p1, f"{name}이 작곡을 공부한 학교는?", school),
                 (p1, f"{name}이 입단한 악단은?", orchestra), (p1, f"{name}이 {award}을 받은 해는?", f"{year + 25}년"),
                 (p2, f"{name}의 대표작인 교향곡의 이름은?", work), (p2, f"교향곡 {work}이 처음 연주된 곳은?", hall),
                 (p2, f"{name}이 길러 낸 제자 가운데 한 사람은?", student)]
    paragraphs = []
    for context in (p1, p2):
        qas = [{"answers": [{"text": answer, "answer_start": context.index(answer)}], "id": f"{i}-{len(paragraphs)}-{k}",
                "question": question} for k, (ctx, question, answer) in enumerate(questions) if ctx is context]
        paragraphs.append({"qas": qas, "context": context})
    title = f"{name}_(음악가)" if i % 2 == 0 else name
    return {"title": title, "paragraphs": paragraphs}, {q: a for _, q, a in questions}


def _korquad_file(path: Path, articles: list[dict]) -> Path:
    path.write_text(json.dumps({"version": "KorQuAD_v1.0_dev", "data": articles}, ensure_ascii=False), encoding="utf-8")
    return path


def _read(path: Path) -> tuple[list[Document], list[Reject]]:
    items = list(read_korquad(str(path), "korquad"))
    return [d for d in items if isinstance(d, Document)], [r for r in items if isinstance(r, Reject)]


def _check_documents(docs: list[Document], raw: dict) -> Counter:
    """The invariants every KorQuAD read keeps, on any file; returns question counts by kind."""
    answers = {qa["id"]: qa["answers"][0]["text"] for a in raw["data"] for p in a["paragraphs"] for qa in p["qas"]}
    article_of = {qa["id"]: a["title"] for a in raw["data"] for p in a["paragraphs"] for qa in p["qas"]}
    kinds: Counter = Counter()
    for doc in docs:
        assert doc.title and "(" not in doc.title and "_" not in doc.title
        if doc.sentences:  # the text to title names its subject
            assert doc.title in doc.text
        article_answers = {dedup_key(qa.answer) for p in doc.passages for qa in p.qas if qa.qtype == "span"}
        for passage in doc.passages:
            for qa in passage.qas:
                kinds[qa.qtype] += 1
                if qa.qtype == "span":
                    assert passage.context[qa.answer_start: qa.answer_start + len(qa.answer)] == qa.answer
                    assert qa.answer in qa.evidence[0] and qa.evidence[0] in passage.context
                elif qa.qtype == "multiple_choice":
                    gold = dedup_key(qa.answer)
                    assert len(qa.options) == DISTRACTORS + 1 and len({dedup_key(o) for o in qa.options}) == len(qa.options)
                    assert qa.options[0] == qa.answer
                    for wrong in qa.options[1:]:
                        assert dedup_key(wrong) in article_answers  # drawn from this article's answers
                        assert gold not in dedup_key(wrong) and dedup_key(wrong) not in gold
                else:  # a question of another article asked of this paragraph
                    assert qa.qtype == "unanswerable" and qa.answer is None
                    original = qa.qid.split("@")[0]
                    assert subject(article_of[original].replace("_", " ")) != doc.title
                    assert dedup_key(answers[original]) not in dedup_key(passage.context)
    return kinds


def test_korquad_layout_reads_into_articles_with_choices_and_unanswerables(tmp_path):
    articles, _ = zip(*(_article(i) for i in range(6)), strict=True)
    raw = {"version": "KorQuAD_v1.0_dev", "data": list(articles)}
    docs, rejects = _read(_korquad_file(tmp_path / "KorQuAD_v1.0_dev.json", raw["data"]))
    kinds = _check_documents(docs, raw)
    assert not rejects
    # a pool of whole articles lends its questions; the rest are documents, one per article
    assert 0 < len(docs) < 6 and kinds["unanswerable"] == 7 * (6 - len(docs))
    assert kinds["span"] == 7 * len(docs) and kinds["multiple_choice"] == kinds["span"]
    assert {d.title for d in docs} <= {subject(a["title"].replace("_", " ")) for a in articles}
    by_title = {d.title: d for d in docs}
    if NAMES[0] in by_title:  # "한가람_(음악가)": the disambiguation is not part of the title to generate
        assert by_title[NAMES[0]].title == NAMES[0]
    # a twin with options for the objective tasks, and the span question's evidence sentence
    doc = docs[0]
    span = next(qa for qa in doc.passages[0].qas if qa.qtype == "span" and qa.answer.endswith("년"))
    twin = next(qa for qa in doc.passages[0].qas if qa.qid == f"{span.qid}:mc")
    assert twin.question == span.question and twin.answer == span.answer
    assert span.evidence == [f"{doc.title}은 {span.answer} {SCHOOLS[NAMES.index(doc.title)]} 작곡상을 받으며 이름을 알렸다."]
    assert any(ch.isdigit() for ch in twin.options[1])  # a year's first distractor is a year when there is one


def test_unanswerable_pairs_never_use_a_paragraph_that_holds_the_answer(tmp_path):
    """Each article's first paragraph names the other's city and school, and both name an instrument:
    whichever article lends its questions, those answers are never asked of a paragraph that holds them."""
    a, qa_a = _article(0, extra=(f" 그 무대에는 {CITIES[1]} 출신 연주자와 {SCHOOLS[1]} 교수가 함께 섰다. 반주는 첼로가 맡았다.",
                                 " 마지막 곡도 첼로가 이끌었다."))
    b, qa_b = _article(1, extra=(f" 그 무대에는 {CITIES[0]} 출신 연주자와 {SCHOOLS[0]} 교수가 함께 섰다. 반주는 첼로가 맡았다.",
                                 " 마지막 곡도 첼로가 이끌었다."))
    for article, name in ((a, NAMES[0]), (b, NAMES[1])):  # a question whose answer is in every paragraph of both
        first = article["paragraphs"][0]
        first["qas"].append({"answers": [{"text": "첼로", "answer_start": first["context"].index("첼로")}],
                             "id": f"{name}-cello", "question": f"{name}의 독주회에서 반주를 맡은 악기는?"})
    raw = {"data": [a, b]}
    docs, rejects = _read(_korquad_file(tmp_path / "pair.json", raw["data"]))
    _check_documents(docs, raw)
    (doc,) = docs  # one article lends, the other answers
    lender_answers = qa_b if doc.title == NAMES[0] else qa_a
    asked = {qa.question: p.context for p in doc.passages for qa in p.qas if qa.is_impossible}
    first, second = (p.context for p in doc.passages)
    # the city and school of the lender are in the partner's first paragraph: asked of the second only
    for question, answer in lender_answers.items():
        if answer in first:
            assert asked[question] == second
    assert [r.reason for r in rejects] == ["no_unanswerable_partner"]  # the instrument is in both paragraphs
    assert rejects[0].ref.endswith("-cello") and rejects[0].task == "answerability_classification"
    assert len(asked) == len(lender_answers)


def _contents(record: dict) -> str:
    return "\n".join(m["content"] for m in record["messages"])


def test_build_splits_by_article_and_no_text_crosses_splits(tmp_path):
    articles, answers = zip(*(_article(i) for i in range(12)), strict=True)
    path = _korquad_file(tmp_path / "korquad.json", list(articles))
    cfg = BuildConfig(sources=[SourceConfig(format="korquad", path=str(path))], splits={"validation": 0.2, "test": 0.2},
                      plot=False)
    out = tmp_path / "out"
    card = build(cfg, out).card
    rows = {s: [json.loads(line) for line in (out / f"{s}.jsonl").read_text(encoding="utf-8").splitlines()]
            for s in SPLITS}
    assert all(rows.values())
    docs = {s: {r["doc_id"] for r in rows[s]} for s in SPLITS}
    assert not docs["train"] & docs["test"] and not docs["train"] & docs["validation"] and not docs["validation"] & docs["test"]
    # every sentence and every question of an article (a lent one included) shows up in one split at most
    pieces = [q for qa in answers for q in qa] + [s.strip() + "." for a in articles for p in a["paragraphs"]
                                                  for s in p["context"].split(".") if s.strip()]
    texts = {s: "\n".join(_contents(r) for r in rows[s]) for s in SPLITS}
    for piece in pieces:
        assert sum(piece in texts[s] for s in SPLITS) <= 1, piece
    gold = {q: a for qa in answers for q, a in qa.items()}
    labels = Counter()
    for record in (r for s in SPLITS for r in rows[s]):
        task, (user, answer) = record["task"], (m["content"] for m in record["messages"])
        if task == "answerability_classification":
            labels[answer] += 1
            question = next(q for q in gold if q in user)
            assert (gold[question] in user.replace(question, "")) == (answer == ANSWERABLE)
        if task in ("text_completion", "text_composition"):  # within one paragraph, never across two
            shown = [p["context"] for a in articles for p in a["paragraphs"]
                     if any(s.strip() + "." in user + answer for s in p["context"].split(".") if s.strip())]
            assert len(shown) == 1, user
    assert labels[UNANSWERABLE] > 0 and labels[ANSWERABLE] > 0
    holding = card["documents"]["with_unanswerable_per_split"]
    assert sum(holding.values()) > 0 and holding["train"] >= holding["test"] >= 1
    assert "Documents holding unanswerable questions per split" in (out / "card.md").read_text(encoding="utf-8")
    # each paragraph of an article gives its own completion and composition (both have four sentences or more)
    articles_read = card["documents"]["read"]["korquad"]
    for task in ("text_completion", "text_composition"):
        assert sum(card["per_task"][task].values()) == 2 * articles_read
    by_source = card["per_task_source"]
    assert set(by_source) >= {"answerability_classification", "extractive_qa_short", "extractive_qa_objective",
                              "extractive_qa_objective_explanation", "abstractive_qa_objective", "title_generation",
                              "text_completion", "text_composition"}
    assert all(set(sources) == {"korquad"} for sources in by_source.values())
    assert "| extractive_qa_short | korquad |" in (out / "card.md").read_text(encoding="utf-8")


def test_the_real_korquad_dev_file():
    if not SHARED_KORQUAD.is_file():
        pytest.skip(f"KorQuAD 1.0 dev not found at {SHARED_KORQUAD} (the shared corpora folder is absent)")
    raw = json.loads(SHARED_KORQUAD.read_text(encoding="utf-8"))
    docs, rejects = _read(SHARED_KORQUAD)
    kinds = _check_documents(docs, raw)
    total = sum(len(p["qas"]) for a in raw["data"] for p in a["paragraphs"])
    assert (len(raw["data"]), total) == (140, 5774)
    # every question is a span question of its article, asked of another article, or a counted reject
    assert kinds["span"] + kinds["unanswerable"] + len(rejects) == total
    assert {r.reason for r in rejects} <= {"no_unanswerable_partner", "answer_not_in_context"}
    # the unanswerable questions about balance the paragraphs left to give an answerable one
    answerable_paragraphs = sum(1 for d in docs for p in d.passages if not any(qa.is_impossible for qa in p.qas))
    assert 0.8 < kinds["unanswerable"] / answerable_paragraphs < 1.25
    assert kinds["multiple_choice"] > 0.8 * kinds["span"]


def test_corpora_paths_follow_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("KOSITP_CORPORA", str(tmp_path))
    assert resolve_path("corpora:korquad/x.json") == tmp_path / "korquad" / "x.json"
    monkeypatch.setenv("KOSITP_CORPORA", str(tmp_path / "missing"))
    with pytest.raises(KositpError, match="KOSITP_CORPORA"):
        resolve_path("corpora:korquad/x.json")
    cfg = load_config(BuildConfig, "data/public")
    cfg.tokenizer = None
    with pytest.raises(KositpError, match="corpus folder not found"):
        build(cfg, tmp_path / "out")


def test_public_recipe_checks_and_formats_name_the_reader():
    cli = [sys.executable, "-m", "kositp.cli"]
    res = subprocess.run([*cli, "config", "check", "data/public"], capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0, res.stderr
    res = subprocess.run([*cli, "data", "formats"], capture_output=True, text=True)
    line = next(line for line in res.stdout.splitlines() if line.startswith("korquad "))
    assert "aihub-mrc parser" in line
    cfg = load_config(BuildConfig, "data/public")
    (korquad,) = [s for s in cfg.sources if s.format == "korquad"]
    assert korquad.path.startswith("corpora:") and cfg.tokenizer == "default"
    demo = load_config(BuildConfig, "data/demo")
    assert {(s.format, s.path) for s in demo.sources} <= {(s.format, s.path) for s in cfg.sources}
