"""Report files: report.json (every number), predictions.jsonl (every example), report.md, PNG charts.

report.json is deterministic: no timestamps, paths of the output folder or timings (those go to
run_info.json), floats rounded to 6 places, keys in a fixed order. The same model, data and seed
give a byte-identical file, so two reports can be diffed.
"""

from __future__ import annotations

import json
from pathlib import Path

from kositp.eval.suites import SuiteResult

REPORT_VERSION = 1


def rounded(value, digits: int = 6):
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(v, digits) for v in value]
    return value


def headline(suites: dict[str, dict]) -> dict[str, float]:
    """The flat `suite/task/metric -> value` table that `kositp eval compare` lines up across runs."""
    flat: dict[str, float] = {}
    if "tasks" in suites:
        metrics = suites["tasks"]["metrics"]
        flat["tasks/mean_primary"] = metrics["summary"]["mean_primary"]
        flat["tasks/valid_rate"] = metrics["summary"]["valid_rate"]
        for task, entry in metrics["per_task"].items():
            flat[f"tasks/{task}/{entry['primary']}"] = entry[entry["primary"]]
    if "seed4" in suites:
        for name, entry in suites["seed4"]["metrics"]["per_task"].items():
            for key in ("macro_f1", "macro_f1_valid_only", "invalid_rate"):
                flat[f"seed4/{name}/{key}"] = entry[key]
    if "kobest" in suites:
        for name, entry in suites["kobest"]["metrics"]["per_task"].items():
            flat[f"kobest/{name}/acc"] = entry["acc"]
            flat[f"kobest/{name}/f1"] = entry["f1"]
    return flat


