"""Paired bootstrap intervals for the difference between two runs on the same held-out task examples.

Two reports of the `tasks` suite score the same test examples (same data, same seed, same
`--limit` sample). Pairing them by (task, id), the difference of a statistic is resampled
B times, examples drawn with replacement *within each task* so every resample keeps the suite's
task mix. The statistics are those of the report: `mean_primary` (the mean over tasks of each
task's primary metric) and `valid_rate` (the share of outputs in the task's answer format), over
all tasks and over the tasks with a checkable answer (the kinds not in `OPEN_ENDED_KINDS`).
The generator is seeded, so the same reports give the same intervals.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from kositp.errors import KositpError
from kositp.eval.suites.tasks import OPEN_ENDED_KINDS, PRIMARY, kind_of

RESAMPLES = 2000
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


def _macro_mean(values: np.ndarray, groups: list[np.ndarray]) -> np.ndarray:
    """Mean over tasks of each task's mean; `values` is [resamples, examples] (or [examples])."""
    return np.mean([values[..., g].mean(axis=-1) for g in groups], axis=0)


def paired_bootstrap(a: dict, b: dict, resamples: int = RESAMPLES, seed: int = SEED) -> dict:
    """Differences a - b of each statistic on the examples both runs scored, with 95% percentile intervals."""
    keys = sorted(set(a) & set(b))
    result: dict[str, dict] = {}
    subsets = {"all": keys, "checkable": [k for k in keys if kind_of(k[0]) not in OPEN_ENDED_KINDS]}
    for subset, chosen in subsets.items():
        if not chosen:
            continue
        tasks = sorted({k[0] for k in chosen})
        groups = [np.array([i for i, k in enumerate(chosen) if k[0] == t]) for t in tasks]
        rng = np.random.default_rng(seed)
        # one index draw per resample, shared by both statistics: each resample is one alternative test set
        draws = np.concatenate([rng.choice(g, size=(resamples, len(g)), replace=True) for g in groups], axis=1)
        regrouped, start = [], 0
        for g in groups:
            regrouped.append(np.arange(start, start + len(g)))
            start += len(g)
        for column, statistic in enumerate(STATISTICS):
            diff = np.array([a[k][column] - b[k][column] for k in chosen])
            if statistic == "mean_primary":
                observed = float(_macro_mean(diff, groups))
                samples = _macro_mean(diff[draws], regrouped)
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
             f"Difference `run - versus` on the test examples both runs scored, resampled {resamples} times within "
             f"each task (seed {seed}); 95% percentile interval. `checkable`: tasks with an answer to check "
             "(not summaries, titles, long answers or free generation).", "",
             "| run | versus | statistic | difference | 95% interval | examples |", "|---|---|---|---|---|---|"]
    for comparison in comparisons:
        for name, stat in comparison["statistics"].items():
            low, high = stat["ci95"]
            lines.append(f"| {comparison['run']} | {comparison['versus']} | {name} | {stat['difference']:+.4f} | "
                         f"[{low:+.4f}, {high:+.4f}] | {stat['n']} |")
    return lines + [""]
