"""The `kositp` command. Thin: parse arguments, load the config, call the stage's entry point.

Each stage owns a Typer sub-app in its own package (`kositp.data.cli`, ...); heavy libraries are
imported inside commands so `kositp --help` stays fast.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from kositp.bench.cli import bench_app
from kositp.data.cli import data_app
from kositp.errors import KositpError
from kositp.eval.cli import eval_app
from kositp.export.cli import export_command
from kositp.hub_access import configure_hub_access
from kositp.serve.cli import serve_command
from kositp.train.cli import train_app
from kositp.train.pairs import pairs_command
from kositp.ui.cli import ui_command

app = typer.Typer(
    name="kositp",
    help="kositp: Korean smaller-LLM toolkit (data -> SFT/DPO -> export -> serve -> UI -> eval).\n\n"
    "한국어 소형 LLM을 위한 데이터 구축, 학습, 정렬, 배포, 평가 도구입니다.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

models_app = typer.Typer(help="Build or fetch models: the tiny test model and the embedded default.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(data_app, name="data")
app.add_typer(train_app, name="train")
app.add_typer(eval_app, name="eval")
app.add_typer(bench_app, name="bench")
data_app.command("pairs")(pairs_command)
app.command("serve")(serve_command)
app.command("ui")(ui_command)
app.command("export")(export_command)


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
    online: bool = typer.Option(False, "--online", help="Allow model-hub access (hub ids download; same as "
                                "KOSITP_ONLINE=1). By default kositp and its child processes run offline."),
) -> None:
    if debug:
        os.environ["KOSITP_DEBUG"] = "1"
    configure_hub_access(online)


@models_app.command("tiny")
def models_tiny(
    out: Path = typer.Option(..., "--out", help="Directory to write the model and tokenizer to."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives byte-identical files."),
    vocab_size: int = typer.Option(4096, "--vocab-size", min=512, max=65536, help="BPE vocabulary size."),
) -> None:
    """A tiny random Llama (~0.6M parameters) with a Korean byte-level BPE tokenizer and ChatML template."""
    from kositp.models import build_tiny_model

    path = build_tiny_model(out, seed=seed, vocab_size=vocab_size)
    typer.echo(f"tiny model written to {path}")


@models_app.command("default")
def models_default(
    out: Path | None = typer.Option(None, "--out", help="Where to put the converted model (default: the cache)."),
) -> None:
    """Convert the embedded google/gemma-3-270m (GGUF from PyPI) once into safetensors and print its path."""
    from rich.console import Console

    from kositp.models import ensure_default_model

    console = Console(stderr=True)
    with console.status("preparing the default model") as status:
        path = ensure_default_model(out, progress=lambda msg: status.update(msg), verify=True)
    typer.echo(str(path))


@app.command("demo")
def demo_command(
    quick: bool = typer.Option(False, "--quick", help="Tiny model and short recipes (a few minutes)."),
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Folder for every stage's output."),
    model: str | None = typer.Option(None, "--model", help="Base model (default: the embedded gemma-3-270m)."),
    benchmarks: Path | None = typer.Option(None, "--benchmarks", help="Korean benchmark folder for eval."),
    eval_limit: int | None = typer.Option(None, "--eval-limit", min=1, help="Examples per eval task."),
    fresh: bool = typer.Option(False, "--fresh", help="Redo every stage, even unchanged ones."),
    rl: bool = typer.Option(False, "--rl", help="Add a GRPO stage after DPO and its evaluation (slow on CPU)."),
    serve: bool = typer.Option(True, "--serve/--no-serve", help="Start the API and chat page at the end."),
    api_port: int = typer.Option(8000, "--api-port", help="API port."),
    ui_port: int = typer.Option(8001, "--ui-port", help="Chat page port."),
) -> None:
    """The whole pipeline offline: data -> SFT -> DPO -> eval (base vs SFT vs DPO) -> export -> serve + chat page."""
    from rich.console import Console

    from kositp.demo import DemoConfig, run_demo, serve_until_interrupted

    cfg = DemoConfig(quick=quick, out=out, model=model, benchmarks=benchmarks, eval_limit=eval_limit, fresh=fresh,
                     rl=rl, serve=serve, api_port=api_port, ui_port=ui_port)
    console = Console()
    run_demo(cfg, console)
    if cfg.serve:
        serve_until_interrupted(cfg, console)


config_app = typer.Typer(help="The shipped YAML recipes: list, show, locate and check them.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("list")
def config_list() -> None:
    """Every shipped recipe, by stage, with its one-line description (use the name with --config)."""
    from kositp.recipes import RECIPES_DIR, description, names

    stage = None
    for name in names():
        if name.split("/")[0] != stage:
            stage = name.split("/")[0]
            typer.echo(f"{stage}:")
        typer.echo(f"  {name:<24} {description(RECIPES_DIR / f'{name}.yaml')}")


@config_app.command("show")
def config_show(name: str = typer.Argument(..., help="A recipe name (e.g. sft/demo) or a YAML path.")) -> None:
    """Print a recipe's YAML text (copy it, edit it, pass the copy to --config)."""
    from kositp.recipes import resolve

    typer.echo(resolve(name).read_text(encoding="utf-8"), nl=False)


@config_app.command("path")
def config_path(name: str = typer.Argument(..., help="A recipe name (e.g. accelerate/ddp).")) -> None:
    """Print a recipe's file path, for tools that need a file (accelerate launch --config_file)."""
    from kositp.recipes import resolve

    typer.echo(str(resolve(name).resolve()))


@config_app.command("check")
def config_check(
    paths: list[str] = typer.Argument(..., help="Recipe names (e.g. sft/demo) or YAML files to validate."),
    schema: str | None = typer.Option(
        None, "--schema", help="Schema name (e.g. sft, pref, data); default: the file's folder name."
    ),
) -> None:
    """Validate recipes: unknown keys (with the closest valid key), wrong types, bad values."""
    from kositp.config import check_config_file

    for path in paths:
        name = check_config_file(path, schema)
        typer.echo(f"ok: {path} ({name})")


def main() -> None:
    """Entry point: run the app and turn user errors into one clear line and a non-zero exit."""
    try:
        app(standalone_mode=False)
    except KositpError as exc:
        if os.environ.get("KOSITP_DEBUG"):
            raise
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # click's usage errors carry their own exit code and message
        import click

        if isinstance(exc, click.exceptions.Exit):
            sys.exit(exc.exit_code)
        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if os.environ.get("KOSITP_DEBUG"):
            raise
        typer.echo(f"error: {type(exc).__name__}: {exc} (run with --debug for the traceback)", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