def build_report(model: dict, decoding: dict, config: dict, results: list[SuiteResult]) -> dict:
    suites = {r.name: {"metrics": r.metrics, "settings": r.settings} for r in results}
    return rounded({
        "report_version": REPORT_VERSION,
        "model": model,
        "decoding": decoding,
        "config": config,
        "headline": headline(suites),
        "suites": suites,
    })


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def write_predictions(path: Path, results: list[SuiteResult]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for result in results:
            for example in result.examples:
                handle.write(json.dumps(rounded(example), ensure_ascii=False) + "\n")


# --------------------------------------------------------------------------- markdown


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return lines


def markdown(report: dict) -> str:
    model = report["model"]
    lines = [f"# Evaluation report: {model.get('model') or model.get('api')}", ""]
    lines += [f"- backend: {model.get('backend')}", f"- decoding: {json.dumps(report['decoding'], ensure_ascii=False)}"]
    lines += [f"- chat format: {model.get('chat_format', 'server-side')}", ""]
    suites = report["suites"]
    if "tasks" in suites:
        m = suites["tasks"]["metrics"]
        lines += ["## 22 held-out tasks (`tasks`)", ""]
        lines += [f"Mean primary metric over {m['summary']['n_tasks']} tasks: **{m['summary']['mean_primary']:.4f}**; "
                  f"format-valid outputs: {m['summary']['valid_rate']:.1%} of {m['summary']['n']}.", ""]
        rows = []
        for task, e in m["per_task"].items():
            extra = ", ".join(f"{k}={_fmt(v)}" for k, v in e.items()
                              if k not in ("kind", "primary", "n", "valid_rate", e["primary"]))
            rows.append([task, e["kind"], e["n"], f"{e['primary']}={_fmt(e[e['primary']])}", e["valid_rate"], extra])
        lines += _table(["task", "kind", "n", "primary", "valid rate", "other metrics"], rows)
        if m["summary"]["tasks_missing"]:
            lines += ["", f"Tasks absent from the test split: {', '.join(m['summary']['tasks_missing'])}."]
        lines.append("")
    if "seed4" in suites:
        m = suites["seed4"]["metrics"]
        ref = m["seed_reference"]
        lines += ["## The seed's four benchmarks (`seed4`, zero-shot generation)", ""]
        lines += ["Macro-F1 counts invalid outputs as wrong; *valid only* drops them, as the seed's notebooks did "
                  f"(its table: {ref['model']}).", ""]
        rows = [[name, e["n"], e["macro_f1"], e["accuracy"], e["invalid_rate"], e["macro_f1_valid_only"], ref.get(name, "")]
                for name, e in m["per_task"].items()]
        lines += _table(["benchmark", "n", "macro-F1", "accuracy", "invalid rate", "macro-F1 (valid only)",
                         "seed table"], rows)
        lines.append("")
    if "kobest" in suites:
        m = suites["kobest"]["metrics"]
        lines += ["## KoBEST (`kobest`, log-likelihood, lm-eval-harness conventions)", ""]
        rows = [[name, e["n"], e["acc"], e.get("acc_norm", ""), e["f1"]] for name, e in m["per_task"].items()]
        lines += _table(["task", "n", "acc", "acc_norm", "macro-F1"], rows)
        lines.append("")
    lines += ["Per-example outputs: `predictions.jsonl`. Charts: `charts/`.", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- charts


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from kositp.eval.fonts import use_hangul_font

    use_hangul_font()
    return plt


def bar_chart(path: Path, title: str, labels: list[str], series: dict[str, list[float]], ylabel: str,
              ylim: tuple[float, float] | None = (0, 1)) -> None:
    """Grouped horizontal bars: one group per label, one bar per series."""
    plt = _pyplot()
    height = max(2.5, 0.32 * len(labels) * max(1, len(series)) + 1.2)
    fig, ax = plt.subplots(figsize=(8, height))
    n = max(1, len(series))
    bar = 0.8 / n
    for k, (name, values) in enumerate(series.items()):
        positions = [i + (k - (n - 1) / 2) * bar for i in range(len(labels))]
        ax.barh(positions, values, height=bar, label=name)
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    if ylim:
        ax.set_xlim(*ylim)
    ax.set_xlabel(ylabel)
    ax.set_title(title)
    if len(series) > 1:
        ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def write_charts(out: Path, report: dict) -> list[str]:
    charts = out / "charts"
    charts.mkdir(exist_ok=True)
    written = []
    suites = report["suites"]
    if "tasks" in suites:
        per_task = suites["tasks"]["metrics"]["per_task"]
        labels = [f"{t} ({e['primary']})" for t, e in per_task.items()]
        bar_chart(charts / "tasks.png", "Held-out tasks: primary metric and valid rate", labels,
                  {"primary": [e[e["primary"]] for e in per_task.values()],
                   "valid rate": [e["valid_rate"] for e in per_task.values()]}, "score")
        written.append("charts/tasks.png")
    if "seed4" in suites:
        m = suites["seed4"]["metrics"]
        names = list(m["per_task"])
        series = {"macro-F1 (invalid = wrong)": [m["per_task"][n]["macro_f1"] for n in names],
                  "macro-F1 (valid only, seed style)": [m["per_task"][n]["macro_f1_valid_only"] for n in names],
                  "seed table: " + m["seed_reference"]["model"]: [m["seed_reference"].get(n, 0.0) for n in names]}
        bar_chart(charts / "seed4.png", "Seed benchmarks (zero-shot)", names, series, "macro-F1")
        written.append("charts/seed4.png")
    if "kobest" in suites:
        m = suites["kobest"]["metrics"]["per_task"]
        names = list(m)
        bar_chart(charts / "kobest.png", "KoBEST (log-likelihood)", names,
                  {"acc": [m[n]["acc"] for n in names], "macro-F1": [m[n]["f1"] for n in names]}, "score")
        written.append("charts/kobest.png")
    return written


def write_report(out: Path, report: dict, results: list[SuiteResult]) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "report.json", report)
    write_predictions(out / "predictions.jsonl", results)
    (out / "report.md").write_text(markdown(report), encoding="utf-8")
    return ["report.json", "predictions.jsonl", "report.md", *write_charts(out, report)]
