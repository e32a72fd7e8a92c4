"""`kositp bench gpu`: plain TRL against kositp's GPU path, on random-weight models of real shapes.

Three variants train the same LoRA (or QLoRA) adapter on the same records, in the same order, with
the same chat template, loss mask (assistant tokens only), optimiser and schedule:

- `trl-plain`: `trl.SFTTrainer` as a user would write it: bf16, padded batches, TRL's default
  gradient checkpointing, and the model's own loss (logits over the whole vocabulary at every
  position); QLoRA loads the base with transformers' BitsAndBytesConfig (NF4, double quant).
- `kositp-trl`: exactly what `kositp train sft` builds (`build_sft_trainer`) from the recipe with
  `backend=trl`: padding-free batches and TRL's fused LM head.
- `kositp-unsloth`: the same with `backend=unsloth` (Unsloth's loader, LoRA wrapper and kernels).

The models come from `kositp.bench.model_shapes` (Llama-3.1-8B, Llama-3.2-1B and Gemma-3-1B shapes,
random weights; speed and memory do not depend on the weights) with kositp's tiny Korean tokenizer,
and the records are the demo corpus, so sequence lengths are those of real Korean instructions.

Every case runs in a fresh child process under a time cap (Unsloth patches libraries on import,
and each case's peak GPU memory must be its own); the child writes its figures after every step,
so a case stopped at its cap still reports the steps it made. The report (bench_gpu.json and
bench_gpu.md) is rewritten after every case, so a run killed from outside leaves what it measured.
With `--extras`, the same run also checks the user path end to end on the first 1B shape: SFT
with QLoRA through the real `kositp train sft` command, one DPO step on that adapter
(`kositp train pref`), and `kositp export` merging the QLoRA adapter into the 16-bit base.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import typer

from kositp.bench.machine import machine_info
from kositp.errors import KositpError

VARIANTS = ("trl-plain", "kositp-trl", "kositp-unsloth")
ADAPTERS = ("lora", "qlora")
DEFAULT_SHAPES = "llama-3.1-8b,llama-3.2-1b,gemma-3-1b"
DEFAULT_RECIPE = "sft/gpu-8b-qlora"
GOAL_TOKENS_RATIO = 1.8  # kositp's GPU path against plain TRL, on the 8B shape (issue #13)
GOAL_MEMORY_RATIO = 0.5


# ---------------------------------------------------------------------------------------------- child


def _step_recorder(partial: Path):
    """A callback that times each optimizer step and rewrites `partial` (JSON) after each one."""
    from transformers import TrainerCallback

    class StepRecorder(TrainerCallback):
        def __init__(self):
            self.times: list[float] = []
            self.losses: list[float] = []
            self._t0 = 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            self._t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            import torch

            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.times.append(time.perf_counter() - self._t0)
            partial.write_text(json.dumps({"step_times_s": self.times, "losses": self.losses,
                                           "peak_vram_mb": _peak_vram_mb()}))

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.losses.append(float(logs["loss"]))

    return StepRecorder()


def _peak_vram_mb() -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None


def _kositp_config(case: dict[str, Any]):
    from kositp.config import load_config
    from kositp.train.sft import SFTConfig

    backend = {"kositp-unsloth": "unsloth"}.get(case["variant"], "trl")
    steps, batch = case["steps"], case["batch_size"]
    overrides = [
        f"model={case['model_dir']}", f"data={case['data']}", f"out={case['run_dir']}", f"backend={backend}",
        f"adapter_type={case['adapter']}", f"max_length={case['max_length']}", f"seed={case['seed']}",
        f"max_train_samples={steps * batch}", "max_eval_samples=1", "progress=false", "overwrite=true",
        f"trainer.max_steps={steps}", f"trainer.per_device_train_batch_size={batch}",
        "trainer.gradient_accumulation_steps=1", f"trainer.optim={case['optim']}", "trainer.logging_steps=1",
        f"trainer.save_steps={steps + 1}", "trainer.eval_steps=null", "trainer.warmup_steps=0",
    ]
    return load_config(SFTConfig, case["recipe"], overrides + list(case.get("overrides", [])))


def _plain_trl_trainer(cfg, callbacks: list):
    """`trl.SFTTrainer` with TRL's own defaults (bf16 on CUDA, padded, full logits), the recipe's LoRA and schedule."""
    import torch
    from datasets import Dataset
    from trl import SFTConfig as TRLSFTConfig

    from kositp.bench.train import full_logits_trainer_class
    from kositp.models import load_model
    from kositp.train.common import filter_by_length
    from kositp.train.modeling import align_model_with_tokenizer, lora_config, prepare_tokenizer
    from kositp.train.sft import load_sft_rows

    cuda = torch.cuda.is_available()
    tokenizer, fmt, added = prepare_tokenizer(cfg.model, cfg.chat_format)
    kwargs: dict[str, Any] = {}
    if cfg.adapter_type == "qlora":
        from transformers import BitsAndBytesConfig

        kwargs = dict(device_map={"": 0}, quantization_config=BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16))
    model = load_model(cfg.model, "auto" if cuda else "float32", **kwargs)
    align_model_with_tokenizer(model, tokenizer, fmt, added)
    rows, _ = load_sft_rows(cfg)
    rows, _ = filter_by_length(rows, tokenizer, cfg.max_length)  # the records kositp keeps
    t = cfg.trainer
    args = TRLSFTConfig(
        output_dir=str(Path(cfg.out) / "checkpoints"), max_steps=t.max_steps,
        per_device_train_batch_size=t.per_device_train_batch_size, gradient_accumulation_steps=1,
        learning_rate=t.learning_rate, lr_scheduler_type=t.lr_scheduler_type, warmup_steps=t.warmup_steps,
        weight_decay=t.weight_decay, max_grad_norm=t.max_grad_norm, optim=t.optim, seed=cfg.seed,
        data_seed=cfg.seed, assistant_only_loss=True, padding_free=False, max_length=cfg.max_length,
        logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True, dataloader_num_workers=0,
        **({"bf16": True} if cuda else {"bf16": False, "use_cpu": True}),
    )
    return full_logits_trainer_class()(model=model, args=args, train_dataset=Dataset.from_list(rows),
                                        processing_class=tokenizer, peft_config=lora_config(cfg, added),
                                        callbacks=callbacks)


def run_case(case: dict[str, Any], partial: Path) -> dict[str, Any]:
    """One measured training case in this process; returns its figures."""
    cfg = _kositp_config(case)
    if case["variant"] == "kositp-unsloth":  # before anything below imports transformers, TRL or PEFT
        from kositp.train.modeling import import_unsloth_first

        import_unsloth_first(cfg.backend)
    import torch

    from kositp.bench.train import RecordingCollator

    torch.manual_seed(case["seed"])
    recorder = _step_recorder(partial)
    started = time.perf_counter()
    if case["variant"] == "trl-plain":
        trainer, backend = _plain_trl_trainer(cfg, [recorder]), "trl"
    else:
        from kositp.train.sft import build_sft_trainer

        Path(cfg.out).mkdir(parents=True, exist_ok=True)
        trainer, loaded, _ = build_sft_trainer(cfg, Path(cfg.out), [recorder])
        backend = loaded.backend
    collator = RecordingCollator(trainer.data_collator)
    trainer.data_collator = collator
    load_s = time.perf_counter() - started
    if case["variant"] == "trl-plain":
        trainer.train()
    else:  # as `kositp train sft` trains (its CPU kernels where TRL has no Triton; nothing changes on CUDA)
        from kositp.train.speedups import train_with_speedups

        train_with_speedups(trainer, cfg.cpu)
    steps = len(recorder.times)
    batches = collator.batches[:steps]
    skip = 1 if steps > 1 else 0  # the first step pays one-off costs (kernel compilation, allocator growth)
    step_tokens = [b["tokens"] for b in batches]
    return {
        "backend": backend,
        "bf16": bool(trainer.args.bf16),
        "padding_free": bool(getattr(trainer.args, "padding_free", False)),
        "load_s": load_s,
        "steps": steps,
        "tokens_per_s": sum(step_tokens[skip:]) / sum(recorder.times[skip:]) if steps else None,
        "step_time_s": statistics.median(recorder.times[skip:]) if steps else None,
        "step_times_s": recorder.times,
        "step_tokens": step_tokens,
        "losses": recorder.losses,
        "final_loss": recorder.losses[-1] if recorder.losses else None,
        "non_pad_tokens": sum(step_tokens),
        "positions": sum(b["positions"] for b in batches),
        "loss_tokens": sum(b["loss_tokens"] for b in batches),
        "mask_sha256": hashlib.sha256(json.dumps([b["label_ids"] for b in batches]).encode()).hexdigest(),
        "peak_vram_mb": _peak_vram_mb(),
        "peak_reserved_mb": torch.cuda.max_memory_reserved() / 2**20 if torch.cuda.is_available() else None,
    }


def _child(kind: str, spec_path: Path, result_path: Path) -> None:
    spec = json.loads(spec_path.read_text())
    if kind == "model":
        from kositp.bench.model_shapes import write_random_model

        started = time.perf_counter()
        write_random_model(spec["shape"], Path(spec["model_dir"]), spec["tokenizer"], spec["seed"])
        result = {"write_s": time.perf_counter() - started}
    else:
        result = run_case(spec, result_path.with_suffix(".partial.json"))
    result_path.write_text(json.dumps(result))


# --------------------------------------------------------------------------------------------- parent


class Budget:
    """The run's time budget: each child gets the smaller of its own cap and what is left."""

    def __init__(self, seconds: float):
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()


