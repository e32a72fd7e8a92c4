"""The CLI as a user runs it: a real subprocess, exit codes and one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kositp.config import Config, load_config


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kositp.cli", *args], capture_output=True, text=True, timeout=300,
        env={**os.environ, **(env or {})},
    )


def test_help_lists_commands():
    result = run_cli("--help")
    assert result.returncode == 0
    assert "models" in result.stdout


def test_models_tiny_writes_a_loadable_model(tmp_path: Path):
    result = run_cli("models", "tiny", "--out", str(tmp_path / "m"), "--seed", "1")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "m" / "model.safetensors").is_file()
    assert (tmp_path / "m" / "tokenizer.json").is_file()


def test_errors_are_one_line_without_traceback(tmp_path: Path):
    result = run_cli("models", "tiny", "--out", str(tmp_path / "m"), "--vocab-size", "10")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr


def test_config_with_unknown_key_exits_with_one_line(tmp_path: Path):
    recipe = tmp_path / "sft" / "typo.yaml"
    recipe.parent.mkdir()
    recipe.write_text("model: tiny\nlearnig_rate: 1.0e-4\n", encoding="utf-8")
    result = run_cli("config", "check", str(recipe))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "unknown config key 'learnig_rate'" in lines[0] and "did you mean 'trainer.learning_rate'" in lines[0]
    assert run_cli("config", "check", str(recipe.parent.parent.parent / "missing.yaml"), "--schema", "sft").returncode == 2


class _Demo(Config):
    learning_rate: float = 1e-4


def test_unknown_config_key_is_one_line(tmp_path: Path):
    # The CLI's error path, exercised in-process on a real config model.
    from kositp.errors import KositpError

    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rat: 1\n", encoding="utf-8")
    with pytest.raises(KositpError) as err:
        load_config(_Demo, bad)
    assert "\n" not in str(err.value)
    assert "did you mean 'learning_rate'" in str(err.value)
