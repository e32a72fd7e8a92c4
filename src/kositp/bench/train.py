"""`kositp bench train`: plain TRL SFT against kositp's SFT, same model, data, steps, seed and loss mask.

Both variants train the same LoRA adapter (the recipe's rank, alpha, dropout, targets) on the same
records in the same order with the same chat template (kositp's, with `{% generation %}` markers,
so the loss is on assistant tokens only), the same optimiser and schedule:

- `baseline`: `trl.SFTTrainer` as it comes -- padded batches, gradient checkpointing (TRL's
  default). On CPU: fp32, the model's own forward and loss (logits over the whole vocabulary at
  every position, padding included): TRL 1.15's default fused LM head needs its Triton kernel,
  which the CPU torch wheel lacks (the trainer fails on its first step there), so the baseline
  takes the loss the model's own forward returns -- what `transformers.Trainer` and TRL before the
  fused head did. On CUDA: exactly TRL's defaults (checkpoint dtype, bf16, its Triton fused head).
- `kositp`: exactly what `kositp train sft` builds (`build_sft_trainer`) from the recipe
  (the shipped `sft/demo` recipe by default): padding-free batches, bf16 autocast where the CPU has it,
  logits only at loss-bearing positions; on CUDA with `unsloth` installed, Unsloth's loader and
  kernels (`backend: auto`).
- `kositp-fp32`, `kositp-bf16` (optional): the `kositp` side with `trainer.bf16` pinned off / on, to
  check on the machine at hand what `bf16: auto` decided (the report says which dtype `auto` picks here
  and whether the measured ratio agrees).
- `trl-fused` (optional): TRL's own defaults with kositp's PyTorch kernel in TRL's Triton slot
  (padded, fp32, fused head): separates what the fused head gives from padding-free and bf16.

Every run is a fresh subprocess (so its peak RSS is its own), variants alternate to spread the
noise of a shared machine, and the figures are medians over runs. Each child also records a
checksum of the label ids that carry loss, in order: equal checksums prove both sides trained on
the same tokens with the same mask.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import typer

from kositp.bench.machine import load_average, machine_info, over_cores
from kositp.errors import KositpError
from kositp.recipes import RECIPES_DIR, resolve

VARIANTS = ("baseline", "kositp", "kositp-fp32", "kositp-bf16", "trl-fused")
# The kositp side with its training dtype pinned, applied after any --set so the name holds.
DTYPE_PINS = {"kositp-fp32": "trainer.bf16=false", "kositp-bf16": "trainer.bf16=true"}
DEFAULT_RECIPE = RECIPES_DIR / "sft" / "demo.yaml"
GOAL_TOKENS_RATIO = 2.0
GOAL_MEMORY_RATIO = 0.6
LOSS_TOLERANCE = 0.03  # relative; bf16 autocast against fp32 moves the loss by well under this


# ---------------------------------------------------------------------------------------------- child


class RecordingCollator:
    """Wraps the trainer's collator: counts non-pad tokens and hashes the loss-bearing label ids per batch."""

    def __init__(self, inner):
        self.inner = inner
        self.batches: list[dict[str, Any]] = []

    def __call__(self, features):
        batch = self.inner(features)
        labels = batch["labels"]
        kept = labels[labels != -100]
        if "attention_mask" in batch:
            tokens = int(batch["attention_mask"].sum())
        else:  # padding-free: one row, no padding
            tokens = int(batch["input_ids"].numel())
        self.batches.append({
            "tokens": tokens,
            "positions": int(batch["input_ids"].numel()),
            "loss_tokens": int(kept.numel()),
            "label_ids": kept.tolist(),
        })
        return batch


def _step_timer():
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times: list[float] = []
            self.cpu_times: list[float] = []
            self.losses: list[float] = []
            self._t0 = self._c0 = 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            self._t0, self._c0 = time.perf_counter(), time.process_time()

        def on_step_end(self, args, state, control, **kwargs):
            self.times.append(time.perf_counter() - self._t0)
            self.cpu_times.append(time.process_time() - self._c0)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.losses.append(float(logs["loss"]))

    return StepTimer()


