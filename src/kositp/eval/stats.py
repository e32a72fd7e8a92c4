"""Seeded bootstrap intervals for every headline metric, and for the difference of two runs on the same examples.

Every headline statistic is a function of sums over its examples: a mean is sum(score) / n, a
macro-F1 a function of each class's true positives and gold and predicted counts, a macro average
(over tasks or subjects) a function of each group's score sum and count, an instruction-level
rate a ratio of two sums. `statistic(key, rows, suites)` turns a headline key into per-example
columns X (n x k) and a `finish` that maps summed columns to the value, so the statistic is
recomputed on a redraw exactly as the report computes it, macro metrics included. A redraw of the
n examples with replacement is a row c of multiplicities (how often each example was drawn); the
redrawn statistic is finish(c @ X). The same redraws applied to two runs' columns over the same
examples give the paired interval of their difference (`paired_difference`).

Intervals are 95% percentile intervals of 1,000 redraws, seeded by the key, so a report is
byte-identical across runs. A statistic over fewer than `MIN_EXAMPLES` examples gets none (its
size says why): a percentile bootstrap can only redraw what it saw (two examples give at most three
distinct means), so on a handful of examples its interval is far too narrow to mean anything.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

N_RESAMPLES = 1000
LEVEL = 0.95
CHUNK = 100  # redraws per matrix product: bounded memory for large sets (35k KMMLU questions)
RATE_METRICS = ("valid_rate", "scored_rate")
INSTRUCTION_METRICS = {"instruction_strict": "followed_strict", "instruction_loose": "followed_loose"}
CHECKABLE = "checkable"  # tasks/checkable/<statistic>: the tasks with an answer to check (paired comparisons)
TOLERANCE = 1e-5  # report values are rounded to 6 places
MIN_EXAMPLES = 10


@dataclass(frozen=True)
class Statistic:
    """A statistic as per-example columns and the function of their sums that gives its value."""

    columns: np.ndarray  # (n examples, k)
    finish: Callable[[np.ndarray], np.ndarray]  # (r, k) column sums -> (r,) values

    @property
    def n(self) -> int:
        return int(self.columns.shape[0])

    def value(self) -> float:
        return float(self.finish(self.columns.sum(axis=0, keepdims=True))[0])


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den > 0)


def mean_statistic(values: list[float]) -> Statistic:
    return ratio_statistic(values, [1.0] * len(values))


def ratio_statistic(numerators: list[float], denominators: list[float]) -> Statistic:
    """sum(numerators) / sum(denominators) (0 when nothing is in the denominator, as metrics.mean does)."""
    columns = np.column_stack([np.asarray(numerators, float), np.asarray(denominators, float)])
    return Statistic(columns, lambda s: _ratio(s[:, 0], s[:, 1]))


def group_macro_statistic(values: list[float], groups: list[str]) -> Statistic:
    """The mean over the groups drawn of each group's mean (tasks/mean_primary, KMMLU's macro over subjects)."""
    names = sorted(set(groups))
    index = {g: i for i, g in enumerate(names)}
    columns = np.zeros((len(values), 2 * len(names)))
    for row, (value, group) in enumerate(zip(values, groups, strict=True)):
        columns[row, 2 * index[group]] = value
        columns[row, 2 * index[group] + 1] = 1.0

    def finish(s: np.ndarray) -> np.ndarray:
        sums, counts = s[:, 0::2], s[:, 1::2]
        means = np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
        drawn = (counts > 0).sum(axis=1)
        return np.where(drawn > 0, means.sum(axis=1) / np.maximum(drawn, 1), 0.0)

    return Statistic(columns, finish)


def macro_f1_statistic(golds: list, preds: list, labels: list | None, mask: list[bool] | None = None) -> Statistic:
    """metrics.macro_f1 as a function of sums: per class tp, gold count and predicted count.

    `labels` fixes the classes (a prediction outside them, such as an invalid output, is a miss);
    None averages over the classes seen in the redraw, as scikit-learn does. `mask` keeps only
    some examples (valid outputs) while the redraws still run over all of them.
    """
    classes = list(labels) if labels is not None else sorted({*golds, *(p for p in preds if p is not None)}, key=str)
    keep = np.ones(len(golds)) if mask is None else np.asarray(mask, float)
    columns = np.zeros((len(golds), 3 * len(classes)))
    for k, cls in enumerate(classes):
        gold_is = np.array([g == cls for g in golds], float)
        pred_is = np.array([p == cls for p in preds], float)
        columns[:, 3 * k] = gold_is * pred_is * keep
        columns[:, 3 * k + 1] = gold_is * keep
        columns[:, 3 * k + 2] = pred_is * keep

    def finish(s: np.ndarray) -> np.ndarray:
        tp, gold, pred = s[:, 0::3], s[:, 1::3], s[:, 2::3]
        f1 = np.where(tp > 0, _ratio(2 * tp, gold + pred), 0.0)
        if labels is not None:
            return f1.mean(axis=1) if classes else np.zeros(len(s))
        seen = (gold + pred) > 0
        count = seen.sum(axis=1)
        return np.where(count > 0, np.where(seen, f1, 0.0).sum(axis=1) / np.maximum(count, 1), 0.0)

    return Statistic(columns, finish)


# --------------------------------------------------------------------------- headline keys -> statistics


def _primary(task: str) -> str:
    from kositp.eval.suites.tasks import PRIMARY, kind_of

    return PRIMARY[kind_of(task)]


def is_checkable(task: str) -> bool:
    from kositp.eval.suites.tasks import OPEN_ENDED_KINDS, kind_of

    return kind_of(task) not in OPEN_ENDED_KINDS


def scope(key: str) -> tuple[str, str | None]:
    """(suite, task) whose examples a key is computed on; task None: the whole suite (or its checkable part)."""
    parts = key.split("/")
    if len(parts) == 3 and not (parts[0] == "tasks" and parts[1] == CHECKABLE):
        return parts[0], parts[1]
    return parts[0], None


def rows_for(key: str, examples: list[dict]) -> list[dict]:
    """The examples behind `key`, in file order."""
    suite, task = scope(key)
    rows = [e for e in examples if e.get("suite") == suite and (task is None or str(e.get("task")) == task)]
    if key.startswith(f"tasks/{CHECKABLE}/"):
        rows = [e for e in rows if is_checkable(e["task"])]
    return rows


_MISSING = object()


def _classes(rows: list[dict]) -> tuple[list, list] | None:
    """Gold and predicted class per example (None: an invalid output); None when the rows do not carry them."""
    golds = [e.get("label", e.get("gold")) for e in rows]
    preds = [e["prediction"] if "prediction" in e else e.get("parsed", _MISSING) for e in rows]
    return (golds, preds) if all(p is not _MISSING for p in preds) else None


def _fixed_labels(suite: str, task: str, suites: dict | None) -> list | None:
    """The class list a macro-F1 averages over, as the suite scored it (None when the report does not say)."""
    suites = suites or {}
    if suite == "seed4":
        counts = suites.get("seed4", {}).get("metrics", {}).get("per_task", {}).get(task, {}).get("label_counts")
        return list(counts) if counts else None
    if suite == "custom":
        labels = suites.get("custom", {}).get("settings", {}).get("specs", {}).get(task, {}).get("labels")
        return list(labels) if labels else None
    return None


def statistic(key: str, rows: list[dict], suites: dict | None = None) -> Statistic | None:
    """The statistic behind headline `key` on `rows` (the examples `rows_for` selects); None if they cannot give it."""
    if not rows:
        return None
    metric = key.split("/")[-1]
    if scope(key)[1] is None:  # suite-level: tasks/mean_primary, tasks/valid_rate and their checkable parts
        if metric == "mean_primary":
            return group_macro_statistic([float(e["scores"][_primary(e["task"])]) for e in rows],
                                         [str(e["task"]) for e in rows])
        if metric == "record_mean_primary":
            return mean_statistic([float(e["scores"][_primary(e["task"])]) for e in rows])
        return mean_statistic([float(e["valid"]) for e in rows]) if metric == "valid_rate" else None
    suite, task = scope(key)
    if metric == "invalid_rate":
        return mean_statistic([1.0 - float(e["valid"]) for e in rows])
    if metric in RATE_METRICS:
        return mean_statistic([float(e["valid"]) for e in rows])
    if metric in ("macro_f1", "macro_f1_valid_only", "f1"):
        classes = _classes(rows)
        if classes is None:
            return None
        golds, preds = classes
        if metric == "macro_f1":
            labels = _fixed_labels(suite, task, suites) or sorted(set(golds), key=str)
            return macro_f1_statistic(golds, preds, labels)
        mask = [p is not None for p in preds] if metric == "macro_f1_valid_only" else None
        return macro_f1_statistic(golds, preds, None, mask)
    if metric == "macro_acc":
        if not all("subject" in e for e in rows):
            return None
        return group_macro_statistic([float(e["scores"]["correct"]) for e in rows], [str(e["subject"]) for e in rows])
    if metric in INSTRUCTION_METRICS:
        field = INSTRUCTION_METRICS[metric]
        if not all(field in e for e in rows):
            return None
        return ratio_statistic([float(sum(e[field])) for e in rows], [float(len(e[field])) for e in rows])
    if metric == "mean_score":
        scores = [e["scores"].get("score") for e in rows]
        return ratio_statistic([s or 0.0 for s in scores], [float(s is not None) for s in scores])
    score = "correct" if metric == "acc" else metric
    values = [e.get("scores", {}).get(score) for e in rows]
    return None if any(v is None for v in values) else mean_statistic([float(v) for v in values])


# --------------------------------------------------------------------------- redraws and intervals


def _rng(key: str, seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(key.encode("utf-8"))])


def redraw_counts(n: int, rows: int, rng: np.random.Generator) -> np.ndarray:
    """(rows, n) multiplicities: row r says how often each of the n examples is in redraw r."""
    draws = rng.integers(0, n, size=(rows, n)) + n * np.arange(rows)[:, None]
    return np.bincount(draws.ravel(), minlength=rows * n).reshape(rows, n).astype(np.float64)


def redrawn(stats: list[Statistic], key: str, seed: int = 0, n_resamples: int = N_RESAMPLES) -> list[np.ndarray]:
    """Each statistic on the same `n_resamples` redraws of their examples (aligned row for row)."""
    n = stats[0].n
    rng = _rng(key, seed)
    samples = [np.empty(n_resamples) for _ in stats]
    for start in range(0, n_resamples, CHUNK):
        stop = min(start + CHUNK, n_resamples)
        counts = redraw_counts(n, stop - start, rng)
        for values, stat in zip(samples, stats, strict=True):
            values[start:stop] = stat.finish(counts @ stat.columns)
    return samples


def percentile_interval(samples: np.ndarray, level: float = LEVEL) -> list[float]:
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return [float(low), float(high)]


def interval(stat: Statistic, key: str, seed: int = 0, n_resamples: int = N_RESAMPLES) -> list[float] | None:
    """[low, high] 95% percentile interval of `stat` (None for fewer than MIN_EXAMPLES examples)."""
    if stat.n < MIN_EXAMPLES:
        return None
    (samples,) = redrawn([stat], key, seed, n_resamples)
    return percentile_interval(samples)


def paired_difference(a: Statistic, b: Statistic, key: str, seed: int = 0,
                      n_resamples: int = N_RESAMPLES) -> dict | None:
    """a - b on the same examples (row i of both is the same example), with its 95% interval."""
    if a.n != b.n:
        raise ValueError("paired statistics need the same examples")
    if a.n < MIN_EXAMPLES:
        return None
    samples_a, samples_b = redrawn([a, b], key, seed, n_resamples)
    low, high = percentile_interval(samples_a - samples_b)
    return {"difference": a.value() - b.value(), "ci95": [low, high], "n": a.n,
            "excludes_zero": bool(low > 0 or high < 0)}


def headline_uncertainty(headline: dict[str, float], examples: list[dict], suites: dict | None = None,
                         seed: int = 0) -> tuple[dict[str, list[float]], dict[str, int]]:
    """(intervals, sample sizes) of the headline keys the examples can recompute.

    A key gets a size when its statistic, recomputed from the examples, equals the report's value;
    an interval as well when it rests on MIN_EXAMPLES or more.
    """
    by_scope: dict[tuple[str, str | None], list[dict]] = {}
    for example in examples:
        by_scope.setdefault((example.get("suite"), str(example.get("task"))), []).append(example)
        by_scope.setdefault((example.get("suite"), None), []).append(example)
    intervals, sizes = {}, {}
    for key, value in headline.items():
        suite, task = scope(key)
        rows = by_scope.get((suite, task), [])
        stat = statistic(key, rows, suites) if rows else None
        if stat is None or value is None or abs(stat.value() - value) > TOLERANCE:
            continue
        sizes[key] = stat.n
        found = interval(stat, key, seed)
        if found is not None:
            intervals[key] = found
    return intervals, sizes

