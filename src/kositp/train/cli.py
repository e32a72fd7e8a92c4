"""`kositp train ...` commands."""

from __future__ import annotations

import typer

train_app = typer.Typer(help="Fine-tune (SFT) and align (DPO, ORPO, KTO, SimPO) models.", no_args_is_help=True)