def _rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _kositp_config(spec: dict[str, Any], out: Path):
    from kositp.config import load_config
    from kositp.train.sft import SFTConfig

    overrides = [
        f"model={spec['model']}", f"data={spec['data']}", f"out={out}", f"trainer.max_steps={spec['steps']}",
        f"trainer.per_device_train_batch_size={spec['batch_size']}", "trainer.gradient_accumulation_steps=1",
        f"max_train_samples={spec['steps'] * spec['batch_size']}", f"seed={spec['seed']}",
        "trainer.logging_steps=1", "progress=false", f"trainer.save_steps={spec['steps'] + 1}",
        "trainer.eval_steps=null", "max_eval_samples=1", "overwrite=true",
    ]
    pin = [DTYPE_PINS[spec["variant"]]] if spec.get("variant") in DTYPE_PINS else []
    return load_config(SFTConfig, Path(spec["recipe"]), overrides + list(spec.get("overrides", [])) + pin)


def _build_baseline(spec: dict[str, Any], cfg, out: Path, callbacks: list, fused: bool):
    """Plain TRL: same model, LoRA, chat template, rows, optimiser and schedule; TRL's defaults for the rest."""
    import torch
    from datasets import Dataset
    from trl import SFTConfig as TRLSFTConfig
    from trl import SFTTrainer

    from kositp.models import load_model
    from kositp.train.common import filter_by_length
    from kositp.train.modeling import align_model_with_tokenizer, lora_config, prepare_tokenizer
    from kositp.train.sft import load_sft_rows

    # On CUDA, TRL's defaults run as they come: the checkpoint's own dtype (transformers 5's "auto"),
    # bf16 autocast and TRL's Triton fused LM head. On CPU: fp32, and the model's own full-logits loss.
    cuda = torch.cuda.is_available()
    tokenizer, fmt, added = prepare_tokenizer(cfg.model, cfg.chat_format)
    model = load_model(cfg.model, "auto" if cuda else "float32")
    align_model_with_tokenizer(model, tokenizer, fmt, added)
    rows, _ = load_sft_rows(cfg)
    rows, _ = filter_by_length(rows, tokenizer, cfg.max_length)  # the same records kositp keeps
    args = TRLSFTConfig(
        output_dir=str(out / "checkpoints"), max_steps=cfg.trainer.max_steps,
        per_device_train_batch_size=cfg.trainer.per_device_train_batch_size, gradient_accumulation_steps=1,
        learning_rate=cfg.trainer.learning_rate, lr_scheduler_type=cfg.trainer.lr_scheduler_type,
        warmup_steps=cfg.trainer.warmup_steps, weight_decay=cfg.trainer.weight_decay,
        max_grad_norm=cfg.trainer.max_grad_norm, optim=cfg.trainer.optim,
        seed=cfg.seed, data_seed=cfg.seed, assistant_only_loss=True, padding_free=False,
        logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True,
        dataloader_num_workers=0, dataset_num_proc=None, **({} if cuda else {"bf16": False, "use_cpu": True}),
    )
    if cuda:
        trainer_cls = SFTTrainer  # plain TRL: its own fused head ("trl-fused" is the same thing here)
    elif fused:  # run_child puts kositp's plain kernel in TRL's slot around train()
        trainer_cls = SFTTrainer
    else:
        trainer_cls = full_logits_trainer_class()
    trainer = trainer_cls(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                          peft_config=lora_config(cfg, added), callbacks=callbacks)
    return trainer


