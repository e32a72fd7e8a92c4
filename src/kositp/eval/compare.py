"""`kositp eval compare R1 R2 ...`: several report folders side by side (base vs SFT vs DPO)."""

from __future__ import annotations

from pathlib import Path

from kositp.errors import KositpError
from kositp.eval import bootstrap
from kositp.eval.report import bar_chart, rounded, write_json
from kositp.eval.run import load_report


def run_name(directory: Path, report: dict) -> str:
    return directory.name or str(directory)


def compare(report_dirs: list[str | Path], out: str | Path) -> dict:
    """Write comparison.json, comparison.md and comparison.png into `out`; returns the comparison."""
    if len(report_dirs) < 1:
        raise KositpError("give at least one report folder to compare")
    dirs = [Path(d) for d in report_dirs]
    reports = [load_report(d) for d in dirs]
    names = [run_name(d, r) for d, r in zip(dirs, reports, strict=True)]
    if len(set(names)) != len(names):
        names = [str(d) for d in dirs]  # same folder names in different places: use the full paths
    keys: list[str] = []
    for report in reports:
        keys += [k for k in report.get("headline", {}) if k not in keys]
    table = {key: {name: r.get("headline", {}).get(key) for name, r in zip(names, reports, strict=True)}
             for key in keys}
    intervals = {key: {name: r.get("intervals", {}).get(key) for name, r in zip(names, reports, strict=True)}
                 for key in keys if any(key in r.get("intervals", {}) for r in reports)}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paired = bootstrap.pairwise(dirs, names)
    result = rounded({
        "runs": [{"name": n, "dir": str(d), "model": r.get("model", {})} for n, d, r in zip(names, dirs, reports,
                                                                                       strict=True)],
        "metrics": table,
        "intervals": intervals,
        "paired_bootstrap": {"resamples": bootstrap.RESAMPLES, "seed": bootstrap.SEED, "comparisons": paired},
    })
    write_json(out / "comparison.json", result)
    lines = ["# Evaluation comparison", ""]
    lines += [f"- **{n}**: {r.get('model', {}).get('model') or r.get('model', {}).get('api')} ({d})"
              for n, d, r in zip(names, dirs, reports, strict=True)]
    lines += ["", "| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for key, values in table.items():
        cells = []
        present = [v for v in values.values() if v is not None]
        best = max(present) if present and not key.endswith("invalid_rate") else (min(present) if present else None)
        for name in names:
            v = values[name]
            text = "–" if v is None else f"{v:.4f}"
            ci = intervals.get(key, {}).get(name)
            text = f"**{text}**" if v is not None and v == best and len(present) > 1 else text
            cells.append(text + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""))
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    lines += ["", "Bold: the best run for that metric (lowest for invalid rates). Missing: –. [low, high]: 95% "
              "bootstrap interval of a mean over examples (report.json `intervals`).", ""]
    lines += bootstrap.markdown(result["paired_bootstrap"]["comparisons"])
    (out / "comparison.md").write_text("\n".join(lines), encoding="utf-8")
    chart_keys = [k for k in keys if not k.endswith("invalid_rate") and "/valid_rate" not in k]
    if chart_keys:
        series = {name: [table[k][name] or 0.0 for k in chart_keys] for name in names}
        bar_chart(out / "comparison.png", "Evaluation runs side by side", chart_keys, series, "score")
    return result
