"""Configuration: YAML files -> pydantic models, with `key=value` overrides from the command line.

Every stage declares one `Config` subclass whose fields (with their docstrings) are the whole
recipe. A YAML file (a shipped recipe under `kositp/recipes/`, or any path) mirrors those fields;
the CLI adds `key=value` overrides on top. Unknown keys are errors that name the closest valid
key, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from kositp.errors import KositpError
from kositp.recipes import resolve as resolve_recipe

C = TypeVar("C", bound="Config")

# Which schema validates a recipe: its folder name (recipes/<folder>/*.yaml) or its stem ->
# "module:attribute". The attribute is a Config subclass, or a function that takes the path and
# raises on an invalid file. A test checks them all.
CONFIG_SCHEMAS: dict[str, str] = {
    "data": "kositp.data.build:BuildConfig",
    "sft": "kositp.train.sft:SFTConfig",
    "pref": "kositp.train.pref:PrefConfig",
    "rl": "kositp.train.rl:RLConfig",
    "accelerate": "kositp.train.accelerate_configs:validate",
    "ui": "kositp.ui.config:UIConfig",
    "eval": "kositp.eval.run:EvalConfig",
    "benchmark": "kositp.eval.suites.custom:BenchmarkSpec",
    "serve": "kositp.serve.config:ServeConfig",
    "export": "kositp.export.config:ExportConfig",
}


class Config(BaseModel):
    """Base for every stage's config: strict about unknown keys, validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


def _sub_model(annotation: Any) -> type[BaseModel] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _key_candidates(model: type[BaseModel]) -> dict[str, str]:
    """Every key settable at this level -> its last part: the fields, and `group.field` for grouped settings."""
    names = {name: name for name in model.model_fields}
    for name, field in model.model_fields.items():
        group = _sub_model(field.annotation)
        if group is not None:
            names.update({f"{name}.{sub}": sub for sub in group.model_fields})
    return names


def _unknown_key_message(key: str, model: type[BaseModel], where: str, prefix: str) -> str:
    candidates = _key_candidates(model)
    hint = next((full for full, last in candidates.items() if last == key and full != key), None)
    if hint is None:
        match = difflib.get_close_matches(key, list(candidates.values()), n=1, cutoff=0.5)
        hint = next(full for full, last in candidates.items() if last == match[0]) if match else None
    suffix = (f"; did you mean '{prefix}{hint}'?" if hint
              else f"; valid keys: {', '.join(sorted(model.model_fields))}")
    return f"unknown config key '{prefix}{key}' in {where}{suffix}"


def _check_keys(model: type[BaseModel], data: dict[str, Any], where: str, prefix: str = "") -> None:
    """Walk `data` against `model`'s fields and raise on the first unknown key, with a suggestion."""
    fields = model.model_fields
    for key, value in data.items():
        if key not in fields:
            raise KositpError(_unknown_key_message(key, model, where, prefix))
        group = _sub_model(fields[key].annotation)
        if isinstance(value, dict) and group is not None:
            _check_keys(group, value, where, prefix=f"{prefix}{key}.")


def _format_validation_error(err: ValidationError, where: str) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or "(root)"
    if first["type"] == "missing":
        return f"missing setting '{loc}' (not in {where}): give it in the recipe, as a flag or as {loc}=..."
    return f"invalid value for '{loc}' in {where}: {first['msg']} (got {first.get('input')!r})"


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """`["a.b=1", "c=text"]` -> `{"a": {"b": 1}, "c": "text"}`. Values are parsed as YAML scalars."""
    result: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise KositpError(f"override '{pair}' is not of the form key=value")
        key, raw = pair.split("=", 1)
        key = key.strip()
        if not key:
            raise KositpError(f"override '{pair}' has an empty key")
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        node = result
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise KositpError(f"override '{pair}' conflicts with an earlier override of '{part}'")
        node[parts[-1]] = value
    return result


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML file, given as a path or a shipped recipe name (`sft/demo`)."""
    path = resolve_recipe(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise KositpError(f"config file {path} is not UTF-8 text: {exc.reason}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise KositpError(f"config file {path} is not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise KositpError(f"config file {path} must hold a mapping of keys to values, not {type(data).__name__}")
    return data


def given_flags(flags: dict[str, Any]) -> dict[str, Any]:
    """The command-line flags the user gave: None means "not given" and never overrides the file.

    Paths become strings, so a flag validates exactly like the same value written in YAML.
    """
    def plain(value: Any) -> Any:
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    return {key: plain(value) for key, value in flags.items() if value is not None}


def load_config(
    model: type[C],
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    defaults: dict[str, Any] | None = None,
    flags: dict[str, Any] | None = None,
) -> C:
    """Build `model` from, each later source winning: `defaults`, the YAML file, the command's `flags`
    that were given (value not None), then `key=value` overrides.

    Every CLI turns its options into a config this one way, so an option left out never hides a
    value the recipe sets.
    """
    data: dict[str, Any] = dict(defaults or {})
    sources = []
    if path is not None:
        file_data = read_yaml(path)
        _check_keys(model, file_data, str(path))
        data = _deep_merge(data, file_data)
        sources.append(str(path))
    flag_data = given_flags(flags or {})
    if flag_data:
        _check_keys(model, flag_data, "command-line flags")
        data = _deep_merge(data, flag_data)
        sources.append("command-line flags")
    if overrides:
        override_data = parse_overrides(overrides)
        _check_keys(model, override_data, "command-line overrides")
        data = _deep_merge(data, override_data)
        sources.append("command-line overrides")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise KositpError(_format_validation_error(err, " + ".join(sources) or "defaults")) from None


def schema_for(name: str):
    """The Config class (or validator function) registered for a recipe folder name."""
    import importlib

    if name not in CONFIG_SCHEMAS:
        known = ", ".join(sorted(CONFIG_SCHEMAS)) or "none yet"
        raise KositpError(f"no config schema named '{name}' (known: {known})")
    module_name, _, attr = CONFIG_SCHEMAS[name].partition(":")
    return getattr(importlib.import_module(module_name), attr)


def check_config_file(path: str | Path, schema: str | None = None) -> str:
    """Validate one YAML recipe (path or name); the schema defaults to the name of its folder."""
    path = resolve_recipe(path)
    name = schema or (path.parent.name if path.parent.name in CONFIG_SCHEMAS else path.stem)
    validator = schema_for(name)
    if isinstance(validator, type):
        load_config(validator, path)
        return validator.__name__
    validator(path)
    return name


def dump_config(cfg: BaseModel, path: str | Path) -> None:
    """Write the resolved config beside the artifacts it produced, so a run can be reproduced."""
    Path(path).write_text(
        yaml.safe_dump(cfg.model_dump(mode="json"), allow_unicode=True, sort_keys=False), encoding="utf-8"
    )
