"""`kositp train ...` commands: thin wrappers that load a recipe, apply overrides and call the entry point."""

from __future__ import annotations

import os
from pathlib import Path

import typer

train_app = typer.Typer(help="Fine-tune (SFT), align (DPO, ORPO, KTO, SimPO) and reinforce (GRPO) models.",
                        no_args_is_help=True)

OVERRIDES_HELP = ("Recipe overrides as key=value, using the config's field names (grouped settings with a dot; "
                  "trainer settings under TRL's names), e.g. trainer.max_steps=40 trainer.learning_rate=1e-4 "
                  "lora.r=16. They win over the flags.")


def _quiet_libraries() -> None:
    # The rich bar and metrics.jsonl carry progress; keep `datasets`/transformers chatter off the terminal.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        import datasets
        import transformers

        datasets.disable_progress_bars()
        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - the train extra is not installed
        pass


@train_app.command("sft")
def sft_command(
    overrides: list[str] = typer.Argument(None, help=OVERRIDES_HELP, show_default=False),
    config: Path | None = typer.Option(None, "--config", "-c", help="Recipe: name (sft/tiny; `kositp config list`) or YAML path."),
    model: str | None = typer.Option(None, "--model", help="Base model: tiny, default, a directory or a hub id."),
    data: Path | None = typer.Option(None, "--data", help="`kositp data build` output directory or a .jsonl file."),
    out: Path | None = typer.Option(None, "--out", help="Run directory to write."),
) -> None:
    """Supervised fine-tuning with LoRA / QLoRA / full weights (TRL on CPU, Unsloth on CUDA).

    Writes RUN/adapter (or RUN/model), run.json, config.yaml, metrics.jsonl, loss.png, tb/ and checkpoints/.
    """
    from kositp.config import load_config
    from kositp.train.modeling import import_unsloth_first
    from kositp.train.sft import SFTConfig, train_sft

    cfg = load_config(SFTConfig, config, overrides or [], flags={"model": model, "data": data, "out": out})
    import_unsloth_first(cfg.backend)  # on CUDA, before _quiet_libraries imports transformers and datasets
    _quiet_libraries()
    run = train_sft(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        typer.echo(f"SFT run written to {run}")


@train_app.command("pref")
def pref_command(
    overrides: list[str] = typer.Argument(None, help=OVERRIDES_HELP, show_default=False),
    config: Path | None = typer.Option(None, "--config", "-c", help="Recipe: name (pref/demo-dpo; `kositp config list`) or YAML path."),
    method: str | None = typer.Option(None, "--method", help="dpo, orpo, kto or simpo."),
    model: str | None = typer.Option(None, "--model", help="Base model (must match the SFT run's base)."),
    adapter: Path | None = typer.Option(None, "--adapter", help="SFT run directory whose adapter to continue."),
    data: Path | None = typer.Option(None, "--data", help="Preference data: a directory with train.jsonl or a file."),
    out: Path | None = typer.Option(None, "--out", help="Run directory to write."),
) -> None:
    """Preference alignment: DPO, ORPO, KTO or SimPO, on a base model or on top of an SFT run.

    With LoRA the reference model is the adapter-disabled base (or a frozen copy of the SFT adapter).
    """
    from kositp.config import load_config
    from kositp.errors import KositpError
    from kositp.train.modeling import import_unsloth_first
    from kositp.train.pref import METHODS, PrefConfig, train_pref

    if method is not None and method not in METHODS:
        raise KositpError(f"unknown preference method '{method}'; choose one of: {', '.join(METHODS)}")
    cfg = load_config(PrefConfig, config, overrides or [],
                      flags={"method": method, "model": model, "sft_run": adapter, "data": data, "out": out})
    import_unsloth_first(cfg.backend)  # on CUDA, before _quiet_libraries imports transformers and datasets
    _quiet_libraries()
    run = train_pref(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        typer.echo(f"{cfg.method.upper()} run written to {run}")


@train_app.command("rl")
def rl_command(
    overrides: list[str] = typer.Argument(None, help=OVERRIDES_HELP, show_default=False),
    config: Path | None = typer.Option(None, "--config", "-c", help="Recipe: name (rl/demo-grpo; `kositp config list`) or YAML path."),
    method: str | None = typer.Option(None, "--method", help="grpo."),
    model: str | None = typer.Option(None, "--model", help="Base model (must match the SFT run's base)."),
    adapter: Path | None = typer.Option(None, "--adapter", help="SFT run directory whose adapter to continue."),
    data: Path | None = typer.Option(None, "--data", help="`kositp data build` output directory (its train split)."),
    out: Path | None = typer.Option(None, "--out", help="Run directory to write."),
) -> None:
    """Online RL: GRPO with rewards from the task suite's scorers (task metric, answer format, Korean, length).

    Writes the same run directory as SFT; metrics.jsonl and loss.png carry each reward separately.
    """
    from kositp.config import load_config
    from kositp.errors import KositpError
    from kositp.train.modeling import import_unsloth_first
    from kositp.train.rl import METHODS, RLConfig, train_rl

    if method is not None and method not in METHODS:
        raise KositpError(f"unknown RL method '{method}'; choose one of: {', '.join(METHODS)}")
    cfg = load_config(RLConfig, config, overrides or [],
                      flags={"method": method, "model": model, "sft_run": adapter, "data": data, "out": out})
    import_unsloth_first(cfg.backend)  # on CUDA, before _quiet_libraries imports transformers and datasets
    _quiet_libraries()
    run = train_rl(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        typer.echo(f"{cfg.method.upper()} run written to {run}")
