"""`kositp export`: merge a training run into a servable model directory and verify it."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from kositp.errors import KositpError


def export_command(
    run: Path = typer.Option(..., "--run", help="Training run directory (with run.json)."),
    out: Path = typer.Option(..., "--out", help="Where to write the exported model."),
    dtype: str = typer.Option("fp32", "--dtype", help="bf16, fp16 or fp32 weights."),
    check_vllm: bool = typer.Option(False, "--check-vllm", help="Load the export in vLLM and compare greedy output."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT if it exists."),
    config: Path | None = typer.Option(None, "--config", help="An ExportConfig YAML."),
    eval_report: list[Path] = typer.Option(None, "--eval-report", help="Eval report folder for the model card."),
    overrides: list[str] = typer.Argument(None, help="More settings as key=value."),
) -> None:
    """Merge LoRA into the base, write safetensors + tokenizer + chat template + model card, and verify.

    학습된 어댑터를 병합하여 vLLM과 transformers에서 바로 서빙할 수 있는 모델 폴더를 만듭니다.
    """
    from pydantic import ValidationError
    from rich.console import Console

    from kositp.config import load_config
    from kositp.export import ExportConfig, export

    cfg = load_config(ExportConfig, config, list(overrides or []),
                      defaults={"run": str(run), "out": str(out)})
    given = {"run": run, "out": out, "dtype": dtype, "check_vllm": check_vllm or cfg.check_vllm,
             "overwrite": overwrite or cfg.overwrite}
    if eval_report:
        given["eval_reports"] = list(eval_report)
    try:
        cfg = ExportConfig.model_validate(cfg.model_dump() | given)
    except ValidationError as err:
        first = err.errors()[0]
        raise KositpError(f"invalid --{first['loc'][0]}: {first['msg']} (got {first.get('input')!r})") from None
    console = Console(stderr=True)
    with console.status("exporting") as status:
        record = export(cfg, progress=lambda msg: status.update(msg))
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
