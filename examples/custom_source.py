"""A data source of your own: read a house format, and let kositp turn it into instruction tasks.

kositp's adapters (AIHub MRC, summaries, tables, KISTI papers, ...) all yield the same few records
from kositp.data.schema: a `Document` (passages with questions, a title, sentences, summaries) that
the 22 task builders turn into examples, or a `Reject` with a reason for what cannot be used. A
reader of your own does the same and is registered under a format name; a build then lists it in
its sources like any built-in format, and its rejects are counted in rejects.jsonl.

The house format here: one JSON object a line, {"id", "title", "text", "qa": [{"q", "a"}]}, where
an answer "예"/"아니요" marks a yes/no question, which may quote its evidence sentence ("evidence").

    python examples/custom_source.py --out runs/custom
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import kositp
from kositp.data.schema import QA, Document, Passage, Reject
from kositp.data.task_names import NO, YES

ARTICLES = [
    {"id": "hanok", "title": "한옥의 온돌",
     "text": "한옥은 온돌로 방을 데운다. 아궁이에서 불을 때면 뜨거운 연기가 구들장 아래를 지나간다. "
             "데워진 구들장은 밤새 방바닥을 따뜻하게 유지한다. 이 방식은 삼국 시대부터 쓰였다고 알려져 있다.",
     "qa": [{"q": "한옥은 무엇으로 방을 데우나요?", "a": "온돌"},
            {"q": "데워진 구들장은 방바닥을 밤새 따뜻하게 유지하나요?", "a": YES,
             "evidence": "데워진 구들장은 밤새 방바닥을 따뜻하게 유지한다."}]},
    {"id": "kimjang", "title": "김장 문화",
     "text": "김장은 겨울 동안 먹을 김치를 한꺼번에 담그는 일이다. 이웃과 친척이 모여 함께 배추를 절이고 "
             "양념을 버무린다. 김장 문화는 2013년 유네스코 인류무형문화유산에 등재되었다.",
     "qa": [{"q": "김장 문화는 몇 년에 유네스코 인류무형문화유산에 등재되었나요?", "a": "2013년"},
            {"q": "김장은 여름에 먹을 김치를 담그는 일인가요?", "a": NO,
             "evidence": "김장은 겨울 동안 먹을 김치를 한꺼번에 담그는 일이다."}]},
    {"id": "empty", "title": "빈 기사", "text": "", "qa": []},  # unusable: becomes a counted reject
]


def read_house_articles(path: str, source: str, **options) -> object:
    """House JSONL articles with questions -> kositp Documents (one passage each), or Rejects."""
    with open(path, encoding="utf-8") as fh:
        for line_number, line in enumerate(fh, 1):
            ref = f"{path}:{line_number}"
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                yield Reject(source, ref, "bad_json")
                continue
            if not item.get("text", "").strip():
                yield Reject(source, ref, "empty_text")
                continue
            qas = [QA(qid=f"{item['id']}-{k}", question=qa["q"], answer=qa["a"],
                      qtype="yes_no" if qa["a"] in (YES, NO) else "span",
                      evidence=[qa["evidence"]] if "evidence" in qa else [])
                   for k, qa in enumerate(item["qa"])]
            yield Document(source=source, doc_id=item["id"], ref=ref, title=item["title"],
                           passages=[Passage(context=item["text"], qas=qas)], kind="mrc")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/custom"), help="Folder for the input and the data.")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    raw = args.out / "articles.jsonl"
    raw.write_text("".join(json.dumps(a, ensure_ascii=False) + "\n" for a in ARTICLES), encoding="utf-8")

    # Register the reader, then use its format name in the build's sources like a built-in one.
    kositp.register_source_format("house-articles", read_house_articles)
    data = kositp.build_data(sources=[{"format": "house-articles", "path": str(raw)}], out=str(args.out / "data"),
                             splits={"validation": 0.0, "test": 0.0}, tokenizer="tiny")

    records = [json.loads(line) for line in (data.out / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    tasks = Counter(record["task"] for record in records)
    print(f"{len(records)} records from {raw}, rejected {data.card['counts']['rejected']} (see rejects.jsonl):")
    for task, count in sorted(tasks.items()):
        print(f"  {task:<36} {count}")
    print("one of them:", json.dumps(records[0]["messages"], ensure_ascii=False, indent=1))
    return {"records": len(records), "tasks": dict(tasks), "rejected": data.card["counts"]["rejected"],
            "out": str(data.out)}


if __name__ == "__main__":
    main()
