"""Online RL (`kositp train rl`): GRPO with TRL's GRPOTrainer, rewarded by the task suite's own scorers.

Each step takes `prompts_per_step` prompts from the training split of a `kositp data build`
folder, samples `num_generations` replies to each in one batched `generate` call, scores every
reply with the rewards of `kositp.train.rewards` (the eval's metric against the gold answer, the
eval's answer format, Korean-only script, optionally length), and moves the policy toward the
replies that beat their group's mean. Continuing an SFT run (`--adapter RUN`), its adapter is
trained further; with `beta > 0` TRL keeps a frozen copy of it as the KL reference (a second
small adapter, not a second model), and only the trained adapter is saved.
"""

from __future__ import annotations

import functools
from collections import Counter
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from kositp.errors import KositpError
from kositp.train.common import TrainConfig, TrainerSettings, make_trainer, trl_arguments
from kositp.train.record import ADAPTER_DIR

METHODS = ("grpo",)


class RLTrainerSettings(TrainerSettings):
    """Trainer settings with RL defaults. A step is `prompts_per_step x num_generations` completions;
    the micro-batch size below splits them, and the accumulation steps follow from the two."""

    learning_rate: float = Field(1e-5, gt=0, lt=1, description="Peak learning rate (RL moves a trained adapter "
                                 "gently; TRL's own default is 1e-6).")
    lr_scheduler_type: str = Field("constant_with_warmup", description="transformers scheduler name.")
    warmup_steps: float = Field(0, ge=0, description="Warm-up: a step count (>= 1) or a fraction of all steps (< 1).")
    per_device_train_batch_size: int | None = Field(
        None, ge=1, le=4096, description="Completions per forward/backward micro-batch; null: all completions of a "
        "step in one. Must divide prompts_per_step x num_generations.")
    gradient_accumulation_steps: int | None = Field(None, ge=1, le=4096, description="Follows from the step: "
                                                    "prompts_per_step x num_generations / per_device_train_batch_size "
                                                    "(null; any other value must equal it).")
    save_steps: int = Field(10, ge=1, description="Write checkpoints/checkpoint-N every N steps.")


