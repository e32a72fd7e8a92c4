"""Report files: report.json (every number), predictions.jsonl (every example), report.md, PNG charts.

report.json is deterministic: no timestamps, paths of the output folder or timings (those go to
run_info.json), floats rounded to 6 places, keys in a fixed order. The same model, data and seed
give a byte-identical file, so two reports can be diffed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

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
        flat["tasks/record_mean_primary"] = metrics["summary"]["record_mean_primary"]
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
    if "kmmlu" in suites:
        for variant, entry in suites["kmmlu"]["metrics"]["per_task"].items():
            flat[f"kmmlu/{variant}/acc"] = entry["acc"]
            flat[f"kmmlu/{variant}/macro_acc"] = entry["macro_acc"]
            if "invalid_rate" in entry:
                flat[f"kmmlu/{variant}/invalid_rate"] = entry["invalid_rate"]
    if "kite" in suites:
        for part, entry in suites["kite"]["metrics"]["per_task"].items():
            for key in ("prompt_strict", "instruction_strict", "prompt_loose", "instruction_loose"):
                flat[f"kite/{part}/{key}"] = entry[key]
    if "judge" in suites:
        for name, entry in suites["judge"]["metrics"]["per_task"].items():
            flat[f"judge/{name}/mean_score"] = entry["mean_score"]
            flat[f"judge/{name}/scored_rate"] = entry["scored_rate"]
    if "custom" in suites:
        for name, entry in suites["custom"]["metrics"]["per_task"].items():
            flat[f"custom/{name}/{entry['primary']}"] = entry[entry["primary"]]
            if "invalid_rate" in entry:
                flat[f"custom/{name}/invalid_rate"] = entry["invalid_rate"]
    return flat


def build_report(model: dict, decoding: dict, config: dict, results: list[SuiteResult]) -> dict:
    from kositp.eval.stats import headline_uncertainty

    suites = {r.name: {"metrics": r.metrics, "settings": r.settings} for r in results}
    flat = headline(suites)
    examples = [e for r in results for e in r.examples]
    intervals, sizes = headline_uncertainty(flat, examples, suites, config.get("seed", 0))
    return rounded({
        "report_version": REPORT_VERSION,
        "model": model,
        "decoding": decoding,
        "config": config,
        "headline": flat,
        "intervals": intervals,
        "sample_sizes": sizes,
        "suite_sizes": {r.name: len(r.examples) for r in results},
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
        lines += [f"Mean primary metric over {m['summary']['n_tasks']} tasks: **{m['summary']['mean_primary']:.4f}** "
                  f"(over the {m['summary']['n']} records: {m['summary']['record_mean_primary']:.4f}); "
                  f"format-valid outputs: {m['summary']['valid_rate']:.1%} of {m['summary']['n']}.", ""]
        rows = []
        for task, e in m["per_task"].items():
            extra = ", ".join(f"{k}={_fmt(v)}" for k, v in e.items()
                              if k not in ("kind", "primary", "n", "valid_rate", e["primary"]))
            rows.append([task, e["kind"], e["n"], f"{e['primary']}={_fmt(e[e['primary']])}", e["valid_rate"], extra])
        lines += _table(["task", "kind", "n", "primary", "valid rate", "other metrics"], rows)
        if m["summary"]["tasks_missing"]:
            lines += ["", f"Tasks absent from the test split: {', '.join(m['summary']['tasks_missing'])}."]
        lines += ["", *tasks_budget_markdown(suites["tasks"]["settings"], m["per_task"])]
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
    lines += _new_suites_markdown(suites)
    lines += headline_markdown(report)
    lines += ["Per-example outputs: `predictions.jsonl`. Overview chart: `report.png`; details: `charts/`.", ""]
    return "\n".join(lines)


def tasks_budget_markdown(settings: dict, per_task: dict) -> list[str]:
    """Each task's generation budget and how many of its outputs it cut (no end-of-turn within it)."""
    budgets = settings.get("max_new_tokens_per_task")
    if not budgets:
        return []
    cut = settings.get("cut_by_budget", {})
    rule = settings.get("budget_rule") or f"max_new_tokens={settings.get('max_new_tokens')} for every task"
    text = ", ".join(f"{task} {budgets[task]} ({cut.get(task, 0)}/{e['n']} cut)"
                     for task, e in per_task.items() if task in budgets)
    return [f"Generation budget per task ({settings.get('task_budget', 'fixed')}: {rule}); outputs cut by it: "
            f"{sum(cut.values())} of {sum(e['n'] for e in per_task.values())}. {text}."]


