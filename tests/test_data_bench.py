"""DATA stage: `kositp bench data` runs end to end on small files (no timing is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys

from kositp.data.bench import ensure_mrc_file, make_mrc_file
from kositp.data.schema import Document
from kositp.data.sources.aihub_mrc import read_mrc

CLI = [sys.executable, "-m", "kositp.cli"]


def test_generated_file_is_read_completely_and_reused(tmp_path):
    path = tmp_path / "one.json"
    qas = make_mrc_file(path, 0.05)
    docs = [d for d in read_mrc(str(path), "bench") if isinstance(d, Document)]
    assert qas == len(docs) == sum(len(p.qas) for d in docs for p in d.passages) > 10
    first, n1, created1 = ensure_mrc_file(tmp_path / "in", 0.05)
    stamp = first.stat().st_mtime_ns
    again, n2, created2 = ensure_mrc_file(tmp_path / "in", 0.05)
    assert created1 and not created2 and again == first and n1 == n2 == qas and first.stat().st_mtime_ns == stamp


def test_bench_data_cli_writes_json_and_markdown(tmp_path):
    out = tmp_path / "bench"
    res = subprocess.run([*CLI, "bench", "data", "--out", str(out), "--sizes", "0.05,0.1", "--repeats", "1"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    report = json.loads((out / "bench_data.json").read_text(encoding="utf-8"))
    assert [r["qa_records"] > 0 for r in report["results"]] == [True, True]
    small, big = report["results"]
    assert big["qa_records"] > small["qa_records"]
    for row in report["results"]:
        assert row["records_per_s_median"] > 0 and row["peak_rss_mb_median"] > 0 and row["reader_vs_parse_cpu"] > 0
        assert {r["mode"] for r in row["runs"]["reader"]} == {"reader"}
    assert "peak_rss_growth_pct" in report and report["ijson_backend"]
    assert "| file MB |" in (out / "bench_data.md").read_text(encoding="utf-8")
    assert not list(out.glob("bench_mrc_*.json"))  # generated inputs are removed unless --keep-inputs


def test_bench_data_bad_sizes_is_one_line(tmp_path):
    res = subprocess.run([*CLI, "bench", "data", "--out", str(tmp_path), "--sizes", "abc"], capture_output=True,
                         text=True)
    assert res.returncode == 2 and res.stderr.strip().count("\n") == 0 and "--sizes" in res.stderr
