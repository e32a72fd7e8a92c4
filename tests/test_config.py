from __future__ import annotations

import pytest
from pydantic import Field

from kositp.config import Config, load_config, parse_overrides
from kositp.errors import KositpError


class Inner(Config):
    rank: int = 8
    alpha: float = 16.0


class Recipe(Config):
    model: str = "tiny"
    learning_rate: float = 2e-4
    max_steps: int = Field(10, ge=1)
    lora: Inner = Inner()
    tags: list[str] = []


def test_yaml_then_overrides_later_wins(tmp_path):
    cfg_file = tmp_path / "r.yaml"
    cfg_file.write_text("model: default\nlearning_rate: 1.0e-4\nlora:\n  rank: 16\n", encoding="utf-8")
    cfg = load_config(Recipe, cfg_file, ["max_steps=40", "lora.alpha=32", "tags=[a, b]"])
    assert cfg.model == "default"
    assert cfg.learning_rate == 1e-4
    assert cfg.max_steps == 40
    assert cfg.lora == Inner(rank=16, alpha=32.0)
    assert cfg.tags == ["a", "b"]


def test_unknown_key_names_the_closest_valid_key(tmp_path):
    cfg_file = tmp_path / "r.yaml"
    cfg_file.write_text("learnig_rate: 0.1\n", encoding="utf-8")
    with pytest.raises(KositpError, match="unknown config key 'learnig_rate'.*did you mean 'learning_rate'"):
        load_config(Recipe, cfg_file)
    with pytest.raises(KositpError, match="'lora.rnak'.*did you mean 'lora.rank'"):
        load_config(Recipe, None, ["lora.rnak=4"])
    with pytest.raises(KositpError, match="unknown config key 'rank'.*did you mean 'lora.rank'"):
        load_config(Recipe, None, ["rank=4"])  # a grouped setting given at the top level


def test_flags_override_the_file_only_when_given_and_key_values_win(tmp_path):
    cfg_file = tmp_path / "r.yaml"
    cfg_file.write_text("model: default\nmax_steps: 5\n", encoding="utf-8")
    cfg = load_config(Recipe, cfg_file, [], flags={"model": None, "max_steps": None})
    assert (cfg.model, cfg.max_steps) == ("default", 5)  # flags not given leave the file's values
    cfg = load_config(Recipe, cfg_file, [], flags={"model": tmp_path / "m", "max_steps": 7})
    assert (cfg.model, cfg.max_steps) == (str(tmp_path / "m"), 7)  # a Path flag validates like its text
    assert load_config(Recipe, cfg_file, ["max_steps=9"], flags={"max_steps": 7}).max_steps == 9
    with pytest.raises(KositpError, match="invalid value for 'max_steps' in .*command-line flags"):
        load_config(Recipe, cfg_file, [], flags={"max_steps": 0})


def test_a_missing_required_setting_is_named():
    class Needs(Config):
        run: str

    with pytest.raises(KositpError, match="missing setting 'run'.*run=..."):
        load_config(Needs, None, [], flags={"run": None})


def test_override_type_is_checked():
    with pytest.raises(KositpError, match="invalid value for 'max_steps'"):
        load_config(Recipe, None, ["max_steps=many"])
    with pytest.raises(KositpError, match="invalid value for 'max_steps'"):
        load_config(Recipe, None, ["max_steps=0"])


def test_bad_files_give_one_clear_error(tmp_path):
    with pytest.raises(KositpError, match="config file not found"):
        load_config(Recipe, tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: [unclosed\n", encoding="utf-8")
    with pytest.raises(KositpError, match="not valid YAML at line"):
        load_config(Recipe, broken)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("model: 모델\n".encode("cp949"))
    with pytest.raises(KositpError, match="not UTF-8"):
        load_config(Recipe, latin)
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(KositpError, match="must hold a mapping"):
        load_config(Recipe, listy)


def test_parse_overrides_rejects_malformed_pairs():
    assert parse_overrides(["a.b=1", "c=텍스트", "d="]) == {"a": {"b": 1}, "c": "텍스트", "d": ""}
    with pytest.raises(KositpError, match="key=value"):
        parse_overrides(["novalue"])