def interval_text(value: float | None, ci: list[float] | None, n: int | None, digits: int = 4) -> str:
    """`0.3245 [0.2100, 0.4400]`, or why there is no interval (one example, or no per-example scores)."""
    if value is None:
        return "–"
    text = f"{value:.{digits}f}"
    if ci:
        return text + f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"
    if n is not None:
        return text + f" (n = {n}: too few for an interval)"
    return text + " (no per-example scores)"


def headline_markdown(report: dict) -> list[str]:
    """Every headline metric with its 95% interval and the number of examples behind it."""
    intervals, sizes = report.get("intervals", {}), report.get("sample_sizes", {})
    rows = [[key, interval_text(value, intervals.get(key), sizes.get(key)), sizes.get(key, "–")]
            for key, value in report["headline"].items()]
    if not rows:
        return []
    return ["## Headline metrics with 95% bootstrap intervals", "",
            "Each interval redraws the metric's examples 1,000 times with replacement (seeded) and recomputes the "
            "metric as above, macro averages and macro-F1 included.", "",
            *_table(["metric", "value [95% interval]", "examples"], rows), ""]


def _new_suites_markdown(suites: dict) -> list[str]:
    lines: list[str] = []
    if "kmmlu" in suites:
        per_task = suites["kmmlu"]["metrics"]["per_task"]
        shots = suites["kmmlu"]["settings"]["num_fewshot"]
        lines += [f"## KMMLU (`kmmlu`; log-likelihood {shots}-shot, lm-eval-harness conventions; generative: "
                  "letter parsed from the reply, invalid = wrong)", ""]
        rows = [[v, e["n"], e["acc"], e["macro_acc"], e.get("acc_norm", ""), e.get("invalid_rate", "")]
                for v, e in per_task.items()]
        lines += _table(["variant", "n", "acc (micro)", "macro acc (subjects)", "acc_norm", "invalid rate"], rows)
        groups = sorted({g for e in per_task.values() for g in e.get("per_group", {})})
        if groups:
            lines += ["", "Per supercategory:", ""]
            lines += _table(["variant", *groups], [[v, *[e.get("per_group", {}).get(g, {}).get("acc", "")
                                                         for g in groups]] for v, e in per_task.items()])
        lines.append("")
    if "kite" in suites:
        per_task = suites["kite"]["metrics"]["per_task"]
        lines += ["## KITE (`kite`, IFEval-style verifiable instructions in Korean)", ""]
        rows = [[p, e["n"], e["prompt_strict"], e["instruction_strict"], e["prompt_loose"], e["instruction_loose"],
                 e["cut_off"]] for p, e in per_task.items()]
        lines += _table(["part", "prompts", "prompt strict", "instruction strict", "prompt loose",
                         "instruction loose", "cut off"], rows)
        lines.append("")
    if "judge" in suites:
        judge = suites["judge"]
        who = judge["settings"]["judge"]
        lines += [f"## LLM-judged chat (`judge`): judge `{who['model']}` at {who['url']}", ""]
        rows = [[n, e["n_judgments"], e["mean_score"], e["n_scored"], e["unparsable"], e["judge_errors"],
                 e["per_turn"]["turn1"], e["per_turn"]["turn2"]] for n, e in judge["metrics"]["per_task"].items()]
        lines += _table(["set", "judgments", "mean score (1-10)", "scored", "unparsable", "judge errors",
                         "turn 1", "turn 2"], rows)
        for name, entry in judge["metrics"]["per_task"].items():
            if entry["per_category"]:
                lines += ["", f"{name} per category:", ""]
                lines += _table(["category", "n", "mean"], [[c, v["n"], v["mean"]]
                                                            for c, v in entry["per_category"].items()])
        lines.append("")
    if "custom" in suites:
        lines += ["## Your benchmarks (`custom`)", ""]
        rows = [[n, e["n"], f"{e['primary']}={_fmt(e[e['primary']])}", e.get("invalid_rate", "")]
                for n, e in suites["custom"]["metrics"]["per_task"].items()]
        lines += _table(["benchmark", "n", "primary", "invalid rate"], rows)
        lines.append("")
    return lines


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


