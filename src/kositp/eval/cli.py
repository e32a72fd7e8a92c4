"""`kositp eval ...` and `kositp eval compare ...` (Typer sub-app `eval_app`).

Both `kositp eval --model M --suite tasks --out DIR` and `kositp eval run --model M ...` work: the
group's callback runs the evaluation when no subcommand is given.
"""

from __future__ import annotations

from pathlib import Path

import typer

from kositp.errors import KositpError

eval_app = typer.Typer(
    help="Evaluate a model: 22 held-out tasks, the seed's 4 benchmarks, KoBEST, KMMLU, KITE, LLM-judged chat "
    "(LogicKor, KoMT-Bench) and your own benchmarks by YAML; reports in JSON, Markdown, PNG.\n\n"
    "모델 평가: 22개 과제 테스트셋, NSMC/KorNLI/질문쌍/혐오표현, KoBEST, KMMLU, KITE, LLM 심사 대화, 사용자 정의 벤치마크.",
    add_completion=False,
)

CONFIG = typer.Option(None, "--config", help="Recipe: name (eval/quick) or YAML path; flags override it.")
MODEL = typer.Option(None, "--model", help="tiny | default | export dir | HF model dir | training RUN dir.")
API = typer.Option(None, "--api", help="OpenAI-compatible base URL (e.g. http://127.0.0.1:8000/v1) instead of --model.")
API_MODEL = typer.Option(None, "--api-model", help="Model name to request from --api (default: the first listed).")
SUITE = typer.Option(None, "--suite", help="Comma-separated suites: tasks,seed4,kobest,kmmlu,kite,judge,custom; "
                     "or all (every suite whose inputs are found).")
JUDGE_URL = typer.Option(None, "--judge-url", help="OpenAI-compatible judge base URL (suite judge).")
JUDGE_MODEL = typer.Option(None, "--judge-model", help="Judge model name (default: the first it lists).")
BENCHMARK = typer.Option(None, "--benchmark", help="Your own benchmark YAML (repeatable; adds suite custom).")
DATA = typer.Option(None, "--data", help="Folder from `kositp data build` (uses its test.jsonl).")
BENCHMARKS = typer.Option(None, "--benchmarks", help="Benchmark files folder (default $KOSITP_BENCHMARKS).")
LIMIT = typer.Option(None, "--limit", help="At most N examples per task/benchmark (seeded sample).")
SEED = typer.Option(None, "--seed", help="Seed of the --limit samples.")
MAX_NEW = typer.Option(None, "--max-new-tokens", help="Generation budget for the tasks suite.")
BATCH = typer.Option(None, "--batch-size", help="In-process batch size.")
DTYPE = typer.Option(None, "--dtype", help="float32 | bfloat16 | float16 | auto (in-process; auto: "
                     "the faster on this CPU).")
OUT = typer.Option(None, "--out", help="Report folder to write.")
SET = typer.Option(None, "--set", help="Extra config override key=value (repeatable), e.g. --set concurrency=8.")
QUIET = typer.Option(False, "--quiet", help="No progress bars: one line on stderr per finished suite.")
RESUME = typer.Option(False, "--resume", help="Reuse the suites a run with the same settings and model files "
                      "finished in OUT/suites/ (continue an interrupted evaluation).")


def _execute(config, model, api, api_model, suite, data, benchmarks, limit, seed, max_new_tokens, batch_size,
             dtype, out, overrides, quiet, judge_url=None, judge_model=None, benchmark=None, resume=False) -> None:

    from kositp.config import load_config
    from kositp.eval.run import EvalConfig, evaluate

    flags = {"model": model, "api": api, "api_model": api_model, "data": data, "benchmarks": benchmarks,
             "limit": limit, "seed": seed, "max_new_tokens": max_new_tokens, "batch_size": batch_size,
             "dtype": dtype, "out": out, "judge_url": judge_url, "judge_model": judge_model}
    if suite is not None:
        flags["suites"] = [s.strip() for s in suite.split(",") if s.strip()]
    if resume:
        flags["resume"] = True
    if benchmark:
        flags["benchmark_specs"] = [str(b) for b in benchmark]
        if suite is None:
            flags["suites"] = ["custom"]
    if out is None and config is None:
        raise KositpError("--out DIR is required (the report folder)")
    cfg = load_config(EvalConfig, config, list(overrides or []), flags=flags)
    report = evaluate(cfg, show_progress=not quiet)
    typer.echo(f"report written to {cfg.out}/report.md")
    for key, value in report["headline"].items():
        typer.echo(f"  {key}: {value:.4f}")


@eval_app.callback(invoke_without_command=True)
def eval_root(ctx: typer.Context, config: Path = CONFIG, model: str = MODEL, api: str = API, api_model: str = API_MODEL,
              suite: str = SUITE, data: Path = DATA, benchmarks: Path = BENCHMARKS, limit: int = LIMIT,
              seed: int = SEED, max_new_tokens: int = MAX_NEW, batch_size: int = BATCH, dtype: str = DTYPE,
              out: Path = OUT, overrides: list[str] = SET, quiet: bool = QUIET, judge_url: str = JUDGE_URL,
              judge_model: str = JUDGE_MODEL, benchmark: list[str] = BENCHMARK, resume: bool = RESUME) -> None:
    """Run an evaluation (same options as `kositp eval run`)."""
    if ctx.invoked_subcommand is not None:
        return
    if not any([config, model, api]):
        typer.echo(ctx.get_help())
        raise typer.Exit(0)
    _execute(config, model, api, api_model, suite, data, benchmarks, limit, seed, max_new_tokens, batch_size,
             dtype, out, overrides, quiet, judge_url, judge_model, benchmark, resume)


@eval_app.command("run")
def eval_run(config: Path = CONFIG, model: str = MODEL, api: str = API, api_model: str = API_MODEL,
             suite: str = SUITE, data: Path = DATA, benchmarks: Path = BENCHMARKS, limit: int = LIMIT,
             seed: int = SEED, max_new_tokens: int = MAX_NEW, batch_size: int = BATCH, dtype: str = DTYPE,
             out: Path = OUT, overrides: list[str] = SET, quiet: bool = QUIET, judge_url: str = JUDGE_URL,
             judge_model: str = JUDGE_MODEL, benchmark: list[str] = BENCHMARK, resume: bool = RESUME) -> None:
    """Evaluate --model or --api on the chosen suites and write REPORT_DIR (report.json/.md, PNGs)."""
    _execute(config, model, api, api_model, suite, data, benchmarks, limit, seed, max_new_tokens, batch_size,
             dtype, out, overrides, quiet, judge_url, judge_model, benchmark, resume)


@eval_app.command("compare")
def eval_compare(
    reports: list[Path] = typer.Argument(..., help="Report folders written by `kositp eval` (base, SFT, DPO, ...)."),
    out: Path = typer.Option(Path("eval-compare"), "--out", help="Folder for comparison.json/.md/.png."),
) -> None:
    """Put several evaluation reports side by side in one table and one chart."""
    from kositp.eval.compare import compare

    result = compare(reports, out)
    typer.echo(f"compared {len(result['runs'])} runs: {out}/comparison.md")
