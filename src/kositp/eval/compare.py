"""`kositp eval compare R1 R2 ...`: several report folders side by side (base vs SFT vs DPO).

Each run's intervals and sample sizes are recomputed from its predictions.jsonl (the same seeded
computation `kositp eval` writes into report.json, so reports written before a metric had an
interval get one too); a folder without predictions keeps what its report.json says.
"""

from __future__ import annotations

from pathlib import Path

from kositp.errors import KositpError
from kositp.eval import bootstrap
from kositp.eval.report import headline_figure, interval_text, rounded, write_json
from kositp.eval.run import load_report
from kositp.eval.stats import headline_uncertainty


def run_name(directory: Path, report: dict) -> str:
    return directory.name or str(directory)


def uncertainty(report: dict, examples: list[dict] | None) -> tuple[dict, dict, dict]:
    """(intervals, sample sizes per headline key, examples per suite) of one report."""
    if examples is None:
        return report.get("intervals", {}), report.get("sample_sizes", {}), report.get("suite_sizes", {})
    intervals, sizes = headline_uncertainty(report.get("headline", {}), examples, report.get("suites"),
                                            report.get("config", {}).get("seed", 0))
    suite_sizes: dict[str, int] = {}
    for example in examples:
        suite_sizes[example.get("suite")] = suite_sizes.get(example.get("suite"), 0) + 1
    return intervals, sizes, suite_sizes


def compare(report_dirs: list[str | Path], out: str | Path) -> dict:
    """Write comparison.json, comparison.md and comparison.png into `out`; returns the comparison."""
    if len(report_dirs) < 1:
        raise KositpError("give at least one report folder to compare")
    dirs = [Path(d) for d in report_dirs]
    reports = [load_report(d) for d in dirs]
    names = [run_name(d, r) for d, r in zip(dirs, reports, strict=True)]
    if len(set(names)) != len(names):
        names = [str(d) for d in dirs]  # same folder names in different places: use the full paths
    examples = [bootstrap.load_examples(d) for d in dirs]
    found = {name: uncertainty(r, e) for name, r, e in zip(names, reports, examples, strict=True)}
    keys: list[str] = []
    for report in reports:
        keys += [k for k in report.get("headline", {}) if k not in keys]

    def by_key(index: int) -> dict:
        return {key: {name: found[name][index].get(key) for name in names} for key in keys}

    table = {key: {name: r.get("headline", {}).get(key) for name, r in zip(names, reports, strict=True)}
             for key in keys}
    intervals, sizes = by_key(0), by_key(1)
    suites = list(dict.fromkeys(k.split("/")[0] for k in keys))
    suite_sizes = {s: {name: found[name][2].get(s) for name in names} for s in suites}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paired = bootstrap.pairwise(dirs, names, reports, examples)
    figure = headline_figure(out / "comparison.png", names, table, intervals, sizes, suite_sizes,
                             "Evaluation runs side by side (bars: value; error bars: 95% interval)")
    result = rounded({
        "runs": [{"name": n, "dir": str(d), "model": r.get("model", {})} for n, d, r in zip(names, dirs, reports,
                                                                                       strict=True)],
        "metrics": table,
        "intervals": {k: v for k, v in intervals.items() if any(v.values())},
        "sample_sizes": sizes,
        "suite_sizes": suite_sizes,
        "paired_bootstrap": {"resamples": bootstrap.RESAMPLES, "seed": bootstrap.SEED, "level": 0.95,
                             "comparisons": paired},
        "figure": figure,
    })
    write_json(out / "comparison.json", result)
    (out / "comparison.md").write_text("\n".join(markdown(names, dirs, reports, result)), encoding="utf-8")
    return result


def _sizes_cell(sizes: dict[str, int | None]) -> str:
    known = sorted({n for n in sizes.values() if n is not None})
    return "/".join(str(n) for n in known) or "–"


def markdown(names: list[str], dirs: list[Path], reports: list[dict], result: dict) -> list[str]:
    lines = ["# Evaluation comparison", ""]
    lines += [f"- **{n}**: {r.get('model', {}).get('model') or r.get('model', {}).get('api')} ({d})"
              for n, d, r in zip(names, dirs, reports, strict=True)]
    sizes = ", ".join(f"{suite} {_sizes_cell(per_run)}" for suite, per_run in result["suite_sizes"].items())
    lines += ["", f"Examples per suite: {sizes}.", ""]
    lines += ["| metric | examples | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for key, values in result["metrics"].items():
        present = [v for v in values.values() if v is not None]
        lower_is_better = key.endswith("invalid_rate")
        best = (min(present) if lower_is_better else max(present)) if present else None
        cells = []
        for name in names:
            value = values[name]
            text = interval_text(value, result["intervals"].get(key, {}).get(name),
                                 result["sample_sizes"][key][name])
            if value is not None and value == best and len(present) > 1:
                text = text.replace(f"{value:.4f}", f"**{value:.4f}**", 1)
            cells.append(text)
        lines.append(f"| {key} | {_sizes_cell(result['sample_sizes'][key])} | " + " | ".join(cells) + " |")
    lines += ["", "Bold: the best run for that metric (lowest for invalid rates). Missing: –. [low, high]: 95% "
              "bootstrap interval (1,000 seeded redraws of the metric's examples; macro averages and macro-F1 "
              "recomputed on each). `comparison.png` draws the same values and intervals, one panel per suite.", ""]
    lines += bootstrap.markdown(result["paired_bootstrap"]["comparisons"])
    return lines
