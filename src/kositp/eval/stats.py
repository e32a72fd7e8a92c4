"""Seeded bootstrap intervals for the report's headline metrics that are means over examples.

A headline `suite/task/metric` gets a 95% percentile interval when the suite's examples of that
task carry the per-example score behind it (`scores[metric]`, or `correct` for acc, `score` for a
judge's mean_score). Metrics that are not means of per-example scores (macro-F1, macro averages
over subjects) get none. The resampling is seeded by the key, so a report is byte-identical across
runs, and `kositp eval compare` prints the intervals beside the values.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

N_RESAMPLES = 1000
SCORE_FOR_METRIC = {"acc": "correct", "mean_score": "score"}


def bootstrap_interval(values: Sequence[float], key: str, seed: int = 0, n_resamples: int = N_RESAMPLES,
                       level: float = 0.95) -> list[float] | None:
    """[low, high] percentile interval of the mean of `values` (None for fewer than two values)."""
    import numpy as np

    if len(values) < 2:
        return None
    data = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng([seed, zlib.crc32(key.encode("utf-8"))])
    means = np.empty(n_resamples)
    for start in range(0, n_resamples, 100):  # bounded memory for large sets (35k KMMLU questions)
        stop = min(start + 100, n_resamples)
        means[start:stop] = data[rng.integers(0, len(data), size=(stop - start, len(data)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return [float(low), float(high)]


def headline_intervals(headline: dict[str, float], examples: list[dict], seed: int = 0) -> dict[str, list[float]]:
    by_task: dict[tuple[str, str], list[dict]] = {}
    for example in examples:
        by_task.setdefault((example["suite"], str(example["task"])), []).append(example)
    intervals = {}
    for key in headline:
        parts = key.split("/")
        if len(parts) != 3:
            continue
        suite, task, metric = parts
        score = SCORE_FOR_METRIC.get(metric, metric)
        values = [e["scores"].get(score) for e in by_task.get((suite, task), [])]
        values = [v for v in values if v is not None]
        if values:
            interval = bootstrap_interval(values, key, seed)
            if interval is not None:
                intervals[key] = interval
    return intervals
