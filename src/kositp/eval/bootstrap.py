"""Paired bootstrap intervals for the difference between two runs on the same held-out task examples.

Two reports of the `tasks` suite score the same test examples (same data, same seed, same
`--limit` sample). Pairing them by (task, id), the test set is redrawn B times, examples with
replacement, and the difference of each statistic is computed on every redraw as the report
computes it: `mean_primary` (the mean over the tasks present of each task's mean primary metric)
and `valid_rate` (the share of outputs in the task's answer format), over all tasks and over the
tasks with a checkable answer (the kinds not in `OPEN_ENDED_KINDS`). Examples are not redrawn
within each task: with one or two test examples per task (the demo's split) that would leave
nothing to vary. The generator is seeded, so the same reports give the same intervals.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from kositp.errors import KositpError
from kositp.eval.suites.tasks import OPEN_ENDED_KINDS, PRIMARY, kind_of

RESAMPLES = 1000
SEED = 0
STATISTICS = ("mean_primary", "valid_rate")


def task_examples(report_dir: Path) -> dict[tuple[str, str], tuple[float, float]]:
    """(task, id) -> (primary score, valid) for the `tasks` suite in `report_dir`/predictions.jsonl."""
    path = Path(report_dir) / "predictions.jsonl"
    if not path.is_file():
        return {}
    examples = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise KositpError(f"{path}:{number}: malformed JSON ({exc.msg})") from None
        if row.get("suite") != "tasks":
            continue
        primary = PRIMARY[kind_of(row["task"])]
        examples[(row["task"], str(row["id"]))] = (float(row["scores"][primary]), float(row["valid"]))
    return examples


def _macro_mean(diff: np.ndarray, task_of: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """Per redraw (rows of `draws`, example indices): the mean over the tasks drawn of each task's mean."""
    per_task = []
    for task in np.unique(task_of):
        hit = task_of[draws] == task
        count = hit.sum(axis=1)
        total = np.where(hit, diff[draws], 0.0).sum(axis=1)
        per_task.append(np.where(count > 0, total / np.maximum(count, 1), np.nan))
    return np.nanmean(np.stack(per_task), axis=0)


def paired_bootstrap(a: dict, b: dict, resamples: int = RESAMPLES, seed: int = SEED) -> dict:
    """Differences a - b of each statistic on the examples both runs scored, with 95% percentile intervals."""
    keys = sorted(set(a) & set(b))
    result: dict[str, dict] = {}
    subsets = {"all": keys, "checkable": [k for k in keys if kind_of(k[0]) not in OPEN_ENDED_KINDS]}
    for subset, chosen in subsets.items():
        if not chosen:
            continue
        tasks = sorted({k[0] for k in chosen})
        task_of = np.array([tasks.index(k[0]) for k in chosen])
        # one draw per redraw, shared by both statistics: each redraw is one alternative test set
        draws = np.random.default_rng(seed).integers(0, len(chosen), size=(resamples, len(chosen)))
        identity = np.arange(len(chosen))[None, :]
        for column, statistic in enumerate(STATISTICS):
            diff = np.array([a[k][column] - b[k][column] for k in chosen])
            if statistic == "mean_primary":
                observed = float(_macro_mean(diff, task_of, identity)[0])
                samples = _macro_mean(diff, task_of, draws)
            else:
                observed = float(diff.mean())
                samples = diff[draws].mean(axis=1)
            low, high = np.percentile(samples, [2.5, 97.5])
            result[f"{subset}/{statistic}"] = {"difference": observed, "ci95": [float(low), float(high)],
                                               "n": len(chosen), "tasks": len(tasks)}
    return result


def pairwise(report_dirs: list[Path], names: list[str], resamples: int = RESAMPLES, seed: int = SEED) -> list[dict]:
    """Every later run against every earlier one (run order = the order given), where both have task examples."""
    examples = [task_examples(d) for d in report_dirs]
    comparisons = []
    for j in range(len(names)):
        for i in range(j):
            if examples[i] and examples[j]:
                stats = paired_bootstrap(examples[j], examples[i], resamples, seed)
                if stats:
                    comparisons.append({"run": names[j], "versus": names[i], "statistics": stats})
    return comparisons


def markdown(comparisons: list[dict], resamples: int = RESAMPLES, seed: int = SEED) -> list[str]:
    if not comparisons:
        return []
    lines = ["## Paired bootstrap (task suite)", "",
             f"Difference `run - versus` on the test examples both runs scored, the examples redrawn {resamples} "
             f"times with replacement (seed {seed}); 95% percentile interval. `checkable`: tasks with an answer to check "
             "(not summaries, titles, long answers or free generation).", "",
             "| run | versus | statistic | difference | 95% interval | examples |", "|---|---|---|---|---|---|"]
    for comparison in comparisons:
        for name, stat in comparison["statistics"].items():
            low, high = stat["ci95"]
            lines.append(f"| {comparison['run']} | {comparison['versus']} | {name} | {stat['difference']:+.4f} | "
                         f"[{low:+.4f}, {high:+.4f}] | {stat['n']} |")
    return lines + [""]
