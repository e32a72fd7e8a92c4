"""What every kositp trainer (SFT, preference, RL) does around `trainer.train()`, written once.

`run_training` prepares the run directory (resume or refuse to mix runs), builds the trainer with
kositp's callbacks, writes the recipe beside the run, trains inside the scoped CPU speed-ups and
times it. `finish_training` saves the adapter or model, writes `run.json` and `summary.json` and
draws the loss plot. Each method only says how to build its trainer and what its records hold.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kositp.config import dump_config
from kositp.train.common import TrainConfig, is_main_process, prepare_run_dir


@dataclass
class Trained:
    """A finished `trainer.train()` call and what the run's records need from it."""

    trainer: Any
    loaded: Any
    built: tuple  # whatever else the method's builder returned (stats, base name, parent run, ...)
    result: Any
    speedups: dict
    resume_from: str | None
    wall_s: float
    budget: Any = None  # the TimeBudgetCallback when the recipe sets time_budget_minutes


def run_training(cfg: TrainConfig, out: Path, label: str, build: Callable[[list], tuple]) -> Trained:
    """Train with `build(callbacks) -> (trainer, loaded, *rest)` in `out`; `label` names the progress bar."""
    from kositp.train.callbacks import (
        MetricsCallback,
        RichProgressCallback,
        TimeBudgetCallback,
        tensorboard_callback,
        truncate_metrics,
    )
    from kositp.train.speedups import train_with_speedups

    resume_from = prepare_run_dir(out, cfg.resume, cfg.overwrite)
    if resume_from and is_main_process():
        truncate_metrics(out, int(Path(resume_from).name.split("-")[-1]))
    callbacks: list = [MetricsCallback(out), tensorboard_callback(out)]
    if cfg.progress:
        callbacks.append(RichProgressCallback(label))
    budget = TimeBudgetCallback(cfg.time_budget_minutes) if cfg.time_budget_minutes is not None else None
    if budget is not None:
        callbacks.append(budget)
    trainer, loaded, *rest = build(callbacks)
    if is_main_process():  # written only once the recipe loaded, so a failed start leaves the directory reusable
        dump_config(cfg, out / "config.yaml")
    started = time.perf_counter()
    result, speedups = train_with_speedups(trainer, cfg.cpu, resume_from)
    return Trained(trainer, loaded, tuple(rest), result, speedups, resume_from, time.perf_counter() - started, budget)


def _peak_gpu_memory_mib() -> float | None:
    """This process's peak allocated GPU memory (load and training), or None on CPU."""
    import torch

    if not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return round(torch.cuda.max_memory_allocated() / 2**20, 1)


def finish_training(run: Trained, out: Path, is_peft: bool, record: dict, summary: dict, title: str) -> Path:
    """Save what was trained, then (on the main rank) run.json, summary.json and the loss plot."""
    from kositp.train.artifacts import record_rank, save_trained, write_summary
    from kositp.train.callbacks import plot_metrics
    from kositp.train.record import RunRecord

    trainer, loaded = run.trainer, run.loaded
    record_rank(out, trainer)
    saved = save_trained(trainer, loaded.tokenizer, loaded.chat_format, out, is_peft)
    if trainer.is_world_process_zero():
        budget = run.budget.record() if run.budget else None
        RunRecord(**record, base_model_path=loaded.base_model_path, **{saved: saved},
                  chat_format=loaded.chat_format.name, final_step=trainer.state.global_step,
                  speedups=run.speedups, time_budget=budget).write(out)
        write_summary(out, summary | {
            "time_budget": budget, "backend": loaded.backend, "final_step": trainer.state.global_step,
            "train_loss": run.result.training_loss, "resumed_from": run.resume_from,
            "wall_time_s": round(run.wall_s, 3), "world_size": trainer.args.world_size, "speedups": run.speedups,
            "peak_gpu_memory_mib": _peak_gpu_memory_mib(),
        })
        plot_metrics(out, title)
    return out