def _run_child(argv: list[str], timeout: float, log: Path) -> tuple[str, float]:
    """Run `argv` in its own process group, killing the whole group at `timeout`; returns (status, seconds)."""
    started = time.perf_counter()
    with open(log, "w", encoding="utf-8") as fh:
        proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = proc.wait(timeout=max(timeout, 1))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return "timeout", time.perf_counter() - started
    return ("ok" if code == 0 else f"failed (exit {code})"), time.perf_counter() - started


def _last_line(log: Path) -> str:
    lines = [line for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _python_child(kind: str, spec: dict[str, Any], workdir: Path, name: str, timeout: float) -> dict[str, Any]:
    spec_path, result_path = workdir / f"{name}.spec.json", workdir / f"{name}.result.json"
    spec_path.write_text(json.dumps(spec))
    status, wall = _run_child([sys.executable, "-m", "kositp.bench.gpu", kind, str(spec_path), str(result_path)],
                              timeout, workdir / f"{name}.log")
    record: dict[str, Any] = {"status": status, "wall_s": wall}
    if result_path.is_file():
        record |= json.loads(result_path.read_text())
    else:
        partial = result_path.with_suffix(".partial.json")
        if partial.is_file():  # stopped mid-run: keep the steps it made
            record |= json.loads(partial.read_text()) | {"partial": True}
        record["error"] = _last_line(workdir / f"{name}.log")
    return record


def _ensure_model(shape: str, models: Path, logs: Path, tokenizer: str, budget: Budget, cap: float,
                  report: dict) -> Path | None:
    model_dir = models / shape
    if (model_dir / "config.json").is_file():
        return model_dir
    record = _python_child("model", {"shape": shape, "model_dir": str(model_dir), "tokenizer": tokenizer, "seed": 0},
                           logs, f"write-{shape}", min(cap, budget.left()))
    report["models"][shape] = record
    return model_dir if record["status"] == "ok" else None


def _extras(model_dir: Path, data: Path, out: Path, logs: Path, recipe: str, sets: list[str], budget: Budget,
            cap: float) -> dict[str, Any]:
    """SFT (QLoRA) -> one DPO step on its adapter (the data's preference.jsonl pairs) -> export merging the
    QLoRA adapter into the 16-bit base, through the real CLI."""
    kositp = [sys.executable, "-m", "kositp.cli"]
    steps = {
        "sft_qlora": kositp + ["train", "sft", "--config", recipe, "--model", str(model_dir), "--data", str(data),
                               "--out", str(out / "sft"), "adapter_type=qlora", "trainer.max_steps=2",
                               "trainer.per_device_train_batch_size=2", "trainer.gradient_accumulation_steps=1",
                               "trainer.save_steps=2", "trainer.eval_steps=null", "max_train_samples=4",
                               "max_eval_samples=1", "max_length=1024", "progress=false", "overwrite=true", *sets],
        "dpo_step": kositp + ["train", "pref", "--config", "pref/demo-dpo", "--method", "dpo", "--model",
                              str(model_dir), "--adapter", str(out / "sft"), "--data", str(data), "--out",
                              str(out / "dpo"), "trainer.max_steps=1", "trainer.per_device_train_batch_size=1",
                              "trainer.gradient_accumulation_steps=1", "trainer.save_steps=1", "progress=false",
                              "overwrite=true", *sets],
        "export_merge": kositp + ["export", "--run", str(out / "sft"), "--out", str(out / "export"), "--dtype",
                                  "bf16", "--no-check-vllm", "--overwrite"],
    }
    results: dict[str, Any] = {}
    for name, argv in steps.items():
        if budget.left() < 30:
            results[name] = {"status": "skipped: out of time"}
            continue
        if any(r["status"] != "ok" for r in results.values()):
            results[name] = {"status": "skipped: an earlier step failed"}
            continue
        status, wall = _run_child(argv, min(cap, budget.left()), logs / f"{name}.log")
        results[name] = {"status": status, "wall_s": wall, "command": " ".join(argv[2:])}
        if status != "ok":
            results[name]["error"] = _last_line(logs / f"{name}.log")
    return results


def _fmt(x, digits=1) -> str:
    return "—" if x is None else f"{x:,.{digits}f}"


def comparisons(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each finished kositp case against trl-plain on the same shape: with the same adapter, and for QLoRA
    also against plain TRL's bf16 LoRA (what a user without kositp would run on a GPU that holds it).

    Two speed ratios: tokens/s over all steps after the first, and the ratio of median step times. Every
    variant trains on the same batches (`masks_match`), so the second compares like with like and is not
    moved by a few stalled steps; the 8B goal must hold on both."""
    done = [c for c in cases if c.get("status") == "ok" and c.get("tokens_per_s") and c.get("peak_vram_mb")]
    rows = []
    for case in (c for c in done if c["variant"] != "trl-plain"):
        for baseline_adapter in dict.fromkeys([case["adapter"], "lora"]):
            base = next((c for c in done if c["variant"] == "trl-plain" and c["shape"] == case["shape"]
                         and c["adapter"] == baseline_adapter), None)
            if base is None:
                continue
            row = {"shape": case["shape"], "adapter": case["adapter"], "variant": case["variant"],
                   "baseline": f"trl-plain {baseline_adapter}",
                   "tokens_per_s_ratio": case["tokens_per_s"] / base["tokens_per_s"],
                   "median_step_speedup": (base["step_time_s"] / case["step_time_s"]
                                           if case.get("step_time_s") and base.get("step_time_s") else None),
                   "memory_ratio": case["peak_vram_mb"] / base["peak_vram_mb"],
                   "masks_match": case["mask_sha256"] == base["mask_sha256"],
                   "final_loss_rel_diff": (abs(case["final_loss"] - base["final_loss"]) / abs(base["final_loss"])
                                           if case.get("final_loss") and base.get("final_loss") else None)}
            if case["shape"] == "llama-3.1-8b":
                speedups = [row["tokens_per_s_ratio"], row["median_step_speedup"] or 0.0]
                row["meets_goal"] = min(speedups) >= GOAL_TOKENS_RATIO and row["memory_ratio"] <= GOAL_MEMORY_RATIO
            rows.append(row)
    return rows


def render_markdown(report: dict[str, Any]) -> str:
    s = report["settings"]
    lines = [
        "# kositp bench gpu", "", f"`{report['command']}`", "",
        f"Device: {report['machine'].get('cuda') or 'cpu'}; torch {report['machine']['torch']}; "
        f"{s['steps']} steps × batch {s['batch_size']}, max_length {s['max_length']}, optimiser {s['optim']}, "
        f"recipe `{s['recipe']}`" + (f" with {' '.join(s['overrides'])}" if s["overrides"] else "") +
        ". Random-weight models of the named shapes, kositp's tiny Korean tokenizer, the demo corpus. "
        "Speed leaves out each case's first step; peak memory is `torch.cuda.max_memory_allocated()` "
        "over the whole case (load and training).", "",
        "| shape | adapter | variant | status | backend | tokens/s | step time (s) | peak GPU memory (MiB) "
        "| loss after N steps | steps | loss tokens | load (s) |",
        "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in report["cases"]:
        lines.append(
            f"| {c['shape']} | {c['adapter']} | {c['variant']} | {c['status']}{' (partial)' if c.get('partial') else ''} "
            f"| {c.get('backend', '—')} | {_fmt(c.get('tokens_per_s'))} | {_fmt(c.get('step_time_s'), 3)} "
            f"| {_fmt(c.get('peak_vram_mb'), 0)} | {_fmt(c.get('final_loss'), 4)} | {c.get('steps', '—')} "
            f"| {c.get('loss_tokens', '—')} | {_fmt(c.get('load_s'))} |")
    failed = [c for c in report["cases"] if c.get("error")]
    if failed:
        lines += ["", "Errors (last line of each case's log):", ""]
        lines += [f"- {c['shape']} {c['adapter']} {c['variant']}: `{c['error']}`" for c in failed]
    if report["comparisons"]:
        lines += ["", f"Against trl-plain (goal on the 8B shape: ≥ {GOAL_TOKENS_RATIO}× by both speed ratios, peak "
                  f"memory ≤ {GOAL_MEMORY_RATIO}×). Both sides train on the same batches, so the median-step "
                  "speed-up compares like with like and is not moved by a few stalled steps:", "",
                  "| shape | adapter | variant | against | tokens/s ratio | median-step speed-up | memory ratio "
                  "| same loss mask | loss rel. diff | goal |",
                  "|---|---|---|---|---:|---:|---:|---|---:|---|"]
        for r in report["comparisons"]:
            diff = "—" if r["final_loss_rel_diff"] is None else f"{r['final_loss_rel_diff']:.2%}"
            goal = {True: "met", False: "not met"}.get(r.get("meets_goal"), "—")
            lines.append(f"| {r['shape']} | {r['adapter']} | {r['variant']} | {r['baseline']} "
                         f"| {r['tokens_per_s_ratio']:.2f}× | {_fmt(r.get('median_step_speedup'), 2)}× "
                         f"| {r['memory_ratio']:.2f}× "
                         f"| {'yes' if r['masks_match'] else 'NO'} | {diff} | {goal} |")
    if report["extras"]:
        lines += ["", f"End-to-end checks on the {report['extras']['shape']} shape (real `kositp` commands):", ""]
        lines += [f"- {name}: {r['status']}" + (f" ({_fmt(r.get('wall_s'))} s)" if r.get("wall_s") else "")
                  + (f" — `{r['error']}`" if r.get("error") else "")
                  for name, r in report["extras"]["steps"].items()]
    return "\n".join(lines) + "\n"


def _write_report(out: Path, report: dict[str, Any]) -> None:
    report["comparisons"] = comparisons(report["cases"])
    (out / "bench_gpu.json").write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
    (out / "bench_gpu.md").write_text(render_markdown(report), encoding="utf-8")


def _split(value: str, allowed, what: str) -> list[str]:
    chosen = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in chosen if v not in allowed]
    if unknown or not chosen:
        raise KositpError(f"unknown {what} {', '.join(unknown) or '(none)'}; choose from {', '.join(allowed)}")
    return chosen


def bench_gpu(
    out: Path = typer.Option(..., "--out", help="Directory for bench_gpu.json, bench_gpu.md and the logs."),
    work: Path | None = typer.Option(None, "--work", help="Directory for the bulky files: random models (the 8B "
                                     "shape is 16 GB), run directories, the export (default: OUT/work)."),
    shapes: str = typer.Option(DEFAULT_SHAPES, "--shapes", help="Comma-separated model shapes, run in this "
                               "order: llama-3.1-8b, llama-3.2-1b, gemma-3-1b (llama-tiny for CPU smoke tests)."),
    adapters: str = typer.Option("lora,qlora", "--adapters", help="Comma-separated: lora, qlora."),
    variants: str = typer.Option(",".join(VARIANTS), "--variants", help=f"Comma-separated: {', '.join(VARIANTS)}."),
    data: Path | None = typer.Option(None, "--data", help="SFT records (a `kositp data build` directory); default: "
                                     "the demo corpus built into OUT/data with the tokenizer."),
    tokenizer: str = typer.Option("tiny", "--tokenizer", help="Tokenizer the random models carry (a model name "
                                  "or directory)."),
    recipe: str = typer.Option(DEFAULT_RECIPE, "--recipe", help="kositp SFT recipe the kositp variants run."),
    kositp_set: list[str] = typer.Option([], "--set", help="key=value override of the recipe, for the kositp "
                                         "variants and the end-to-end SFT and DPO (repeatable), e.g. dtype=bfloat16."),
    steps: int = typer.Option(8, "--steps", min=1, max=10_000, help="Optimizer steps per case."),
    batch_size: int = typer.Option(4, "--batch-size", min=1, max=1024, help="Sequences per step."),
    max_length: int = typer.Option(1024, "--max-length", min=8, help="Longest record kept, in tokens."),
    optim: str = typer.Option("adamw_torch", "--optim", help="Optimizer for every variant."),
    case_timeout: float = typer.Option(180, "--case-timeout", min=1, help="Seconds one case may run."),
    budget_s: float = typer.Option(540, "--budget", min=1, help="Seconds for the whole run; cases that no "
                                   "longer fit are recorded as skipped."),
    extras: bool = typer.Option(True, "--extras/--no-extras", help="After the first shape: SFT QLoRA -> one DPO "
                                "step -> export merge, with the real commands, on the first 1B shape listed."),
) -> None:
    """Plain TRL vs kositp (backend trl) vs kositp (backend unsloth), LoRA and QLoRA: tokens/s, step time,
    peak GPU memory and the loss after N steps, on random-weight models of real shapes."""
    from rich.console import Console

    from kositp.bench.model_shapes import SHAPES

    console = Console(stderr=True)
    budget = Budget(budget_s)
    chosen_shapes = _split(shapes, SHAPES, "shape(s)")
    chosen_adapters, chosen_variants = _split(adapters, ADAPTERS, "adapter(s)"), _split(variants, VARIANTS, "variant(s)")
    work = work or out / "work"
    for folder in (out / "logs", work / "models", work / "cases", work / "extras"):
        folder.mkdir(parents=True, exist_ok=True)
    if data is None:
        from kositp.bench.train import ensure_demo_data

        data = ensure_demo_data(out / "data", tokenizer, console)
    settings = {"shapes": chosen_shapes, "adapters": chosen_adapters, "variants": chosen_variants, "steps": steps,
                "batch_size": batch_size, "max_length": max_length, "optim": optim, "recipe": recipe,
                "overrides": list(kositp_set), "tokenizer": tokenizer, "data": str(data),
                "case_timeout_s": case_timeout, "budget_s": budget_s}
    command = ("kositp " + " ".join(sys.argv[1:]) if sys.argv[1:3] == ["bench", "gpu"]
               else f"kositp bench gpu --out {out}")
    report: dict[str, Any] = {"command": command, "settings": settings,
                              "machine": machine_info(), "models": {}, "cases": [], "extras": {}}
    first_small = next((s for s in chosen_shapes if s != "llama-3.1-8b"), None)
    for index, shape in enumerate(chosen_shapes):
        model_dir = _ensure_model(shape, work / "models", out / "logs", tokenizer, budget, case_timeout, report)
        for adapter in chosen_adapters:
            for variant in chosen_variants:
                name = f"{shape}-{adapter}-{variant}"
                case = {"shape": shape, "adapter": adapter, "variant": variant}
                if model_dir is None:  # the write's own status says whether it failed or ran out of time
                    case["status"] = f"skipped: the model could not be written ({report['models'][shape]['status']})"
                elif budget.left() < 30:
                    case["status"] = "skipped: out of time"
                else:
                    console.print(f"[{budget.left():.0f} s left] {name}")
                    spec = case | {"model_dir": str(model_dir), "data": str(data), "run_dir": str(work / "cases" / name),
                                   "recipe": recipe, "overrides": list(kositp_set), "steps": steps,
                                   "batch_size": batch_size, "max_length": max_length, "optim": optim, "seed": 42}
                    case |= _python_child("case", spec, out / "logs", name, min(case_timeout, budget.left()))
                report["cases"].append(case)
                _write_report(out, report)
        if extras and index == 0 and first_small is not None and budget.left() > 60:
            small = _ensure_model(first_small, work / "models", out / "logs", tokenizer, budget, case_timeout, report)
            if small is not None:
                console.print(f"[{budget.left():.0f} s left] end-to-end: SFT QLoRA -> DPO -> export ({first_small})")
                report["extras"] = {"shape": first_small, "steps": _extras(
                    small, data, work / "extras", out / "logs", recipe, list(kositp_set), budget, case_timeout)}
                _write_report(out, report)
    _write_report(out, report)
    console.print(render_markdown(report))
    console.print(f"wrote {out / 'bench_gpu.json'} and {out / 'bench_gpu.md'}")


if __name__ == "__main__":  # a child: python -m kositp.bench.gpu {model|case} SPEC.json RESULT.json
    _child(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]))
