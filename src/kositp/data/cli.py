"""`kositp data ...` commands."""

from __future__ import annotations

import typer

data_app = typer.Typer(help="Build instruction and preference datasets from Korean corpora.", no_args_is_help=True)