class RLConfig(TrainConfig):
    """Recipe for `kositp train rl`. Field names follow TRL's GRPOConfig where they overlap."""

    method: Literal["grpo"] = Field("grpo", description="RL algorithm (GRPO: group-relative advantages, no value "
                                    "model).")
    model: str | None = Field(None, description="Base model; with sft_run it may be omitted (taken from the run) "
                              "and, when given, must be the run's base model.")
    sft_run: str | None = Field(None, description="SFT run directory to continue (its adapter is trained further; "
                                "with beta > 0 a frozen copy is the KL reference).")
    tasks: list[str] | None = Field(None, description="Tasks whose training prompts are used; null: every task "
                                    "the suite can check (all but summaries, titles, long answers, completion, "
                                    "composition, expansion and paraphrase). Recorded in run.json.")
    rewards: dict[str, float] = Field(
        default_factory=lambda: {"task": 1.0, "format": 0.5, "korean": 0.5, "length": 0.0},
        description="Weight of each reward (task, format, korean, length; kositp/train/rewards.py). A weight of 0 "
        "leaves the reward out (not computed, not logged).")
    num_generations: int = Field(4, ge=2, le=256, description="Completions sampled per prompt (the group whose "
                                 "mean reward is each completion's baseline).")
    prompts_per_step: int = Field(4, ge=1, le=4096, description="Prompts per optimizer step; their "
                                  "prompts_per_step x num_generations completions are generated in one batch.")
    max_completion_length: int = Field(64, ge=1, le=8192, description="Longest sampled reply in tokens (a reply "
                                       "cut here did not end its turn, so the format reward is 0).")
    beta: float = Field(0.0, ge=0, description="KL penalty toward the starting policy; 0 computes no reference "
                        "log-probabilities (one forward pass less per step).")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature of the completions.")
    max_length: int | None = Field(1024, ge=8, description="Longest prompt + max_completion_length in tokens; "
                                   "longer prompts are dropped and counted. null keeps everything.")
    trainer: RLTrainerSettings = Field(default_factory=RLTrainerSettings,
                                       description="Optimisation, schedule, checkpoints and logging (TRL names).")

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, value: list[str] | None) -> list[str] | None:
        from kositp.data.task_names import TASKS

        if value is not None:
            unknown = [t for t in value if t not in TASKS]
            if unknown or not value:
                raise ValueError(f"unknown task(s) {', '.join(unknown) or '(empty list)'}; tasks are the ids of "
                                 "`kositp data formats`")
        return value

    @field_validator("rewards")
    @classmethod
    def _known_rewards(cls, value: dict[str, float]) -> dict[str, float]:
        from kositp.train.rewards import REWARD_NAMES

        unknown = sorted(set(value) - set(REWARD_NAMES))
        if unknown:
            raise ValueError(f"unknown reward(s) {', '.join(unknown)}; choose from {', '.join(REWARD_NAMES)}")
        if not any(value.values()):
            raise ValueError("every reward weight is 0: nothing to learn from")
        return value

    @model_validator(mode="after")
    def _batch_fits_the_step(self) -> RLConfig:
        completions = self.prompts_per_step * self.num_generations
        micro = self.trainer.per_device_train_batch_size or completions
        if completions % micro:
            raise ValueError(f"trainer.per_device_train_batch_size ({micro}) must divide prompts_per_step x "
                             f"num_generations ({completions})")
        accumulation = self.trainer.gradient_accumulation_steps
        if accumulation is not None and accumulation != completions // micro:
            raise ValueError(f"trainer.gradient_accumulation_steps ({accumulation}) follows from prompts_per_step x "
                             f"num_generations / trainer.per_device_train_batch_size ({completions // micro}); "
                             "leave it null")
        return self

    def task_list(self) -> list[str]:
        from kositp.train.rewards import verifiable_tasks

        return list(self.tasks) if self.tasks is not None else verifiable_tasks()


