"""Held-out records of data/public that no evaluation has scored yet, for checking a result once more.

The public test split is a capped sample of the held-out KorQuAD articles' records, and it has already
been used to choose between preference methods. The same articles hold several times more questions
than the caps let in. This script takes them from an uncapped build with the same seed. Its document
split is the same (the split depends on the documents, not on the caps). It keeps a record only if it
is of a checkable task, is not in the capped test split, and asks a KorQuAD question that no
capped test record asks, in any task's form.

    kositp data build --config data/public --out runs/public/data-uncapped tokenizer=default \\
        task_caps.extractive_qa_short=100000 ...        # every capped task (docs/experiments/public/fresh)
    python scripts/fresh_heldout.py runs/public/data runs/public/data-uncapped \\
        ../shared/data/corpora/korquad/KorQuAD_v1.0_dev.json runs/public/data-fresh
    kositp eval --model runs/public/sft --data runs/public/data-fresh --suite tasks ...

Writes OUT/test.jsonl and OUT/card.json (counts per task, and what was left out and why).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path


def read_jsonl(path: Path) -> list[dict]:
    from kositp.train.data import read_jsonl as numbered_rows

    return [row for _, row in numbered_rows(path)]


def korquad_questions(path: Path) -> set[str]:
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    return {qa["question"].strip() for article in data for paragraph in article["paragraphs"]
            for qa in paragraph["qas"] if qa["question"].strip()}


def asked(record: dict, questions: set[str]) -> set[str]:
    """The KorQuAD questions a record's prompt contains (a question is a whole string in every template)."""
    prompt = "\n".join(m["content"] for m in record["messages"] if m["role"] != "assistant")
    return {q for q in questions if q in prompt}


def main(capped: Path, uncapped: Path, korquad: Path, out: Path) -> None:
    from kositp.eval.stats import is_checkable

    questions = korquad_questions(korquad)
    scored = read_jsonl(capped / "test.jsonl")
    scored_ids = {r["id"] for r in scored}
    scored_questions = set().union(*(asked(r, questions) for r in scored))
    candidates = read_jsonl(uncapped / "test.jsonl")
    if not scored_ids <= {r["id"] for r in candidates}:
        sys.exit("error: the uncapped build's test split does not hold the capped one: "
                 "build both from the same recipe and seed")
    kept, left_out = [], Counter()
    for record in candidates:
        if record["id"] in scored_ids:
            left_out["in_the_test_split"] += 1
        elif not is_checkable(record["task"]):
            left_out["open_ended_task"] += 1
        elif not (own := asked(record, questions)):
            left_out["no_korquad_question"] += 1
        elif own & scored_questions:
            left_out["question_already_scored"] += 1
        else:
            kept.append(record)
    out.mkdir(parents=True, exist_ok=True)
    (out / "test.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept),
                                    encoding="utf-8")
    card = {"records": len(kept), "tasks": dict(Counter(r["task"] for r in kept).most_common()),
            "documents": len({r["doc_id"] for r in kept}), "left_out": dict(left_out),
            "scored_questions": len(scored_questions), "from": {"capped": str(capped), "uncapped": str(uncapped)}}
    (out / "card.json").write_text(json.dumps(card, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"{len(kept)} fresh records over {len(card['tasks'])} tasks -> {out / 'test.jsonl'}; left out: {dict(left_out)}")


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    from kositp.errors import KositpError

    try:
        main(*(Path(a) for a in sys.argv[1:]))
    except (KositpError, OSError, KeyError, ValueError) as exc:  # a wrong path or layout: one line, no traceback
        sys.exit(f"error: {exc}")
