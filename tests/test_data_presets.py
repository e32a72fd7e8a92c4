"""DATA stage: named presets for public Korean sets, read from local files in those sets' column layouts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from kositp.data.build import BuildConfig, SourceConfig, build, sources_from_cli
from kositp.data.sources.presets import PRESETS
from kositp.errors import KositpError


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_preset_fills_format_hf_id_columns_and_name():
    src = SourceConfig(format="preset:k_rlhf")
    assert (src.format, src.path, src.name) == ("preference", "hf:jojo0217/korean_rlhf_dataset", "k_rlhf")
    assert src.columns["prompt"] == "instruction"
    custom = SourceConfig(format="preset:k_rlhf", path="/data/k.jsonl", name="mine", columns={"prompt": "question"})
    assert (custom.path, custom.name) == ("/data/k.jsonl", "mine")
    assert custom.columns == {"prompt": "question", "chosen": "chosen", "rejected": "rejected"}  # merged per key
    assert {name: SourceConfig(format=f"preset:{name}").format for name in PRESETS} == {
        "k_rlhf": "preference", "every_lm": "alpaca", "evolve_instr": "sharegpt"}
    with pytest.raises(ValidationError, match="unknown source preset"):
        SourceConfig(format="preset:nope")
    (cli,) = sources_from_cli(["preset:every_lm=/x/every.json"])
    assert (cli.format, cli.path, cli.name) == ("alpaca", "/x/every.json", "every_lm")
    assert sources_from_cli(["preset:evolve_instr"])[0].path == "hf:FreedomIntelligence/evol-instruct-korean"
    with pytest.raises(KositpError, match="unknown preset"):
        sources_from_cli(["preset:bogus"])


def test_presets_build_from_local_files_in_their_layouts(tmp_path):
    k_rlhf = _write_jsonl(tmp_path / "k_rlhf.jsonl", [
        {"instruction": f"가상시 {i}번 버스 노선을 설명해 줘", "chosen": f"{i}번 버스는 시청과 역을 잇습니다.",
         "rejected": "모릅니다."} for i in range(10)])
    every_lm = tmp_path / "every_lm.json"
    every_lm.write_text(json.dumps([{"instruction": "다음 문장을 높임말로 바꾸세요.", "input": "밥 먹었어?",
                                     "output": "진지 드셨어요?"},
                                    {"instruction": "한국의 수도는?", "input": "", "output": "서울입니다."}],
                                   ensure_ascii=False), encoding="utf-8")
    evolve = _write_jsonl(tmp_path / "evolve.jsonl", [
        {"id": "e1", "conversations": [{"from": "human", "value": "봄에 피는 꽃 세 가지를 알려 줘"},
                                       {"from": "gpt", "value": "개나리, 진달래, 벚꽃이 있습니다."}]}])
    cfg = BuildConfig.model_validate({"splits": {"validation": 0.1, "test": 0.1}, "sources": [
        {"format": "preset:k_rlhf", "path": str(k_rlhf)},
        {"format": "preset:every_lm", "path": str(every_lm)},
        {"format": "preset:evolve_instr", "path": str(evolve)}]})
    result = build(cfg, tmp_path / "out")
    out = result.out
    assert result.card["counts"]["rejected"] == 0
    sft = [r for s in ("train", "validation", "test") for r in _jsonl(out / f"{s}.jsonl")]
    assert sorted({r["source"] for r in sft}) == ["every_lm", "evolve_instr"]
    polite = next(r for r in sft if "높임말" in r["messages"][0]["content"])
    assert polite["messages"][0]["content"] == "다음 문장을 높임말로 바꾸세요.\n\n밥 먹었어?"
    assert polite["messages"][-1] == {"role": "assistant", "content": "진지 드셨어요?"}
    evol = next(r for r in sft if r["source"] == "evolve_instr")
    assert [m["role"] for m in evol["messages"]] == ["user", "assistant"]
    # the ten k_rlhf prompts are split by document: 8 train, 1 validation, 1 test
    prefs = {s: _jsonl(out / n) for s, n in (("train", "preference.jsonl"), ("validation", "preference_validation.jsonl"),
                                             ("test", "preference_test.jsonl"))}
    assert {s: len(v) for s, v in prefs.items()} == {"train": 8, "validation": 1, "test": 1}
    assert result.card["preference_splits"] == {"train": 8, "validation": 1, "test": 1}
    pair = prefs["train"][0]
    assert pair["source"] == "k_rlhf" and pair["prompt"][0]["role"] == "user" and pair["rejected"][0]["content"] == "모릅니다."
    ids = [r["doc_id"] for rows in prefs.values() for r in rows]
    assert len(ids) == len(set(ids))


def test_rebuild_without_preferences_removes_stale_preference_files(tmp_path):
    pref = _write_jsonl(tmp_path / "p.jsonl", [{"instruction": f"질문 {i}", "chosen": "좋은 답", "rejected": "나쁜 답"}
                                               for i in range(5)])
    out = tmp_path / "out"
    build(BuildConfig(sources=[SourceConfig(format="preset:k_rlhf", path=str(pref))]), out)
    assert (out / "preference_test.jsonl").exists()
    alpaca = tmp_path / "a.json"
    alpaca.write_text(json.dumps([{"instruction": "인사해 줘", "output": "안녕하세요"}], ensure_ascii=False),
                      encoding="utf-8")
    build(BuildConfig(sources=[SourceConfig(format="preset:every_lm", path=str(alpaca))]), out)
    assert not list(out.glob("preference*.jsonl"))