SUITE_TITLES = {
    "tasks": "Held-out tasks (generation)",
    "seed4": "seed4: NSMC, KorNLI, QPair, HateSpeech (zero-shot)",
    "kobest": "KoBEST (log-likelihood)",
    "kmmlu": "KMMLU",
    "kite": "KITE (instruction following)",
    "judge": "LLM-judged chat (score 1-10)",
    "custom": "Your benchmarks",
}
# Rates of failure or of bookkeeping read in the other direction or on another scale: tables only.
FIGURE_SKIPS = ("invalid_rate", "scored_rate")
FIGURE_DPI = 110


def figure_panels(keys: list[str]) -> dict[str, list[str]]:
    """Headline keys by suite, in order, without the ones the figure leaves to the tables."""
    panels: dict[str, list[str]] = {}
    for key in keys:
        if not key.endswith(FIGURE_SKIPS):
            panels.setdefault(key.split("/")[0], []).append(key)
    return panels


def _sizes_text(sizes: dict[str, int | None]) -> str:
    known = {run: n for run, n in sizes.items() if n is not None}
    if not known:
        return "n unknown"
    if len(set(known.values())) == 1:
        return f"n = {next(iter(known.values())):,} examples"
    return "n = " + ", ".join(f"{n:,} ({run})" for run, n in known.items())


def _metric_labels(keys: list[str], key_sizes: dict[str, dict[str, int | None]]) -> list[str]:
    """Metric names without the suite; each with its n when the panel's metrics rest on different numbers."""
    sizes = {k: sorted({n for n in key_sizes.get(k, {}).values() if n is not None}) for k in keys}
    varied = len({tuple(v) for v in sizes.values()}) > 1
    return [k.split("/", 1)[1] + (f" (n={'/'.join(map(str, sizes[k]))})" if varied and sizes[k] else "")
            for k in keys]


def _draw_panel(ax, keys: list[str], runs: list[str], values: dict, intervals: dict, colors: list[str]) -> None:
    """Horizontal bars, one group per metric and one bar per run, with the 95% intervals as error bars."""
    width = 0.8 / len(runs)
    right = 1.0
    for r, run in enumerate(runs):
        scores = [values[k].get(run) or 0.0 for k in keys]
        cis = [intervals.get(k, {}).get(run) for k in keys]
        below = [v - ci[0] if ci else np.nan for v, ci in zip(scores, cis, strict=True)]
        above = [ci[1] - v if ci else np.nan for v, ci in zip(scores, cis, strict=True)]
        positions = [i + (r - (len(runs) - 1) / 2) * width for i in range(len(keys))]
        bars = ax.barh(positions, scores, height=width, color=colors[r % len(colors)], label=run,
                       xerr=[below, above], error_kw={"ecolor": "0.15", "capsize": 2, "elinewidth": 0.9})
        for patch, ci in zip(bars.patches, cis, strict=True):
            if not ci:
                patch.set_alpha(0.45)  # pale: no interval, so no claim either way
        right = max([right, *scores, *[ci[1] for ci in cis if ci]])
    ax.set_xlim(0, right * 1.02)
    ax.grid(axis="x", alpha=0.3)


def _drawn_intervals(ax) -> int:
    """Error bars actually drawn in `ax`, read back from its containers (a missing interval leaves an empty segment)."""
    count = 0
    for container in ax.containers:
        if getattr(container, "errorbar", None) is not None:
            for collection in container.errorbar.lines[2]:
                count += sum(1 for segment in collection.get_segments() if segment.size and np.isfinite(segment).all())
    return count


