"""`kositp bench data`: stream a synthetic AIHub-layout MRC file and report QA records/s and peak RSS.

The file is a D3-style `{"data": [...]}` JSON made from the bundled invented topics (unique doc ids,
one passage with one question per document, the worst case for records/s), written once per size
and reused when it is already there. Each run reads it in a fresh subprocess, so peak RSS is that
of one reader alone:

- `reader`: the real `aihub-mrc` adapter (ijson streaming, QA normalisation, offset checks);
- `parse` (the baseline): the same ijson C-backend parse of `data.item` with nothing done per item,
  i.e. the ceiling any Python reader of this file can reach. `reader_vs_parse` is their ratio, which
  says how much of the time the adapter's own work takes, on any machine.

records/s is reported against wall time and against the process's CPU time; on a shared, loaded
machine the CPU figure is the one that says what one core can do.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import typer

KINDS = ("span_extraction", "span_extraction_how", "multiple_choice", "text_entailment", "unanswerable")
GOAL_RECORDS_PER_S = 20_000
GOAL_RSS_GROWTH_PCT = 10.0


def make_mrc_file(path: Path, target_mb: float) -> int:
    """Write a D3-layout file of about `target_mb` MB; returns the number of QA records in it."""
    from kositp.resources.samples.generate import mrc_document
    from kositp.resources.samples.topics import TOPICS

    target = int(target_mb * 1024 * 1024)
    qas = written = i = 0
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write('{"version": "1", "data": [')
        while written < target:
            doc = mrc_document(TOPICS[i % len(TOPICS)], KINDS[i % len(KINDS)], doc_id=f"BENCH_{i:09d}")
            line = ("," if i else "") + json.dumps(doc, ensure_ascii=False)
            fh.write(line)
            written += len(line.encode("utf-8"))
            qas += 1
            i += 1
        fh.write("]}")
    os.replace(tmp, path)
    return qas


def ensure_mrc_file(directory: Path, size_mb: float) -> tuple[Path, int, bool]:
    """(path, QA count, created now?) of the bench file for `size_mb`, generating it only when missing.

    A sidecar `<file>.meta.json` records the byte size and QA count; a file that does not match it
    (interrupted write, different generator) is regenerated.
    """
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"bench_mrc_{size_mb:g}mb.json"
    meta_path = path.with_name(path.name + ".meta.json")
    if path.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("bytes") == path.stat().st_size and meta.get("target_mb") == size_mb:
            return path, int(meta["qa_records"]), False
    qas = make_mrc_file(path, size_mb)
    meta_path.write_text(json.dumps({"target_mb": size_mb, "bytes": path.stat().st_size, "qa_records": qas}) + "\n",
                         encoding="utf-8")
    return path, qas, True


def _run_child(path: Path, mode: str) -> dict:
    code = f"from kositp.data.bench_reader import read_child; read_child({str(path)!r}, {mode!r})"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        from kositp.errors import KositpError

        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise KositpError(f"bench reader failed on {path}: {tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def _rate(runs: list[dict], records: int, seconds_key: str) -> int:
    return round(statistics.median(records / max(r[seconds_key], 1e-6) for r in runs))


def run_bench(out: Path, sizes_mb: list[float], repeats: int = 3, inputs: Path | None = None,
              keep_inputs: bool = False, progress: Callable[[str], None] | None = None) -> dict:
    """Generate (or reuse) one file per size, read it `repeats` times per mode, write bench_data.json/.md."""
    import ijson

    progress = progress or (lambda _msg: None)
    out.mkdir(parents=True, exist_ok=True)
    inputs = inputs or out
    results = []
    for size in sizes_mb:
        progress(f"{size:g} MB: preparing the input file")
        path, expected, created = ensure_mrc_file(inputs, size)
        runs: dict[str, list[dict]] = {"reader": [], "parse": []}
        for r in range(repeats):
            for mode in ("parse", "reader"):  # interleaved, so a burst of load hits both alike
                progress(f"{size:g} MB: {mode} run {r + 1}/{repeats}")
                runs[mode].append(_run_child(path, mode))
        lost = [x["qa_records"] for m in runs.values() for x in m if x["qa_records"] != expected]
        if lost:
            from kositp.errors import KositpError

            raise KositpError(f"bench reader counted {lost[0]} QA records in {path}, expected {expected}")
        reader, parse = runs["reader"], runs["parse"]
        results.append({
            "size_mb": round(path.stat().st_size / 2**20, 1), "qa_records": expected,
            "records_per_s_median": _rate(reader, expected, "seconds"),
            "records_per_s_cpu_median": _rate(reader, expected, "cpu_seconds"),
            "peak_rss_mb_median": round(_median(reader, "peak_rss_mb"), 1),
            "rss_before_read_mb_median": round(_median(reader, "rss_before_read_mb"), 1),
            "parse_records_per_s_median": _rate(parse, expected, "seconds"),
            "parse_records_per_s_cpu_median": _rate(parse, expected, "cpu_seconds"),
            "reader_vs_parse_cpu": round(_median(parse, "cpu_seconds") / max(_median(reader, "cpu_seconds"), 1e-6), 3),
            "runs": runs,
        })
        if created and not keep_inputs:
            path.unlink()
            path.with_name(path.name + ".meta.json").unlink()
    report = {"benchmark": "aihub-mrc streaming read (one QA per document)", "repeats": repeats,
              "ijson_backend": ijson.backend, "python": sys.version.split()[0], "cpu_count": os.cpu_count(),
              "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
              "goal": {"records_per_s": GOAL_RECORDS_PER_S, "peak_rss_growth_pct": GOAL_RSS_GROWTH_PCT},
              "results": results}
    if len(results) >= 2:
        first, last = results[0]["peak_rss_mb_median"], results[-1]["peak_rss_mb_median"]
        report["peak_rss_growth_pct"] = round(100 * (last - first) / first, 1)
    (out / "bench_data.json").write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    (out / "bench_data.md").write_text(render_markdown(report), encoding="utf-8")
    return report


def render_markdown(report: dict) -> str:
    lines = [f"# kositp bench data: {report['benchmark']}", "",
             f"{report['repeats']} run(s) per size, medians; ijson backend `{report['ijson_backend']}`, "
             f"Python {report['python']}, {report['cpu_count']} CPUs, load average at the end "
             f"{report['load_average_at_end']}.", "",
             "| file MB | QA records | records/s (wall) | records/s (CPU) | parse-only records/s (CPU) "
             "| reader / parse | peak RSS MB | RSS before reading MB |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['size_mb']} | {r['qa_records']} | {r['records_per_s_median']} | {r['records_per_s_cpu_median']} "
              f"| {r['parse_records_per_s_cpu_median']} | {r['reader_vs_parse_cpu']} | {r['peak_rss_mb_median']} "
              f"| {r['rss_before_read_mb_median']} |" for r in report["results"]]
    if "peak_rss_growth_pct" in report:
        lines += ["", f"Peak RSS growth from the smallest to the largest file: {report['peak_rss_growth_pct']}% "
                      f"(goal < {GOAL_RSS_GROWTH_PCT:g}%)."]
    return "\n".join(lines) + "\n"


def bench_data(
    out: Path = typer.Option(..., "--out", help="Directory for bench_data.json and bench_data.md."),
    sizes: str = typer.Option("100,1000", "--sizes", help="Input file sizes in MB, comma-separated."),
    repeats: int = typer.Option(3, "--repeats", min=1, help="Runs per size and mode; medians are reported."),
    inputs: Path | None = typer.Option(None, "--inputs", help="Where the generated input files live (default: "
                                       "--out). Existing ones are reused, so several runs share one file."),
    keep_inputs: bool = typer.Option(False, "--keep-inputs", help="Keep generated input files for later runs."),
) -> None:
    """Speed (QA records/s) and peak RSS of the aihub-mrc reader on big files vs an ijson parse-only baseline."""
    from kositp.errors import KositpError
    from kositp.progress import StageStatus

    try:
        size_list = [float(s) for s in sizes.split(",") if s.strip()]
    except ValueError:
        raise KositpError(f"--sizes '{sizes}' must be numbers in MB separated by commas, e.g. 100,1000") from None
    if not size_list or any(s <= 0 or s > 100_000 for s in size_list):
        raise KositpError(f"--sizes '{sizes}': give sizes between 0 and 100000 MB")
    with StageStatus("bench data") as status:
        report = run_bench(out, size_list, repeats, inputs, keep_inputs, progress=status.update)
    typer.echo(render_markdown(report))
