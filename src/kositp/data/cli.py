"""`kositp data ...` commands."""

from __future__ import annotations

from pathlib import Path

import typer

data_app = typer.Typer(help="Build instruction and preference datasets from Korean corpora.", no_args_is_help=True)


@data_app.command("formats")
def formats() -> None:
    """List the source formats `--source FORMAT:PATH` accepts."""
    from kositp.data.sources import all_formats
    from kositp.data.sources.presets import PRESET_PREFIX, PRESETS

    for fmt in all_formats().values():
        typer.echo(f"{fmt.name:14s} {fmt.emits:13s} {fmt.description}")
    typer.echo("\npresets (format: preset:NAME, or --source preset:NAME[=PATH]):")
    for preset in PRESETS.values():
        typer.echo(f"{PRESET_PREFIX + preset.name:20s} {preset.format:10s} {preset.path}  {preset.description}")


@data_app.command("build")
def build_cmd(
    out: Path = typer.Option(..., "--out", help="Output directory (train/validation/test.jsonl, card, rejects)."),
    config: Path | None = typer.Option(None, "--config", help="Recipe: name (data/demo) or YAML path."),
    source: list[str] = typer.Option([], "--source", help="FORMAT:PATH, repeatable; works without a config file. "
                                     "See `kositp data formats`."),
    seed: int | None = typer.Option(None, "--seed", help="Seed (overrides the config)."),
    tokenizer: str | None = typer.Option(None, "--tokenizer", help="Model whose tokenizer filters by length."),
    overrides: list[str] = typer.Argument(None, help="key=value config overrides, e.g. max_per_task=100."),
) -> None:
    """Turn raw Korean corpora into the 22 instruction tasks (and preference pairs), split by document."""
    from kositp.config import load_config
    from kositp.data.build import BuildConfig, build, sources_from_cli
    from kositp.errors import KositpError
    from kositp.progress import StageStatus
    from kositp.recipes import resolve as resolve_recipe

    if config is None and not source:
        raise KositpError("give --config CFG or at least one --source FORMAT:PATH")
    cfg = load_config(BuildConfig, config, overrides or [], flags={"seed": seed, "tokenizer": tokenizer})
    if source:  # --source adds to the recipe's sources rather than replacing them
        cfg.sources = [*cfg.sources, *sources_from_cli(source)]
    if config is not None:
        # relative source paths in a config file are relative to the file, not the shell
        for src in cfg.sources:
            if not src.path.startswith(("package:", "hf:", "konlpy:", "/")) and not Path(src.path).exists():
                candidate = (resolve_recipe(config).parent / src.path).resolve()
                if candidate.exists():
                    src.path = str(candidate)
    with StageStatus("building") as status:
        result = build(cfg, out, progress=status.update)
    c = result.card["counts"]
    typer.echo(f"wrote {c['written']} records ({c['instructions']} instructions, {c['preferences']} preference "
               f"pairs) to {result.out}; read {c['read']}, rejected {c['rejected']}, duplicates {c['duplicates']}")


@data_app.command("stats")
def stats(directory: Path = typer.Argument(..., help="A `kositp data build` output directory.")) -> None:
    """Print the per-task, per-split table of a built dataset."""
    from rich.console import Console
    from rich.table import Table

    from kositp.data.card import read_card

    card = read_card(directory)
    table = Table(title=f"{directory} (seed {card['seed']})")
    for col in ("task", "train", "validation", "test", "total"):
        table.add_column(col, justify="left" if col == "task" else "right")
    for task, row in card["per_task"].items():
        table.add_row(task, *(str(row[s]) for s in ("train", "validation", "test")), str(sum(row.values())))
    s = card["splits"]
    table.add_row("total", str(s["train"]), str(s["validation"]), str(s["test"]), str(sum(s.values())))
    Console().print(table)
    c = card["counts"]
    typer.echo(f"read {c['read']} = written {c['written']} + rejected {c['rejected']} + duplicates {c['duplicates']}; "
               f"preference pairs {c['preferences']}")


@data_app.command("export-seed")
def export_seed_cmd(
    directory: Path = typer.Argument(..., help="A `kositp data build` output directory."),
    out: Path = typer.Option(..., "--out", help="JSONL file to write in the seed format."),
    split: str = typer.Option("train", "--split", help="train, validation or test."),
) -> None:
    """Export built records to the seed format {"input", "output", "Task_name"}."""
    import json

    from kositp.data.sources.seed import export_seed
    from kositp.errors import KositpError

    path = directory / f"{split}.jsonl"
    if not path.is_file():
        raise KositpError(f"{path} not found")
    with open(path, encoding="utf-8") as fh:
        n = export_seed((json.loads(line) for line in fh if line.strip()), out)
    typer.echo(f"wrote {n} records to {out}")
