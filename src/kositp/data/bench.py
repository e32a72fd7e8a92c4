"""`kositp bench data`: stream a synthetic AIHub-layout MRC file and report QA records/s and peak RSS.

The file is a D3-style `{"data": [...]}` JSON made from the bundled invented topics (unique doc ids),
written once per size. Each size is read in a fresh subprocess by the real `aihub-mrc` adapter
(ijson streaming, QA normalisation and offset checks), so peak RSS is that of the reader alone.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import typer

KINDS = ("span_extraction", "span_extraction_how", "multiple_choice", "text_entailment", "unanswerable")


def make_mrc_file(path: Path, target_mb: float) -> int:
    """Write a D3-layout file of about `target_mb` MB; returns the number of QA records in it."""
    from kositp.resources.samples.generate import mrc_document
    from kositp.resources.samples.topics import TOPICS

    target = int(target_mb * 1024 * 1024)
    qas = written = i = 0
    with open(path, "w", encoding="utf-8") as fh:
        fh.write('{"version": "1", "data": [')
        while written < target:
            doc = mrc_document(TOPICS[i % len(TOPICS)], KINDS[i % len(KINDS)], doc_id=f"BENCH_{i:09d}")
            line = ("," if i else "") + json.dumps(doc, ensure_ascii=False)
            fh.write(line)
            written += len(line.encode("utf-8"))
            qas += 1
            i += 1
        fh.write("]}")
    return qas


def _read_child(path: str) -> None:
    from kositp.data.schema import Document
    from kositp.data.sources.aihub_mrc import read_mrc

    start = time.perf_counter()
    qas = sum(len(p.qas) for d in read_mrc(path, "bench") if isinstance(d, Document) for p in d.passages)
    seconds = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"qa_records": qas, "seconds": seconds, "peak_rss_mb": peak_kb / 1024}))


def run_bench(out: Path, sizes_mb: list[float], repeats: int = 3) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for size in sizes_mb:
        path = out / f"bench_mrc_{size:g}mb.json"
        expected = make_mrc_file(path, size)
        runs = []
        for _ in range(repeats):
            proc = subprocess.run([sys.executable, "-c", f"from kositp.data.bench import _read_child; _read_child({str(path)!r})"],
                                  capture_output=True, text=True, check=True)
            runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        assert all(r["qa_records"] == expected for r in runs), "reader lost records"
        rates = [r["qa_records"] / r["seconds"] for r in runs]
        results.append({"size_mb": round(path.stat().st_size / 2**20, 1), "qa_records": expected,
                        "records_per_s_median": round(statistics.median(rates)),
                        "peak_rss_mb_median": round(statistics.median(r["peak_rss_mb"] for r in runs), 1),
                        "runs": runs})
        path.unlink()
    report = {"benchmark": "aihub-mrc streaming read", "repeats": repeats, "results": results}
    if len(results) >= 2:
        first, last = results[0]["peak_rss_mb_median"], results[-1]["peak_rss_mb_median"]
        report["peak_rss_growth_pct"] = round(100 * (last - first) / first, 1)
    (out / "bench_data.json").write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    lines = ["| file MB | QA records | records/s (median) | peak RSS MB (median) |", "|---:|---:|---:|---:|"]
    lines += [f"| {r['size_mb']} | {r['qa_records']} | {r['records_per_s_median']} | {r['peak_rss_mb_median']} |"
              for r in results]
    (out / "bench_data.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return report


def bench_data(
    out: Path = typer.Option(..., "--out", help="Directory for bench_data.json/.md (and temporary files)."),
    sizes: str = typer.Option("100,1000", "--sizes", help="File sizes in MB, comma-separated."),
    repeats: int = typer.Option(3, "--repeats", min=1, help="Runs per size; the median is reported."),
) -> None:
    """Measure streaming throughput (QA records/s) and peak RSS of the aihub-mrc reader on large files."""
    report = run_bench(out, [float(s) for s in sizes.split(",") if s.strip()], repeats)
    typer.echo((out / "bench_data.md").read_text(encoding="utf-8"))
    if "peak_rss_growth_pct" in report:
        typer.echo(f"peak RSS growth from smallest to largest file: {report['peak_rss_growth_pct']}%")
