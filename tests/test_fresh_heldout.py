"""`scripts/fresh_heldout.py`: the second held-out set keeps only records whose question no scored record asked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _record(rid: str, task: str, prompt: str) -> dict:
    return {"id": rid, "task": task, "source": "korquad", "doc_id": "d1",
            "messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": "답"}]}


def _write(path: Path, records: list[dict]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "test.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                                     encoding="utf-8")
    return path


def _run(*args: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "scripts" / "fresh_heldout.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_fresh_set_leaves_out_every_question_the_test_split_asked(tmp_path):
    korquad = tmp_path / "korquad.json"
    questions = ["세종은 언제 태어났는가?", "한글은 누가 만들었나?", "경복궁은 어디에 있나?"]
    korquad.write_text(json.dumps({"data": [{"title": "t", "paragraphs": [
        {"context": "c", "qas": [{"id": str(i), "question": q, "answers": []} for i, q in enumerate(questions)]}]}]},
        ensure_ascii=False), encoding="utf-8")
    scored = _record("extractive_qa_short-1", "extractive_qa_short", f"글\n\n질문: {questions[0]}")
    capped = _write(tmp_path / "capped", [scored])
    uncapped = _write(tmp_path / "uncapped", [
        scored,
        _record("abstractive_qa_objective-1", "abstractive_qa_objective", f"{questions[0]} 보기: ..."),  # same question
        _record("extractive_qa_short-2", "extractive_qa_short", f"질문: {questions[1]}"),
        _record("answerability_classification-3", "answerability_classification", f"'{questions[2]}'라는 질문"),
        _record("title_generation-1", "title_generation", "제목을 지으세요."),
        _record("extractive_qa_short-9", "extractive_qa_short", "질문: 코퍼스에 없는 질문?"),
    ])
    done = _run(capped, uncapped, korquad, tmp_path / "fresh")
    assert done.returncode == 0, done.stderr
    kept = [json.loads(line)["id"] for line in (tmp_path / "fresh" / "test.jsonl").read_text("utf-8").splitlines()]
    assert kept == ["extractive_qa_short-2", "answerability_classification-3"]
    card = json.loads((tmp_path / "fresh" / "card.json").read_text("utf-8"))
    assert card["left_out"] == {"in_the_test_split": 1, "question_already_scored": 1, "open_ended_task": 1,
                                "no_korquad_question": 1}
    assert card["records"] == 2 and card["scored_questions"] == 1

    other = _write(tmp_path / "other", [_record("x", "extractive_qa_short", questions[1])])
    refused = _run(capped, other, korquad, tmp_path / "fresh2")
    assert refused.returncode != 0 and "does not hold the capped one" in refused.stderr

    missing = _run(capped, tmp_path / "no-such-build", korquad, tmp_path / "fresh3")
    assert missing.returncode != 0 and missing.stderr.startswith("error: cannot read") and "Traceback" not in missing.stderr