def rl_rows(records: list[dict[str, Any]], tasks: list[str]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Instruction records of `tasks` -> GRPO rows (prompt = the conversation before the gold answer, plus the
    `task` and `gold` columns the rewards read). Returns the rows and how many records each skipped reason took."""
    from kositp.train.data import check_messages

    wanted = set(tasks)
    rows, skipped = [], Counter()
    for rec in records:
        where = rec.get("_where", "record")
        task = rec.get("task")
        if not isinstance(task, str):
            raise KositpError(f"{where}: missing 'task' (RL needs the task of each record to score its replies)")
        if task not in wanted:
            skipped["task not used"] += 1
            continue
        messages = check_messages(rec.get("messages"), where)
        if messages[-1]["role"] != "assistant" or len(messages) < 2:
            raise KositpError(f"{where}: the last message must be the assistant's gold answer")
        rows.append({"prompt": messages[:-1], "task": task, "gold": messages[-1]["content"]})
    return rows, dict(skipped)


def filter_prompts(rows: list[dict], tokenizer, max_length: int | None, max_completion_length: int):
    """Drop (and count) prompts that leave no room for a `max_completion_length` reply within `max_length`."""
    if max_length is None:
        return rows, 0
    kept = []
    for row in rows:
        text = tokenizer.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
        if len(tokenizer(text, add_special_tokens=False)["input_ids"]) + max_completion_length <= max_length:
            kept.append(row)
    return kept, len(rows) - len(kept)


def _grpo_args(cfg: RLConfig, weights: list[float]) -> dict[str, Any]:
    completions = cfg.prompts_per_step * cfg.num_generations
    micro = cfg.trainer.per_device_train_batch_size or completions
    return {
        "per_device_train_batch_size": micro,
        "gradient_accumulation_steps": completions // micro,
        "num_generations": cfg.num_generations,
        "max_completion_length": cfg.max_completion_length,
        "beta": cfg.beta,
        "temperature": cfg.temperature,
        "reward_weights": weights,
        "include_num_input_tokens_seen": "no",  # GRPO counts prompt + completion tokens itself (num_tokens)
        # transformers 5's Trainer sets model.config.use_cache = args.use_cache (False); without this,
        # every sampled token would recompute the whole prompt and the reply so far
        "generation_kwargs": {"use_cache": True},
    }


def build_rl_trainer(cfg: RLConfig, out: Path, callbacks: list | None = None):
    """Data, model, rewards and TRL's GRPOTrainer. Returns (trainer, loaded, stats, base model name, parent run)."""
    from kositp.chat import end_of_turn_ids
    from kositp.train.data import load_records
    from kositp.train.modeling import import_unsloth_first, load_for_training
    from kositp.train.pref import load_with_sft_adapter, resolve_parent
    from kositp.train.rewards import make_rewards

    data, _ = cfg.require_paths()
    parent = resolve_parent(cfg)
    tasks = cfg.task_list()
    rows, skipped = rl_rows(load_records(data, splits=("train",))["train"], tasks)
    if not rows:
        raise KositpError(f"no training records of the RL tasks in {data} (tasks: {', '.join(tasks)})")

    import_unsloth_first(cfg.backend)
    from trl import GRPOConfig, GRPOTrainer

    if parent.adapter_dir is not None:
        loaded = load_with_sft_adapter(cfg, parent.base_source, parent.adapter_dir, parent.adapter_type)
    else:
        loaded = load_for_training(cfg.model_copy(update={"model": parent.base_source}), cfg.max_length)
    rows, too_long = filter_prompts(rows, loaded.tokenizer, cfg.max_length, cfg.max_completion_length)
    rows = rows[: cfg.max_train_samples]
    if not rows:
        raise KositpError(f"no prompts left: all are longer than max_length={cfg.max_length} minus "
                          f"max_completion_length={cfg.max_completion_length} tokens")
    rewards, weights = make_rewards(cfg.rewards, end_of_turn_ids(loaded.tokenizer, loaded.chat_format))
    args = trl_arguments(GRPOConfig, cfg, out, has_eval=False, stage_args=_grpo_args(cfg, weights))
    trainer = make_trainer(functools.partial(GRPOTrainer, reward_funcs=rewards), loaded, args, rows, [], callbacks)
    used = sorted({row["task"] for row in rows}, key=tasks.index)
    stats = {"method": cfg.method, "train_prompts": len(rows), "prompts_per_task": dict(Counter(r["task"] for r in rows)),
             "tasks": used, "skipped_records": skipped, "dropped_too_long": too_long,
             "rewards": dict(zip([r.__name__ for r in rewards], weights, strict=True))}
    return trainer, loaded, stats, parent.base_name, parent.run


def train_rl(cfg: RLConfig) -> Path:
    """Run GRPO as `cfg` says and return the run directory."""
    from kositp.train.modeling import import_unsloth_first

    import_unsloth_first(cfg.backend)  # before the callbacks' transformers import
    from kositp.train.loop import finish_training, run_training

    _, out = cfg.require_paths()
    run = run_training(cfg, out, cfg.method.upper(), lambda callbacks: build_rl_trainer(cfg, out, callbacks))
    stats, base_name, parent = run.built
    is_peft = cfg.uses_peft() or parent is not None and (Path(parent) / ADAPTER_DIR).is_dir()
    record = {"kind": "rl", "method": cfg.method, "base_model": base_name, "parent_run": parent,
              "tasks": stats["tasks"]}
    return finish_training(run, out, is_peft, record=record, summary=stats, title=f"{cfg.method.upper()} {base_name}")
