"""`kositp bench sample`: sampling N answers per prompt (what `kositp data pairs --samples` does) with each
prompt read once and its cache shared by its N rows, against `generate(num_return_sequences=N)`, which
repeats every prompt N times before the prefill. Both run in one process on the same prompts and seed,
alternating, and the report says whether they sampled the same tokens."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import typer

from kositp.bench.machine import load_average, machine_info
from kositp.errors import KositpError

VARIANTS = {"repeated prompts": False, "shared prefill": True}


def _prompts(data: Path, n: int) -> list[list[dict]]:
    from kositp.train.data import load_records
    from kositp.train.pairs import spread_over_tasks

    records = spread_over_tasks(load_records(str(data), ("train",)).get("train", []), n)
    prompts = [rec["messages"][:-1] for rec in records if isinstance(rec.get("messages"), list)
               and len(rec["messages"]) > 1]
    if not prompts:
        raise KositpError(f"no chat records in {data}'s train split")
    return prompts


def render_markdown(report: dict) -> str:
    spec = report["spec"]
    lines = ["# Sampling with a shared prefill", "",
             f"- model `{spec['model']}`, {spec['prompts']} prompts (mean {report['mean_prompt_tokens']:.0f} tokens), "
             f"{spec['samples']} samples each, {spec['max_new_tokens']} new tokens at most, batch {spec['batch_size']} "
             f"rows, {spec['runs']} runs per variant (alternating); load {report['load_before']} → {report['load_after']}",
             f"- same sampled tokens in both: **{report['identical']}**", "",
             "| variant | median s | runs (s) |", "|---|---:|---|"]
    for name, seconds in report["seconds"].items():
        lines.append(f"| {name} | {statistics.median(seconds):.1f} | {', '.join(f'{s:.1f}' for s in seconds)} |")
    lines += ["", f"**speed-up of the shared prefill: {report['speedup']:.2f}×** (median of repeated / median of shared)", ""]
    return "\n".join(lines)


def bench_sample(
    out: Path = typer.Option(..., "--out", help="Directory for bench_sample.json and bench_sample.md."),
    model: str = typer.Option("default", "--model", help="Model (`default` = gemma-3-270m, `tiny`, a path or RUN)."),
    data: Path | None = typer.Option(None, "--data", help="A `kositp data build` directory or .jsonl whose train "
                                     "prompts are sampled; default: the demo corpus built into OUT/data."),
    prompts: int = typer.Option(16, "--prompts", min=1, max=10_000, help="Prompts, an equal share per task."),
    samples: int = typer.Option(4, "--samples", min=1, max=64, help="Answers sampled per prompt."),
    max_new_tokens: int = typer.Option(32, "--max-new-tokens", min=1, max=4096, help="Answer length limit."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, max=1024, help="Rows per batch (prompts × samples)."),
    runs: int = typer.Option(3, "--runs", min=1, max=100, help="Runs per variant; medians are reported."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed (the same for both variants)."),
    quick: bool = typer.Option(False, "--quick", help="Smoke run: tiny model, 4 prompts, 1 run per variant."),
) -> None:
    """Time sampling with each prompt's prefill shared by its samples against repeating the prompt per sample."""
    from rich.console import Console

    from kositp.bench.train import ensure_demo_data
    from kositp.eval.generate import LocalGenerator
    from kositp.eval.loading import load_for_eval

    console = Console(stderr=True)
    if quick:
        model, prompts, runs, max_new_tokens = "tiny", 4, 1, 8
    out.mkdir(parents=True, exist_ok=True)
    conversations = _prompts(data or ensure_demo_data(out / "data", model, console), prompts)
    generator = LocalGenerator(load_for_eval(model), batch_size=batch_size)
    load_before = load_average()
    seconds: dict[str, list[float]] = {name: [] for name in VARIANTS}
    answers: dict[str, list] = {}
    for run in range(runs):
        order = list(VARIANTS) if run % 2 == 0 else list(reversed(VARIANTS))  # neither always goes first
        for name in order:
            started = time.perf_counter()
            drawn = generator.sample(conversations, max_new_tokens, samples, 1.0, seed, share_prefill=VARIANTS[name])
            seconds[name].append(time.perf_counter() - started)
            answers.setdefault(name, [[g.text for g in row] for row in drawn])
            console.print(f"run {run + 1}/{runs} {name}: {seconds[name][-1]:.1f} s")
    report = {
        "spec": {"model": model, "data": str(data) if data else "demo", "prompts": len(conversations),
                 "samples": samples, "max_new_tokens": max_new_tokens, "batch_size": batch_size, "runs": runs,
                 "seed": seed},
        "mean_prompt_tokens": statistics.mean(len(generator._encode(c)) for c in conversations),
        "seconds": seconds,
        "speedup": statistics.median(seconds["repeated prompts"]) / statistics.median(seconds["shared prefill"]),
        "identical": answers["repeated prompts"] == answers["shared prefill"],
        "machine": machine_info(), "load_before": load_before, "load_after": load_average(),
    }
    (out / "bench_sample.json").write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
    markdown = render_markdown(report)
    (out / "bench_sample.md").write_text(markdown, encoding="utf-8")
    typer.echo(markdown)
