"""Paired bootstrap intervals for the difference between two runs on the same examples.

Two reports of the same suites score the same examples (same data, same seed, same `--limit`
sample). For every headline metric both reports have, and for the task suite's checkable part
(`tasks/checkable/...`: the tasks with an answer to check, not summaries, titles or free
generation), the examples both runs scored are paired by (task, id), redrawn 1,000 times with
replacement, and the metric of each run is recomputed on every redraw as the report computes it
(macro averages and macro-F1 included; `eval/stats.py`). The 95% percentile interval of the
difference says whether it `excludes_zero`. Suite-wide statistics redraw examples across the
whole suite, not within each task: with one or two test examples per task (the demo's split)
that would leave nothing to vary. Redraws are seeded by the metric's name.
"""

from __future__ import annotations

import json
from pathlib import Path

from kositp.errors import KositpError
from kositp.eval import stats

RESAMPLES = stats.N_RESAMPLES
SEED = 0
CHECKABLE_KEYS = ("tasks/checkable/mean_primary", "tasks/checkable/valid_rate")


def load_examples(report_dir: Path) -> list[dict] | None:
    """The rows of `report_dir`/predictions.jsonl (None when the folder has none)."""
    path = Path(report_dir) / "predictions.jsonl"
    if not path.is_file():
        return None
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise KositpError(f"{path}:{number}: malformed JSON ({exc.msg})") from None
    return rows


def _identities(rows: list[dict]) -> list[tuple[str, str, int]]:
    """(task, id, occurrence): ids repeat across tasks, and a benchmark may repeat one within a task."""
    seen: dict[tuple[str, str], int] = {}
    found = []
    for row in rows:
        base = (str(row.get("task")), str(row.get("id")))
        seen[base] = seen.get(base, 0) + 1
        found.append((*base, seen[base]))
    return found


def paired_keys(headline_a: dict, headline_b: dict) -> list[str]:
    """The headline metrics both reports have, the task suite's checkable part right after its summary."""
    keys = [k for k in headline_a if k in headline_b]
    summary = [keys.index(k) for k in ("tasks/mean_primary", "tasks/record_mean_primary", "tasks/valid_rate")
               if k in keys]
    if summary:
        keys[max(summary) + 1:max(summary) + 1] = CHECKABLE_KEYS
    return keys


def paired_bootstrap(examples_a: list[dict], examples_b: list[dict], keys: list[str], suites_a: dict | None = None,
                     suites_b: dict | None = None, resamples: int = RESAMPLES, seed: int = SEED) -> dict[str, dict]:
    """key -> {difference a - b, ci95, n, excludes_zero} on the examples both runs scored."""
    result = {}
    for key in keys:
        rows_a, rows_b = stats.rows_for(key, examples_a), stats.rows_for(key, examples_b)
        by_id_b = dict(zip(_identities(rows_b), rows_b, strict=True))
        pairs = [(row, by_id_b[ident]) for ident, row in zip(_identities(rows_a), rows_a, strict=True)
                 if ident in by_id_b]
        if len(pairs) < stats.MIN_EXAMPLES:
            continue
        stat_a = stats.statistic(key, [a for a, _ in pairs], suites_a)
        stat_b = stats.statistic(key, [b for _, b in pairs], suites_b)
        if stat_a is None or stat_b is None:
            continue
        found = stats.paired_difference(stat_a, stat_b, key, seed, resamples)
        if found is not None:
            result[key] = found
    return result


def pairwise(report_dirs: list[Path], names: list[str], reports: list[dict], examples: list[list[dict] | None],
             resamples: int = RESAMPLES, seed: int = SEED) -> list[dict]:
    """Every later run against every earlier one (run order = the order given), where both have examples."""
    comparisons = []
    for j in range(len(names)):
        for i in range(j):
            if examples[i] and examples[j]:
                keys = paired_keys(reports[j].get("headline", {}), reports[i].get("headline", {}))
                found = paired_bootstrap(examples[j], examples[i], keys, reports[j].get("suites"),
                                         reports[i].get("suites"), resamples, seed)
                if found:
                    comparisons.append({"run": names[j], "versus": names[i], "statistics": found})
    return comparisons


def difference_text(stat: dict | None, digits: int = 4) -> str:
    """`**+0.1810** [+0.1060, +0.2822] ↑`: bold with an arrow when the interval excludes zero."""
    if stat is None:
        return "–"
    low, high = stat["ci95"]
    value = f"{stat['difference']:+.{digits}f}"
    if stat["excludes_zero"]:
        return f"**{value}** [{low:+.{digits}f}, {high:+.{digits}f}] {'↑' if low > 0 else '↓'}"
    return f"{value} [{low:+.{digits}f}, {high:+.{digits}f}]"


def markdown(comparisons: list[dict], resamples: int = RESAMPLES, seed: int = SEED) -> list[str]:
    """One row per metric, one column per pair of runs; per-task rows of the task suite in a table of their own."""
    if not comparisons:
        return []
    columns = [f"{c['run']} − {c['versus']}" for c in comparisons]
    keys: list[str] = []
    for comparison in comparisons:
        keys += [k for k in comparison["statistics"] if k not in keys]
    per_task = [k for k in keys if k.startswith("tasks/") and stats.scope(k)[1] is not None]
    main = [k for k in keys if k not in per_task]

    def table(chosen: list[str]) -> list[str]:
        lines = ["| metric | examples | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
        for key in chosen:
            found = [c["statistics"].get(key) for c in comparisons]
            sizes = sorted({f["n"] for f in found if f})
            lines.append(f"| {key} | {'/'.join(map(str, sizes))} | " + " | ".join(difference_text(f) for f in found)
                         + " |")
        return lines

    lines = ["## Paired differences between runs (95% paired bootstrap)", "",
             f"`run − versus` on the examples both runs scored, redrawn {resamples:,} times with replacement (seed "
             f"{seed}); each metric recomputed on every redraw as the report computes it. **Bold** with ↑/↓: the "
             "interval excludes zero. `tasks/checkable/...`: the tasks with an answer to check (not summaries, "
             "titles, long answers or free generation). For `invalid_rate` lower is better.", ""]
    lines += table(main) + [""]
    if per_task:
        lines += ["### Per held-out task", "", *table(per_task), ""]
    return lines