def headline_figure(path: Path, runs: list[str], values: dict[str, dict[str, float | None]],
                    intervals: dict[str, dict[str, list[float] | None]], key_sizes: dict[str, dict[str, int | None]],
                    suite_sizes: dict[str, dict[str, int | None]], title: str) -> dict:
    """One panel per suite: its headline metrics as horizontal bars, one bar per run, 95% intervals as error bars,
    the number of examples in the panel title. Returns what was drawn, read back from the figure's axes."""
    panels = figure_panels(list(values))
    if not panels or not runs:
        return {"panels": []}
    plt = _pyplot()
    heights = [0.16 * len(keys) * len(runs) + 0.9 for keys in panels.values()]
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, sum(heights) + 0.9), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (suite, keys) in zip(axes[:, 0], panels.items(), strict=True):
        _draw_panel(ax, keys, runs, values, intervals, colors)
        ax.set_yticks(range(len(keys)))
        ax.set_yticklabels(_metric_labels(keys, key_sizes), fontsize=8)
        ax.invert_yaxis()
        ax.set_title(f"{SUITE_TITLES.get(suite, suite)}: {_sizes_text(suite_sizes.get(suite, {}))}", fontsize=10,
                     loc="left")
    if len(runs) > 1:
        fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="upper right", ncol=min(len(runs), 4), fontsize=9,
                   frameon=False)
    fig.suptitle(title, x=0.01, ha="left", fontsize=11)
    fig.text(0.01, 0.005, "Error bars: 95% bootstrap interval (1,000 seeded redraws of the examples); "
             "none (pale bar) where a metric rests on fewer than ten examples.", fontsize=7, color="0.3")
    fig.tight_layout(rect=(0, 0.02, 1, 0.98))
    fig.savefig(path, dpi=FIGURE_DPI, metadata={"Software": None})
    drawn = {"panels": [{"suite": suite, "title": ax.get_title(loc="left"),
                         "metrics": [t.get_text() for t in ax.get_yticklabels()],
                         "bars": len(ax.patches), "intervals": _drawn_intervals(ax)}
                        for ax, suite in zip(axes[:, 0], panels, strict=True)],
             "runs": list(runs), "pixels": [round(v * FIGURE_DPI) for v in fig.get_size_inches()[::-1]]}
    plt.close(fig)
    return drawn


def write_overview(out: Path, report: dict) -> dict:
    """report.png: the comparison figure for this one run."""
    name = report["model"].get("model") or report["model"].get("api") or "model"
    run = Path(str(name)).name or str(name)
    headline_ = report["headline"]
    return headline_figure(out / "report.png", [run], {k: {run: v} for k, v in headline_.items()},
                           {k: {run: ci} for k, ci in report.get("intervals", {}).items()},
                           {k: {run: n} for k, n in report.get("sample_sizes", {}).items()},
                           {s: {run: n} for s, n in report.get("suite_sizes", {}).items()},
                           f"Evaluation: {name}")


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
    written += _new_suites_charts(charts, suites)
    return written


def _new_suites_charts(charts: Path, suites: dict) -> list[str]:
    written = []
    if "kmmlu" in suites:
        per_task = suites["kmmlu"]["metrics"]["per_task"]
        subjects = sorted({s for e in per_task.values() for s in e.get("per_subject", {})})
        bar_chart(charts / "kmmlu.png", "KMMLU accuracy per subject", subjects,
                  {v: [e.get("per_subject", {}).get(s, {}).get("acc", 0.0) for s in subjects]
                   for v, e in per_task.items()}, "accuracy")
        written.append("charts/kmmlu.png")
    if "kite" in suites:
        per_task = suites["kite"]["metrics"]["per_task"]
        keys = ["prompt_strict", "instruction_strict", "prompt_loose", "instruction_loose"]
        bar_chart(charts / "kite.png", "KITE instruction following", keys,
                  {p: [e[k] for k in keys] for p, e in per_task.items()}, "accuracy")
        written.append("charts/kite.png")
    if "judge" in suites:
        per_task = suites["judge"]["metrics"]["per_task"]
        categories = sorted({c for e in per_task.values() for c in e["per_category"]})
        if categories:
            bar_chart(charts / "judge.png", "Judge score per category (1-10)", categories,
                      {n: [e["per_category"].get(c, {}).get("mean", 0.0) for c in categories]
                       for n, e in per_task.items()}, "mean score", ylim=(0, 10))
            written.append("charts/judge.png")
    if "custom" in suites:
        per_task = suites["custom"]["metrics"]["per_task"]
        bar_chart(charts / "custom.png", "Your benchmarks (primary metric)", list(per_task),
                  {"primary": [e[e["primary"]] for e in per_task.values()]}, "score")
        written.append("charts/custom.png")
    return written


def write_report(out: Path, report: dict, results: list[SuiteResult]) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "report.json", report)
    write_predictions(out / "predictions.jsonl", results)
    (out / "report.md").write_text(markdown(report), encoding="utf-8")
    overview = ["report.png"] if write_overview(out, report)["panels"] else []
    return ["report.json", "predictions.jsonl", "report.md", *overview, *write_charts(out, report)]
