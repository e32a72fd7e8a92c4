"""torchtune-style: every YAML recipe shipped in kositp/recipes/ validates against its config schema,
has a one-line description, and is reachable by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from kositp.config import CONFIG_SCHEMAS, check_config_file
from kositp.recipes import RECIPES_DIR, description, names, resolve

FILES = sorted(RECIPES_DIR.rglob("*.yaml"))


def test_recipes_are_shipped():
    assert {"data/demo", "sft/demo", "sft/tiny", "pref/demo-dpo", "pref/tiny-dpo", "serve/local"} <= set(names())


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(RECIPES_DIR)))
def test_shipped_config_validates(path: Path):
    relative = path.relative_to(RECIPES_DIR)
    name = relative.parts[0] if len(relative.parts) > 1 else path.stem
    assert name in CONFIG_SCHEMAS, f"no schema registered for recipes/{relative} in kositp.config.CONFIG_SCHEMAS"
    check_config_file(path, name)
    recipe = relative.with_suffix("").as_posix()
    assert resolve(recipe) == path
    assert check_config_file(recipe) == check_config_file(path)
    assert description(path), f"recipes/{relative} must start with a one-line '# description' comment"