def full_logits_trainer_class():
    """An `SFTTrainer` subclass whose loss is the model's own (full logits): the CPU baseline.

    Built on call, so a process that never trains never imports TRL.
    """
    from transformers import Trainer
    from trl import SFTTrainer

    class FullLogitsSFTTrainer(SFTTrainer):
        """SFTTrainer whose loss is the model's own (full logits, transformers' ForCausalLMLoss)."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            inputs["use_cache"] = False
            return Trainer.compute_loss(self, model, inputs, return_outputs, num_items_in_batch)

    return FullLogitsSFTTrainer


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    """One measured training run in this process; returns its figures (the parent writes them down)."""
    import torch

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(spec["seed"])
    rss_start = _rss_mb()
    from contextlib import nullcontext

    from kositp.train.common import CpuSettings
    from kositp.train.speedups import cpu_speedups

    with tempfile.TemporaryDirectory(prefix="kositp-bench-train-") as tmp:
        out = Path(tmp) / "run"
        cfg = _kositp_config(spec, out)
        is_kositp = spec["variant"].startswith("kositp")
        if is_kositp:  # before the timer's transformers import; the baseline stays plain TRL
            from kositp.train.modeling import import_unsloth_first

            import_unsloth_first(cfg.backend)
        timer = _step_timer()
        if is_kositp:
            from kositp.train.sft import build_sft_trainer

            out.mkdir(parents=True)
            trainer, loaded, stats = build_sft_trainer(cfg, out, [timer])
            backend = loaded.backend
            speedups = cpu_speedups(cfg.cpu, trainer.model)
        else:
            trainer = _build_baseline(spec, cfg, out, [timer], fused=spec["variant"] == "trl-fused")
            backend = "trl"
            fused = spec["variant"] == "trl-fused"
            speedups = cpu_speedups(CpuSettings(fast_lm_head=False), trainer.model) if fused else nullcontext({})
        recorder = RecordingCollator(trainer.data_collator)
        trainer.data_collator = recorder
        with speedups as active:
            frozen_embedding = active.get("frozen_embedding", "kept in the model's dtype")
            rss_loaded = _rss_mb()
            started = time.perf_counter()
            result = trainer.train()
            wall = time.perf_counter() - started
        bf16 = bool(trainer.args.bf16)
    steps = len(timer.times)
    if steps != spec["steps"] or len(recorder.batches) < steps:
        raise RuntimeError(f"expected {spec['steps']} steps, timed {steps} with {len(recorder.batches)} batches")
    batches = recorder.batches[:steps]
    # The first step pays one-off costs (allocator growth, lazy init); leave it out when there are others.
    skip = 1 if steps > 1 else 0
    timed = timer.times[skip:]
    tokens = sum(b["tokens"] for b in batches[skip:])
    digest = hashlib.sha256(json.dumps([b["label_ids"] for b in batches]).encode()).hexdigest()
    return {
        "variant": spec["variant"],
        "backend": backend,
        "frozen_embedding": frozen_embedding,
        "bf16": bf16,
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "threads": torch.get_num_threads(),
        "steps": steps,
        "tokens_per_s": tokens / sum(timed),
        "step_time_s": statistics.median(timed),
        "step_times_s": timer.times,
        # CPU seconds of all this process's threads: on a shared machine, what the work itself cost
        "tokens_per_cpu_s": tokens / sum(timer.cpu_times[skip:]),
        "step_cpu_s": statistics.median(timer.cpu_times[skip:]),
        "wall_s": wall,
        "non_pad_tokens": sum(b["tokens"] for b in batches),
        "positions": sum(b["positions"] for b in batches),
        "loss_tokens": sum(b["loss_tokens"] for b in batches),
        "mask_sha256": digest,
        "losses": timer.losses,
        "final_loss": timer.losses[-1] if timer.losses else None,
        "train_loss": float(result.training_loss),
        "rss_start_mb": rss_start,
        "rss_loaded_mb": rss_loaded,
        "peak_rss_mb": _rss_mb(),
        "peak_vram_mb": torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None,
    }


# --------------------------------------------------------------------------------------------- parent


def _spawn(spec: dict[str, Any], workdir: Path, index: int) -> dict[str, Any]:
    spec_path = workdir / f"spec-{index}-{spec['variant']}.json"
    result_path = spec_path.with_name(spec_path.name.replace("spec-", "result-"))
    spec_path.write_text(json.dumps(spec))
    env = os.environ | {"OMP_NUM_THREADS": str(spec["threads"]), "TOKENIZERS_PARALLELISM": "false",
                        "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "kositp.bench.train", str(spec_path), str(result_path)],
                          env=env, capture_output=True, text=True)
    if proc.returncode != 0 or not result_path.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise KositpError(f"bench train: {spec['variant']} run {index} failed (exit {proc.returncode}): {tail[0]}")
    return json.loads(result_path.read_text())


def _median(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def summarize(runs: list[dict[str, Any]], variants: list[str], auto_dtype: str | None = None) -> dict[str, Any]:
    per: dict[str, dict[str, Any]] = {}
    for v in variants:
        mine = [r for r in runs if r["variant"] == v]
        per[v] = {
            "runs": len(mine),
            "tokens_per_s": _median(mine, "tokens_per_s"),
            "step_time_s": _median(mine, "step_time_s"),
            "tokens_per_cpu_s": _median(mine, "tokens_per_cpu_s"),
            "step_cpu_s": _median(mine, "step_cpu_s"),
            "peak_rss_mb": _median(mine, "peak_rss_mb"),
            "rss_loaded_mb": _median(mine, "rss_loaded_mb"),
            "peak_vram_mb": _median(mine, "peak_vram_mb"),
            "final_loss": _median(mine, "final_loss"),
            "train_loss": _median(mine, "train_loss"),
            "non_pad_tokens": mine[0]["non_pad_tokens"],
            "positions": mine[0]["positions"],
            "loss_tokens": mine[0]["loss_tokens"],
            "mask_sha256": sorted({r["mask_sha256"] for r in mine}),
            "bf16": mine[0]["bf16"],
            "losses_first_run": mine[0]["losses"],
        }
    base, ours = per.get("baseline"), per.get("kositp")
    comparison: dict[str, Any] = {}
    if base and ours:
        mem_key = "peak_vram_mb" if ours["peak_vram_mb"] is not None else "peak_rss_mb"
        comparison = {
            "tokens_per_s_ratio": ours["tokens_per_s"] / base["tokens_per_s"],
            "tokens_per_cpu_s_ratio": ours["tokens_per_cpu_s"] / base["tokens_per_cpu_s"],
            "step_time_ratio": ours["step_time_s"] / base["step_time_s"],
            "memory_metric": mem_key,
            "memory_ratio": ours[mem_key] / base[mem_key],
            "final_loss_rel_diff": abs(ours["final_loss"] - base["final_loss"]) / abs(base["final_loss"]),
            "train_loss_rel_diff": abs(ours["train_loss"] - base["train_loss"]) / abs(base["train_loss"]),
            "loss_tolerance": LOSS_TOLERANCE,
            "masks_match": len(set(base["mask_sha256"]) | set(ours["mask_sha256"])) == 1,
            "loss_tokens_match": base["loss_tokens"] == ours["loss_tokens"],
        }
        comparison["losses_agree"] = comparison["train_loss_rel_diff"] <= LOSS_TOLERANCE
        comparison["goal"] = {"tokens_per_s_ratio": GOAL_TOKENS_RATIO, "memory_ratio": GOAL_MEMORY_RATIO}
        comparison["goal_met"] = (comparison["tokens_per_s_ratio"] >= GOAL_TOKENS_RATIO
                                  and comparison["memory_ratio"] <= GOAL_MEMORY_RATIO)
    return {"variants": per, "comparison": comparison, "dtype": dtype_comparison(per, auto_dtype)}


def dtype_comparison(per: dict[str, dict[str, Any]], auto_dtype: str | None) -> dict[str, Any]:
    """bf16 against fp32 on the kositp side, and whether `bf16: auto`'s choice on this CPU matches it.

    `auto` picks bf16 only when its probe finds it faster by `cpu_dtype.MARGIN`, so it agrees with the
    measurement when it picked bf16 and bf16 was faster, or picked fp32 and bf16 was not faster by that margin.
    """
    from kositp.cpu_dtype import MARGIN

    fp32, bf16 = per.get("kositp-fp32"), per.get("kositp-bf16")
    if not (fp32 and bf16):
        return {}
    ratio = bf16["tokens_per_s"] / fp32["tokens_per_s"]
    faster = "bfloat16" if ratio >= MARGIN else "float32"
    return {
        "bf16_over_fp32_tokens_per_s": ratio,
        "bf16_over_fp32_tokens_per_cpu_s": bf16["tokens_per_cpu_s"] / fp32["tokens_per_cpu_s"],
        "margin": MARGIN,
        "measured_choice": faster,
        "auto_choice": auto_dtype,
        "auto_agrees": None if auto_dtype is None else auto_dtype == faster,
    }


def _fmt(x, digits=2):
    return "—" if x is None else f"{x:,.{digits}f}"


def busy_machine(report: dict[str, Any]) -> bool:
    """Whether other work was running: the bench's own threads never push the 1-minute load past the cores."""
    cores = report["machine"].get("cores") or 1
    return any(over_cores(load, cores) for load in (report["load_before"], report["load_after"]))


