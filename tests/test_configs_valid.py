"""torchtune-style: every YAML recipe shipped under configs/ validates against its config model."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from kositp.config import CONFIG_SCHEMAS, load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
FILES = sorted(p for p in CONFIGS.rglob("*.yaml"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_shipped_config_validates(path: Path):
    folder = path.relative_to(CONFIGS).parts[0] if len(path.relative_to(CONFIGS).parts) > 1 else path.stem
    assert folder in CONFIG_SCHEMAS, f"no schema registered for configs/{folder}/ in kositp.config.CONFIG_SCHEMAS"
    module_name, _, attr = CONFIG_SCHEMAS[folder].partition(":")
    schema = getattr(importlib.import_module(module_name), attr)
    if callable(schema) and not isinstance(schema, type):
        schema(path)  # a validator function (e.g. for accelerate's own format)
    else:
        load_config(schema, path)
