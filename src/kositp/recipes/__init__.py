"""The recipes shipped with kositp: YAML files in this folder, one subfolder per stage.

A recipe is named by its stage folder and file stem (`sft/demo` is `recipes/sft/demo.yaml`), so
`--config sft/demo` works the same from a clone and from an installed wheel. Every `--config` goes
through `resolve`: an existing file wins, then a recipe name; anything else is one clear error that
names the closest recipes. The first comment line of each YAML is its one-line description.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from kositp.errors import KositpError

RECIPES_DIR = Path(__file__).resolve().parent


def names() -> list[str]:
    """Every shipped recipe name (`stage/stem`), sorted."""
    return sorted(p.relative_to(RECIPES_DIR).with_suffix("").as_posix() for p in RECIPES_DIR.rglob("*.yaml"))


def resolve(name_or_path: str | Path) -> Path:
    """A YAML file: `name_or_path` itself when it exists, else the shipped recipe of that name."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    name = path.as_posix().removesuffix(".yaml")
    if name in names():
        return RECIPES_DIR / f"{name}.yaml"
    close = difflib.get_close_matches(name, names(), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else "; `kositp config list` shows the recipes"
    raise KositpError(f"config file not found: {name_or_path} (neither a file nor a recipe name){hint}")


def description(path: Path) -> str:
    """The recipe's first comment line, or an empty string when the file starts with a key."""
    first = path.read_text(encoding="utf-8").splitlines()[:1]
    return first[0].lstrip("#").strip() if first and first[0].startswith("#") else ""
