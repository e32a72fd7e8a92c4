"""torchtune-style: every YAML recipe shipped under configs/ validates against its config schema."""

from __future__ import annotations

from pathlib import Path

import pytest

from kositp.config import CONFIG_SCHEMAS, check_config_file

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
FILES = sorted(CONFIGS.rglob("*.yaml"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_shipped_config_validates(path: Path):
    relative = path.relative_to(CONFIGS)
    name = relative.parts[0] if len(relative.parts) > 1 else path.stem
    assert name in CONFIG_SCHEMAS, f"no schema registered for configs/{relative} in kositp.config.CONFIG_SCHEMAS"
    check_config_file(path, name)
