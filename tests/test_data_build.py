"""DATA stage: adapters on every layout and its edge cases, the 22 builders, build accounting, splits, determinism."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kositp.config import load_config
from kositp.data import io as data_io
from kositp.data.build import BuildConfig, SourceConfig, build
from kositp.data.schema import Document, Reject
from kositp.data.seed_names import task_id
from kositp.data.sources.aihub_mrc import read_mrc
from kositp.data.sources.aihub_summary import read_summary
from kositp.data.sources.seed import export_seed
from kositp.data.task_names import NO, TASKS, UNANSWERABLE, YES
from kositp.data.tasks.templates import load_templates, placeholders
from kositp.recipes import RECIPES_DIR

REPO = Path(__file__).resolve().parents[1]
DEMO = RECIPES_DIR / "data" / "demo.yaml"
OUT_FILES = ("train.jsonl", "validation.jsonl", "test.jsonl", "preference.jsonl", "preference_validation.jsonl",
             "preference_test.jsonl", "rejects.jsonl", "card.json", "card.md", "card.png")
PREF_FILES = {"train": "preference.jsonl", "validation": "preference_validation.jsonl", "test": "preference_test.jsonl"}


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def demo_builds(tmp_path_factory) -> tuple[Path, Path]:
    cfg = load_config(BuildConfig, DEMO)
    first, second = tmp_path_factory.mktemp("demo1"), tmp_path_factory.mktemp("demo2")
    build(cfg, first)
    build(cfg, second)
    return first, second


def test_demo_builds_all_22_tasks_with_held_out_docs(demo_builds):
    out, _ = demo_builds
    card = json.loads((out / "card.json").read_text(encoding="utf-8"))
    assert set(card["per_task"]) == set(TASKS)
    for task, row in card["per_task"].items():
        assert row["train"] > 0 and row["test"] > 0, task
    c = card["counts"]
    assert c["read"] == c["written"] + c["rejected"] + c["duplicates"]
    prefs = {split: _jsonl(out / name) for split, name in PREF_FILES.items()}
    assert card["preference_splits"] == {split: len(rows) for split, rows in prefs.items()}
    assert c["preferences"] == sum(card["preference_splits"].values()) and all(prefs.values())
    # preference pairs are split by prompt document too: no prompt in two splits
    pref_docs = {split: {r["doc_id"] for r in rows} for split, rows in prefs.items()}
    assert not pref_docs["train"] & pref_docs["test"] and not pref_docs["train"] & pref_docs["validation"]
    # no document in two splits
    docs = {s: {(r["source"], r["doc_id"]) for r in _jsonl(out / f"{s}.jsonl")} for s in ("train", "validation", "test")}
    assert not docs["train"] & docs["test"] and not docs["train"] & docs["validation"] and not docs["validation"] & docs["test"]
    record = _jsonl(out / "train.jsonl")[0]
    assert set(record) == {"id", "task", "source", "doc_id", "messages"}
    assert [m["role"] for m in record["messages"]] == ["user", "assistant"]
    assert card["lengths"]["summarization"]["tokens"]["max"] <= 1024


def test_demo_build_is_byte_identical(demo_builds):
    first, second = demo_builds
    for name in OUT_FILES:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_answer_conventions_in_demo(demo_builds):
    out, _ = demo_builds
    records = [r for s in ("train", "validation", "test") for r in _jsonl(out / f"{s}.jsonl")]
    by_task: dict[str, list[str]] = {}
    for r in records:
        by_task.setdefault(r["task"], []).append(r["messages"][-1]["content"])
    assert set(by_task["extractive_qa_yes_no"]) <= {YES, NO} and {YES, NO} <= set(by_task["abstractive_qa_yes_no"])
    assert all("\n근거: " in a for a in by_task["extractive_qa_yes_no_explanation"])
    assert all(len(a) <= 50 for a in by_task["text_simplification"])
    assert UNANSWERABLE in by_task["answerability_classification"]
    prompts = [r["messages"][0]["content"] for r in records if r["task"] == "abstractive_qa_objective"]
    assert all("보기:" in p or "[보기]" in p for p in prompts)
    # closed-book prompts carry no passage: far shorter than extractive ones
    assert max(len(r["messages"][0]["content"]) for r in records if r["task"] == "abstractive_qa_short") < 200


def test_templates_have_definition_and_ten_variants():
    for task in TASKS:
        spec = load_templates(task)
        assert spec.definition and len(spec.templates) >= 10, task
        for template in spec.templates:
            used = placeholders(template) - {"options_label", "options_list"}
            if "options_list" in placeholders(template):
                used.add("options")
            assert used == set(spec.fields), (task, template)


@pytest.mark.parametrize(("name", "task"), [
    ("Extractive_QA_YesorNo", "extractive_qa_yes_no"), ("Summary_Expansion", "summary_expansion"),
    ("Abstractive QA Subjective Short answer", "abstractive_qa_short"), ("Title2Contents_Generation", "title2contents"),
    ("Extractive QA Objective Explanation", "extractive_qa_objective_explanation"), ("Table_QA_Short_Answer", "table_qa_short"),
    ("nonsense task", None)])
def test_seed_task_name_variants(name, task):
    assert task_id(name) == task


D2_UNANSWERABLE = {"data": [{"doc_id": "N1", "doc_title": "가상시 버스", "paragraphs": [{
    "context": "가상시는 3일 시내버스 12개 노선을 전기버스로 바꾼다고 밝혔다. 교체 비용은 총 84억 원이다.",
    "qas": [{"question_id": 1, "question": "전기버스 한 대의 가격은 얼마야", "is_impossible": True,
             "answers": {"text": "84억 원", "answer_start": 46}},
            {"question_id": 2, "question": "교체 비용은", "is_impossible": False,
             "answers": [{"text": "84억 원", "answer_start": 999}]},
            {"question_id": 3, "question": "", "answers": {"text": "x"}},
            {"question_id": 4, "question": "가상시는 20개 노선을 바꾸나", "answers": {"text": "Maybe"}},
            {"question_id": 5, "question": "없는 답", "answers": {"text": "300억", "answer_start": 3}}]}]}]}


def test_mrc_edge_cases(tmp_path):
    path = _write(tmp_path / "TL_span_extraction.json", "\ufeff" + json.dumps(D2_UNANSWERABLE, ensure_ascii=False))
    items = list(read_mrc(str(path), "mrc"))
    rejects = sorted(r.reason for r in items if isinstance(r, Reject))
    assert rejects == ["answer_not_in_context", "answer_not_in_context", "missing_field:question"]
    (doc,) = [d for d in items if isinstance(d, Document)]
    qa_impossible, qa_span = doc.passages[0].qas
    assert qa_impossible.is_impossible and qa_impossible.answer is None  # the plausible span is not gold
    assert qa_span.answer_start == doc.passages[0].context.index("84억 원")  # offset re-located


def test_summary_edge_cases(tmp_path):
    d7 = {"documents": [
        {"id": "1", "title": "제목", "text": [[{"index": 0, "sentence": "첫 문장이다."}], [],
                                             [{"index": 1, "sentence": "둘째 문장이다."}, {"index": 2, "sentence": "셋째."}]],
         "extractive": [0, None, 2], "abstractive": []},
        {"id": "2", "title": "빈 글", "text": [[]], "abstractive": ["요약"]}]}
    path = _write(tmp_path / "train_original.json", json.dumps(d7, ensure_ascii=False))
    items = list(read_summary(str(path), "sum"))
    assert [i.reason for i in items if isinstance(i, Reject)] == ["empty_text"]
    (doc,) = [i for i in items if isinstance(i, Document)]
    assert doc.sentences == ["첫 문장이다.", "둘째 문장이다.", "셋째."] and doc.extractive_summary == ["첫 문장이다.", "셋째."]
    d10 = {"data": [{"doc_id": "P", "title": "t", "summary_section": [{"original_text": "섹션 원문이다. 길다.",
                                                                      "summary_text": "섹션 요약."}]},
                    {"doc_id": "Q", "title": "t", "summary_entire": [{"text": "키가 틀렸다."}]}]}
    path = _write(tmp_path / "paper.json", json.dumps(d10, ensure_ascii=False))
    items = list(read_summary(str(path), "sum"))
    assert [i.reason for i in items if isinstance(i, Reject)] == ["missing_field:orginal_text"]


def test_broken_inputs_become_rejects_and_the_build_goes_on(tmp_path):
    good = json.dumps(D2_UNANSWERABLE, ensure_ascii=False)
    _write(tmp_path / "in" / "a_truncated.json", good[: len(good) // 2])
    _write(tmp_path / "in" / "b_cp949.json", good.encode("cp949")[:20] + b"\xff\xfe" + b"}")
    _write(tmp_path / "in" / "c_good.json", good)
    _write(tmp_path / "seed.jsonl", '{"input": "질문", "output": "답", "Task_name": "Summarization"}\n{broken\n'
           '{"input": "x", "Task_name": "Summarization"}\n{"input": "a", "output": "b", "Task_name": "???"}\n')
    cfg = BuildConfig(sources=[SourceConfig(format="aihub-mrc", path=str(tmp_path / "in")),
                               SourceConfig(format="kositp", path=str(tmp_path / "seed.jsonl"))])
    result = build(cfg, tmp_path / "out")
    reasons = result.card["reject_reasons"]
    assert reasons["malformed_json"] == 2 and reasons["bad_encoding"] == 1 and reasons["missing_field:output"] == 1 and reasons["unknown_task"] == 1
    assert any(r["ref"].endswith("a_truncated.json") for r in _jsonl(tmp_path / "out" / "rejects.jsonl"))
    c = result.card["counts"]
    assert c["read"] == c["written"] + c["rejected"] + c["duplicates"] and c["written"] > 0


def test_streamed_big_file_and_part_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(data_io, "STREAM_THRESHOLD", 0)  # force the ijson path
    doc = D2_UNANSWERABLE["data"][0]
    big = json.dumps({"version": "1", "data": [doc | {"doc_id": f"N{i}"} for i in range(50)]}, ensure_ascii=False)
    path = _write(tmp_path / "big.json", big[:-40])  # truncated: items before the break survive
    items = list(read_mrc(str(path), "mrc"))
    assert sum(isinstance(i, Document) for i in items) >= 45
    assert [i.reason for i in items if isinstance(i, Reject)][-1] == "malformed_json"
    # AIHub .zip.part<offset> chunks are joined in offset order
    zipped = REPO / "src/kositp/resources/samples/aihub_mrc/news/TL_뉴스_span_extraction.zip"
    data = zipped.read_bytes()
    parts = tmp_path / "parts"
    for offset in (0, 100, 1000):
        end = {0: 100, 100: 1000, 1000: len(data)}[offset]
        _write(parts / f"TL_news.zip.part{offset}", data[offset:end])
    docs = [i for i in read_mrc(str(parts), "news") if isinstance(i, Document)]
    assert len(docs) == 12 and docs[0].doc_id == "9100001"


def test_seed_round_trip(demo_builds, tmp_path):
    out, _ = demo_builds
    records = _jsonl(out / "train.jsonl")
    export_seed(records, tmp_path / "seed.jsonl")
    cfg = BuildConfig(sources=[SourceConfig(format="kositp", path=str(tmp_path / "seed.jsonl"))],
                      splits={"validation": 0, "test": 0}, dedup={"exact": False, "near": False})
    again = _jsonl(build(cfg, tmp_path / "rt").out / "train.jsonl")
    assert [(r["task"], r["messages"]) for r in again] == [(r["task"], r["messages"]) for r in records]


def test_chat_and_preference_sets(tmp_path):
    _write(tmp_path / "alpaca.json", json.dumps([{"instruction": "인사해 줘", "input": "", "output": "안녕하세요"},
                                                 {"instruction": "빈 답", "output": ""}], ensure_ascii=False))
    _write(tmp_path / "sg.jsonl", json.dumps({"conversations": [{"from": "human", "value": "서울은?"},
                                                                {"from": "gpt", "value": "수도입니다"}]},
                                             ensure_ascii=False) + "\n")
    _write(tmp_path / "pref.jsonl", json.dumps({"instruction": "질문", "chosen": "좋은 답", "rejected": "나쁜 답"},
                                               ensure_ascii=False) + "\n")
    cfg = BuildConfig(sources=[SourceConfig(format="alpaca", path=str(tmp_path / "alpaca.json")),
                               SourceConfig(format="sharegpt", path=str(tmp_path / "sg.jsonl")),
                               SourceConfig(format="preference", path=str(tmp_path / "pref.jsonl"),
                                            columns={"prompt": "instruction"})],
                      splits={"validation": 0, "test": 0})
    result = build(cfg, tmp_path / "out")
    assert result.card["reject_reasons"] == {"missing_field:output": 1}
    (pref,) = _jsonl(tmp_path / "out" / "preference.jsonl")
    assert pref["prompt"] == [{"role": "user", "content": "질문"}]
    assert pref["chosen"] == [{"role": "assistant", "content": "좋은 답"}]
    assert len(_jsonl(tmp_path / "out" / "train.jsonl")) == 2


def test_caps_and_near_duplicates(tmp_path):
    rows = [{"input": f"다음 글을 요약하세요. 가상시 버스 노선 {i}개를 전기버스로 바꾼다는 소식이 전해졌다.",
             "output": "가상시가 버스 노선을 전기버스로 바꾼다.", "Task_name": "Summarization"} for i in range(5)]
    rows += [dict(rows[0])]
    _write(tmp_path / "s.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    cfg = BuildConfig(sources=[SourceConfig(format="kositp", path=str(tmp_path / "s.jsonl"))], max_per_task=1,
                      dedup={"near_threshold": 0.5})
    card = build(cfg, tmp_path / "out").card
    assert card["counts"]["duplicates_by_kind"]["exact_duplicate"] == 1
    assert card["counts"]["written"] == 1 and card["counts"]["read"] == 6


def test_cli_errors_are_one_line(tmp_path):
    cli = [sys.executable, "-m", "kositp.cli"]
    res = subprocess.run([*cli, "data", "build", "--out", str(tmp_path), "--source", "aihub-mrc:/no/such/path"],
                         capture_output=True, text=True)
    assert res.returncode == 2 and res.stderr.strip().count("\n") == 0 and "input not found" in res.stderr
    res = subprocess.run([*cli, "data", "build", "--out", str(tmp_path), "--source", "bogus:/x"], capture_output=True,
                         text=True)
    assert res.returncode == 2 and "unknown format" in res.stderr
    res = subprocess.run([*cli, "data", "stats", str(tmp_path)], capture_output=True, text=True)
    assert res.returncode == 2 and "card.json" in res.stderr


def test_documents_with_unanswerable_questions_reach_every_split_in_proportion():
    """A few documents decide a split's answerability balance (KorQuAD's unanswerable questions sit in
    its partner articles only): the split interleaves them so every cut takes its share, and a source
    without such documents is cut exactly as by the seeded hash alone."""
    from collections import Counter

    from kositp.data.build import UNANSWERABLE_STRATUM, SplitConfig, assign_splits

    splits = SplitConfig(validation=0.1, test=0.2)
    docs = {("wiki", f"a{i}") for i in range(60)} | {("news", f"n{i}") for i in range(7)}
    strata = {("wiki", f"a{i}"): UNANSWERABLE_STRATUM for i in range(0, 60, 3)}  # 20 of the 60
    for seed in range(20):
        plain = assign_splits(docs, splits, seed)
        stratified = assign_splits(docs, splits, seed, strata)
        assert Counter(stratified.values()) == Counter(plain.values())  # the same exact shares
        held = Counter(stratified[key] for key in strata)
        assert held == {"test": 4, "validation": 2, "train": 14}, (seed, held)  # 20% and 10% of 20
        assert {k: v for k, v in stratified.items() if k[0] == "news"} == {k: v for k, v in plain.items()
                                                                          if k[0] == "news"}
