"""Trainer callbacks: metrics.jsonl, TensorBoard (transformers' own logger), a progress bar, the loss-curve PNG.

Only the main process writes files; under `accelerate launch` every rank trains but rank 0 logs.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "loss.png"
TB_DIR = "tb"
# Keys renamed for metrics.jsonl; everything else numeric is kept under its trainer name.
RENAME = {"learning_rate": "lr", "num_input_tokens_seen": "tokens_seen"}


class MetricsCallback(TrainerCallback):
    """One JSON line per log event: step, loss, lr, tokens seen, seconds per step, and method metrics."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / METRICS_FILE
        self._step_started = 0.0
        self._step_times: list[float] = []

    def on_step_begin(self, args, state, control, **kwargs):
        self._step_started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self._step_times.append(time.perf_counter() - self._step_started)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        record: dict[str, Any] = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4)}
        for key, value in logs.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                record[RENAME.get(key, key)] = value
        if "tokens_seen" not in record and state.num_input_tokens_seen:
            record["tokens_seen"] = int(state.num_input_tokens_seen)
        is_eval = any(k.startswith("eval_") for k in record)
        record["split"] = "eval" if is_eval else "train"
        if not is_eval and self._step_times:
            record["step_time_s"] = round(sum(self._step_times) / len(self._step_times), 6)
            self._step_times.clear()
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


class TimeBudgetCallback(TrainerCallback):
    """Stop training once `minutes` of training steps have passed: the step under way ends, a checkpoint is saved
    (so `resume=true` can continue the schedule) and the run ends as if it had reached max_steps.

    Under `accelerate launch` every rank must stop at the same step, or the others wait for it in the next
    all-reduce: the ranks agree on the decision (any rank over budget stops all).
    """

    def __init__(self, minutes: float):
        self.minutes = minutes
        self.started: float | None = None
        self.stopped_at: int | None = None
        self.planned: int | None = None
        self.done: int | None = None
        self.elapsed_s = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.perf_counter()
        self.planned = state.max_steps

    def on_train_end(self, args, state, control, **kwargs):
        self.done = state.global_step

    def on_step_end(self, args, state, control, **kwargs):
        self.elapsed_s = time.perf_counter() - self.started
        if self.stopped_at is None and state.global_step < state.max_steps and _any_rank(
                self.elapsed_s >= self.minutes * 60, args.device):
            self.stopped_at = state.global_step
            control.should_training_stop = True
            control.should_save = True

    def record(self) -> dict[str, Any]:
        """What run.json keeps: the budget, whether training stopped on it, steps done and planned."""
        return {"minutes": self.minutes, "stopped_on_budget": self.stopped_at is not None,
                "steps_done": self.done, "steps_planned": self.planned,
                "training_s": round(self.elapsed_s, 1)}


def _any_rank(flag: bool, device) -> bool:
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    import torch

    agreed = torch.tensor([int(flag)], device=device)
    dist.all_reduce(agreed, op=dist.ReduceOp.MAX)
    return bool(agreed.item())


def tensorboard_callback(run_dir: Path):
    """transformers' TensorBoard logger, writing to RUN/tb. Added as a callback rather than through
    `report_to="tensorboard"`, whose directory is process-wide (TENSORBOARD_LOGGING_DIR) or under the checkpoints."""
    from transformers.integrations import TensorBoardCallback

    callback = TensorBoardCallback()
    callback.logging_dir = str(Path(run_dir) / TB_DIR)
    return callback


class RichProgressCallback(TrainerCallback):
    """Step and loss on stderr (replaces transformers' tqdm): a bar on a terminal, a line every 30 s in a log."""

    def __init__(self, description: str):
        self.description = description
        self._progress = None
        self._task = None
        self._last = ""

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        from kositp.progress import StageProgress

        self._progress = StageProgress().start()
        self._task = self._progress.add_task(self.description, total=state.max_steps, completed=state.global_step)

    def on_step_end(self, args, state, control, **kwargs):
        if self._progress is not None:
            self._progress.update(self._task, completed=state.global_step, info=self._last)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self._progress is None or not logs:
            return
        parts = []
        for key, label in (("loss", "loss"), ("eval_loss", "eval"), ("rewards/accuracies", "acc"), ("reward", "reward")):
            if key in logs:
                parts.append(f"{label} {logs[key]:.4f}")
        if parts:
            self._last = " ".join(parts)
            self._progress.update(self._task, info=self._last)

    def on_train_end(self, args, state, control, **kwargs):
        if self._progress is not None:
            self._progress.update(self._task, completed=state.global_step)
            self._progress.stop()
            self._progress = None


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def truncate_metrics(run_dir: Path, last_step: int) -> None:
    """On resume, forget log lines written after the checkpoint we restart from (they will be redone)."""
    path = Path(run_dir) / METRICS_FILE
    if path.is_file():
        kept = [r for r in read_metrics(run_dir) if r["step"] <= last_step]
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept), encoding="utf-8")


def plot_metrics(run_dir: Path, title: str) -> Path | None:
    """loss.png: train/eval loss, plus a reward panel: accuracy and margin for preference runs, each reward
    function and their weighted sum for RL runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(run_dir)
    train = [r for r in rows if r.get("split") == "train" and "loss" in r]
    if not train:
        return None
    evals = [r for r in rows if "eval_loss" in r]
    reward = [r for r in train if "rewards/accuracies" in r]
    # RL runs log each reward function as rewards/<name>/mean, beside their weighted sum `reward`
    rl_rewards = sorted({k for r in train for k in r if k.startswith("rewards/") and k.endswith("/mean")})
    panels = 2 if reward or rl_rewards else 1
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4), squeeze=False)
    ax = axes[0][0]
    ax.plot([r["step"] for r in train], [r["loss"] for r in train], label="train loss")
    if evals:
        ax.plot([r["step"] for r in evals], [r["eval_loss"] for r in evals], "o-", label="eval loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    if reward:
        ax2 = axes[0][1]
        steps = [r["step"] for r in reward]
        ax2.plot(steps, [r["rewards/accuracies"] for r in reward], label="reward accuracy")
        if all("rewards/margins" in r for r in reward):
            ax2.plot(steps, [r["rewards/margins"] for r in reward], label="reward margin")
        ax2.set_xlabel("step")
        ax2.set_title("preference rewards")
        ax2.grid(alpha=0.3)
        ax2.legend()
    elif rl_rewards:
        ax2 = axes[0][1]
        for key in ["reward", *rl_rewards]:
            points = [(r["step"], r[key]) for r in train if key in r]
            ax2.plot([s for s, _ in points], [v for _, v in points],
                     label="weighted sum" if key == "reward" else key.split("/")[1])
        ax2.set_xlabel("step")
        ax2.set_title("rewards (mean over the step's completions)")
        ax2.grid(alpha=0.3)
        ax2.legend()
    fig.tight_layout()
    out = Path(run_dir) / PLOT_FILE
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
