"""`kositp export`: merge a training run into a servable model directory and verify it."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from kositp.errors import KositpError


def export_command(
    run: Path | None = typer.Option(None, "--run", help="Training run directory (with run.json)."),
    out: Path | None = typer.Option(None, "--out", help="Where to write the exported model."),
    dtype: str | None = typer.Option(None, "--dtype", help="bf16, fp16 or fp32 weights (default: the config's, "
                                     "else fp32)."),
    check_vllm: bool | None = typer.Option(None, "--check-vllm/--no-check-vllm",
                                           help="Load the export in vLLM and compare greedy output.",
                                           show_default=False),
    overwrite: bool | None = typer.Option(None, "--overwrite/--no-overwrite", help="Replace OUT if it exists.",
                                          show_default=False),
    config: Path | None = typer.Option(None, "--config", help="An ExportConfig recipe: name or YAML path."),
    eval_report: list[Path] = typer.Option(None, "--eval-report", help="Eval report folder for the model card."),
    overrides: list[str] = typer.Argument(None, help="More settings as key=value."),
) -> None:
    """Merge LoRA into the base, write safetensors + tokenizer + chat template + model card, and verify.

    학습된 어댑터를 병합하여 vLLM과 transformers에서 바로 서빙할 수 있는 모델 폴더를 만듭니다.
    """
    from rich.console import Console

    from kositp.config import load_config
    from kositp.export import ExportConfig, export
    from kositp.export.merge import open_run
    from kositp.progress import StageStatus

    cfg = load_config(ExportConfig, config, list(overrides or []), flags={
        "run": run, "out": out, "dtype": dtype, "check_vllm": check_vllm, "overwrite": overwrite,
        "eval_reports": eval_report or None,
    })
    open_run(cfg.require_paths()[0])  # a bad run is one error line, before any progress output
    console = Console(stderr=True)
    with StageStatus("exporting", console) as status:
        record = export(cfg, progress=status.update)
    lc = record["logits_check"]
    console.print("logits check (merged export vs base+adapter):")
    for i, row in enumerate(lc["prompts"]):
        console.print(f"  prompt {i}: {row['tokens']} tokens, max |diff| {row['max_abs_diff']:.3g}, "
                      f"greedy agreement {row['argmax_agree']:.0%}")
    console.print(f"  {'PASSED' if lc['passed'] else 'FAILED'} (tolerance {lc['tolerance']:.3g})")
    vc = record.get("vllm_check")
    if vc:
        console.print("vLLM vs transformers greedy:")
        for row in vc["prompts"]:
            if row["identical"]:
                console.print(f"  identical ({row['tokens']} tokens): {row['prompt']}")
            else:
                d = row["first_divergence"]
                console.print(f"  DIVERGES at token {d['position']} ({d['transformers_token']} vs {d['vllm_token']}) "
                              f"after {d['common_prefix_text']!r}: {row['prompt']}")
    typer.echo(json.dumps({"out": str(cfg.out), "logits_check_passed": lc["passed"],
                           "vllm_check_passed": vc["passed"] if vc else None}, ensure_ascii=False))
    if not lc["passed"] or (vc and not vc["passed"]):
        raise KositpError("export written, but its verification failed (see above and kositp_export.json)")