def render_markdown(report: dict[str, Any]) -> str:
    s, cmp_, m = report["settings"], report["summary"]["comparison"], report["machine"]
    lines = [
        "# kositp bench train",
        "",
        f"`{report['command']}`",
        "",
        f"Model `{s['model']}`, {s['steps']} steps × batch {s['batch_size']}, seed {s['seed']}, "
        f"{s['runs']} run(s) per variant (medians), {s['threads']} thread(s), recipe `{s['recipe']}`"
        + (f" with {' '.join(s['overrides'])}" if s.get("overrides") else "") + ". The first step of each run "
        "is left out of the speed figures (one-off start-up costs).",
        f"Machine: {m['cpu']} ({', '.join(m.get('cpu_flags') or []) or 'no avx2/avx512/amx flags'}), {m['cores']} cores, "
        f"torch {m['torch']}; load average before "
        f"{report['load_before']}, after {report['load_after']}.",
        "",
    ]
    if busy_machine(report):
        lines += [f"**The machine was busy** (1-minute load average above its {m['cores']} cores before or after): "
                  "other work shared the CPU, so single steps stall and the ratios below are noise-prone; re-run "
                  "on a quiet machine before trusting them.", ""]
    lines += [
        "| variant | bf16 | non-pad tokens/s | tokens/CPU-s | step time (s) | step CPU (s) | peak RSS (MB) "
        "| RSS after load (MB) | final loss | mean loss | loss tokens | positions |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, v in report["summary"]["variants"].items():
        lines.append(
            f"| {name} | {v['bf16']} | {_fmt(v['tokens_per_s'], 1)} | {_fmt(v['tokens_per_cpu_s'], 1)} | "
            f"{_fmt(v['step_time_s'], 3)} | {_fmt(v['step_cpu_s'], 3)} | "
            f"{_fmt(v['peak_rss_mb'], 0)} | {_fmt(v['rss_loaded_mb'], 0)} | {_fmt(v['final_loss'], 4)} | "
            f"{_fmt(v['train_loss'], 4)} | {v['loss_tokens']} | {v['positions']} |")
    embedding = {r["variant"]: r.get("frozen_embedding") for r in report["runs"]}
    lines += ["", "Frozen token embedding: " + "; ".join(f"{k}: {v}" for k, v in embedding.items() if v) + ". "
              "RSS after load counts only the weights touched by then (safetensors are memory-mapped)."]
    if cmp_:
        lines += [
            "",
            f"- tokens/s ratio (kositp / baseline): **{cmp_['tokens_per_s_ratio']:.2f}×** "
            f"(goal ≥ {GOAL_TOKENS_RATIO}×)",
            f"- tokens per CPU-second ratio: {cmp_['tokens_per_cpu_s_ratio']:.2f}× (less sensitive to other load)",
            f"- step time ratio: {cmp_['step_time_ratio']:.2f}×",
            f"- memory ratio ({cmp_['memory_metric']}): **{cmp_['memory_ratio']:.2f}×** (goal ≤ {GOAL_MEMORY_RATIO}×)",
            f"- loss: final-step relative difference {cmp_['final_loss_rel_diff']:.2%}, mean-loss relative "
            f"difference {cmp_['train_loss_rel_diff']:.2%} (tolerance {LOSS_TOLERANCE:.0%}): "
            f"{'agree' if cmp_['losses_agree'] else 'DO NOT agree'}",
            f"- loss masks: {'identical' if cmp_['masks_match'] else 'DIFFERENT'} "
            f"(sha256 of the loss-bearing label ids in order)",
        ]
    dtype = report["summary"].get("dtype")
    if dtype:
        verdict = {True: "agrees", False: "DISAGREES", None: "not resolved"}[dtype["auto_agrees"]]
        lines += [
            "",
            f"- bf16 autocast / fp32 on the kositp side: **{dtype['bf16_over_fp32_tokens_per_s']:.2f}×** tokens/s, "
            f"{dtype['bf16_over_fp32_tokens_per_cpu_s']:.2f}× tokens per CPU-second; faster here by the "
            f"{dtype['margin']}× margin: {dtype['measured_choice']}",
            f"- `bf16: auto` picks {dtype['auto_choice']} on this CPU: {verdict} with the measurement"
            + ("" if dtype["auto_agrees"] is not False else
               " (pin the faster one with KOSITP_CPU_DTYPE, or delete the cached probe result and re-run)"),
        ]
    return "\n".join(lines) + "\n"


def _auto_train_dtype() -> str | None:
    """What `bf16: auto` resolves to for training on this machine (None on CUDA, where it is not the CPU probe)."""
    import torch

    from kositp.cpu_dtype import resolve_cpu_dtype

    return None if torch.cuda.is_available() else resolve_cpu_dtype("train")


def bench_train(
    out: Path = typer.Option(..., "--out", help="Directory for bench_train.json and bench_train.md."),
    model: str = typer.Option("default", "--model", help="Base model (`default` = gemma-3-270m, `tiny`, a path)."),
    data: Path | None = typer.Option(None, "--data", help="Training data (a `kositp data build` directory); "
                                     "default: the demo corpus built into OUT/data with the model's tokenizer."),
    recipe: Path = typer.Option(DEFAULT_RECIPE, "--recipe", help="kositp SFT recipe (name or path) the kositp side runs."),
    steps: int = typer.Option(8, "--steps", min=1, max=10_000, help="Optimizer steps per run."),
    batch_size: int = typer.Option(4, "--batch-size", min=1, max=1024, help="Sequences per step (both sides)."),
    runs: int = typer.Option(3, "--runs", min=1, max=100, help="Runs per variant; medians are reported."),
    seed: int = typer.Option(42, "--seed", help="Seed for the adapter init, data order and dropout."),
    threads: int = typer.Option(0, "--threads", min=0, help="torch/OpenMP threads per run (0 = all cores)."),
    variants: str = typer.Option("baseline,kositp", "--variants",
                                 help=f"Comma-separated, alternated each round: {', '.join(VARIANTS)}."),
    kositp_set: list[str] = typer.Option([], "--set", help="key=value override of the kositp recipe only "
                                         "(repeatable), e.g. --set cpu.fast_lm_head=false to measure one lever."),
    quick: bool = typer.Option(False, "--quick", help="Smoke run: tiny model, 2 steps, 1 run per variant."),
) -> None:
    """Train the same LoRA SFT with plain TRL and with kositp; report tokens/s, step time, peak memory, losses."""
    from rich.console import Console

    from kositp.progress import StageProgress

    console = Console(stderr=True)
    if quick:
        model, steps, runs, recipe = "tiny", 2, 1, DEFAULT_RECIPE.with_name("tiny.yaml")
    chosen = [v.strip() for v in variants.split(",") if v.strip()]
    unknown = sorted(set(chosen) - set(VARIANTS))
    if unknown or not chosen:
        raise KositpError(f"unknown variant(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(VARIANTS)}")
    recipe = resolve(recipe)
    out.mkdir(parents=True, exist_ok=True)
    data = data or ensure_demo_data(out / "data", model, console)
    threads = threads or os.cpu_count() or 1
    spec_base = {"model": model, "data": str(data), "recipe": str(recipe), "steps": steps, "batch_size": batch_size,
                 "seed": seed, "threads": threads, "overrides": list(kositp_set)}
    _check_enough_rows(data, steps * batch_size)
    _kositp_config(spec_base, out / "runs" / "check")  # a bad --set or recipe fails here, in one line
    workdir = out / "runs"
    workdir.mkdir(exist_ok=True)
    load_before = load_average()
    results = []
    order = [(i, chosen if i % 2 == 0 else chosen[::-1]) for i in range(runs)]
    with StageProgress(console, every_n=1, transient=True) as progress:
        task = progress.add_task("bench train", total=runs * len(chosen))
        for i, names in order:
            for name in names:
                progress.update(task, description=f"run {i + 1}/{runs}: {name}")
                results.append(_spawn(spec_base | {"variant": name}, workdir, i))
                last = results[-1]
                progress.advance(task, info=f"{last['tokens_per_s']:.1f} tokens/s, peak RSS {last['peak_rss_mb']:,.0f} MB")
    report = {
        "command": "kositp bench train " + " ".join(sys.argv[3:]) if sys.argv[1:3] == ["bench", "train"] else
        f"kositp bench train --out {out}",
        "settings": spec_base | {"runs": runs, "variants": chosen},
        "machine": machine_info(),
        "load_before": load_before,
        "load_after": load_average(),
        "runs": results,
        "summary": summarize(results, chosen, _auto_train_dtype() if set(DTYPE_PINS) <= set(chosen) else None),
    }
    (out / "bench_train.json").write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
    (out / "bench_train.md").write_text(render_markdown(report), encoding="utf-8")
    console.print(render_markdown(report))
    console.print(f"wrote {out / 'bench_train.json'} and {out / 'bench_train.md'}")


def ensure_demo_data(target: Path, model: str, console) -> Path:
    """The demo corpus built with `model`'s tokenizer into `target`, unless it is there already."""
    if (target / "train.jsonl").is_file():
        return target
    from kositp.config import load_config
    from kositp.data.build import BuildConfig, build

    recipe = DEFAULT_RECIPE.parents[1] / "data" / "demo.yaml"
    console.print(f"building the demo corpus into {target} (tokenizer {model})")
    build(load_config(BuildConfig, recipe, [f"tokenizer={model}"]), target)
    return target


def _check_enough_rows(data: Path, needed: int) -> None:
    train = data / "train.jsonl" if data.is_dir() else data
    if not train.is_file():
        raise KositpError(f"no training data at {train}")
    with open(train, encoding="utf-8") as fh:
        have = sum(1 for line in fh if line.strip())
    if have < needed:
        raise KositpError(f"{train} has {have} records; steps × batch size needs {needed}")


if __name__ == "__main__":  # the measured child: python -m kositp.bench.train SPEC.json RESULT.json
    _spec = json.loads(Path(sys.argv[1]).read_text())
    Path(sys.argv[2]).write_text(json.dumps(run_child(_spec)))
