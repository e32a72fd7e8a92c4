"""The Python API: one function per pipeline stage, the same entry points the `kositp` CLI calls.

Every stage function takes its configuration the same way:

- a recipe name (`"sft/tiny"`, see `kositp config list`) or the path of a YAML file, or
- the stage's config object (`SFTConfig(...)`, `BuildConfig(...)`, ...), or nothing (the defaults),

plus keyword overrides with the config's own field names. An override is validated exactly like a
`key=value` on the command line (unknown keys name the closest valid key); a nested group takes a
dict, which is merged into the group (`trainer={"max_steps": 4}` keeps the recipe's other trainer
settings). Stages exchange nothing but files: each returns what it wrote, and the next takes that
folder as its input.

    import kositp

    data = kositp.build_data("data/demo", out="runs/data").out
    sft = kositp.train_sft("sft/tiny", data=data, out="runs/sft")
    report = kositp.evaluate(model=str(sft), data=data, suites=["tasks"], out="runs/eval")
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import yaml

from kositp.config import Config, load_config
from kositp.errors import KositpError

if TYPE_CHECKING:
    from kositp.data.build import BuildConfig, BuildResult
    from kositp.data.sources import SourceFormat
    from kositp.eval.run import EvalConfig
    from kositp.export.config import ExportConfig
    from kositp.serve.config import ServeConfig
    from kositp.train.pref import PrefConfig
    from kositp.train.sft import SFTConfig

C = TypeVar("C", bound=Config)
Recipe = str | Path | Config | None


def _plain(value: Any) -> Any:
    """Paths as text, config objects as the settings they were given, tuples as lists: what YAML holds."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Config):
        return value.model_dump(mode="json", exclude_unset=True)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set):
        return [_plain(item) for item in value]
    return value


def _as_override(key: str, value: Any) -> str:
    """One keyword override as the CLI's `key=value`, in YAML that reads back as the same value
    (`1e-5` as a float, `"yes"` as text), so it is checked and merged exactly like a CLI override."""
    try:
        text = yaml.safe_dump(_plain(value), default_flow_style=True, allow_unicode=True, width=float("inf"))
    except yaml.YAMLError:
        raise KositpError(f"override {key}: a {type(value).__name__} cannot be a config value") from None
    return f"{key}=" + text.removesuffix("\n...\n").strip()  # a lone scalar ends with YAML's "..." marker


def resolve_config(schema: type[C], recipe: Recipe = None, /, **overrides: Any) -> C:
    """A `schema` config from a recipe (name, path or config object) plus keyword overrides, validated
    like the CLI's `key=value` (a config object's own settings stay, except those overridden)."""
    pairs = [_as_override(key, value) for key, value in overrides.items()]
    if isinstance(recipe, Config):
        if not isinstance(recipe, schema):
            raise KositpError(f"expected a {schema.__name__} (or a recipe name or path), got {type(recipe).__name__}")
        if not pairs:
            return recipe
        return load_config(schema, None, pairs, defaults=recipe.model_dump(mode="json", exclude_unset=True))
    return load_config(schema, recipe, pairs)


def build_data(config: BuildConfig | str | Path | None = None, /, *,
               progress: Callable[[str], None] | None = None, **overrides: Any) -> BuildResult:
    """`kositp data build`: sources -> the 22 instruction tasks -> JSONL splits and a card in `out`."""
    from kositp.data.build import BuildConfig, build

    return build(resolve_config(BuildConfig, config, **overrides), progress=progress)


def build_pairs(data: str | Path, out: str | Path, *, model: str | Path | None = None, **options: Any) -> dict:
    """`kositp data pairs`: preference pairs (gold vs the model's own wrong answer, or a rule-based negative)."""
    from kositp.train.pairs import build_pairs as build

    return build(data, out, model=str(model) if model is not None else None, **options)


def train_sft(config: SFTConfig | str | Path | None = None, /, **overrides: Any) -> Path:
    """`kositp train sft`: supervised fine-tuning; returns the run directory (adapter or model, run.json)."""
    from kositp.train.sft import SFTConfig
    from kositp.train.sft import train_sft as train

    return train(resolve_config(SFTConfig, config, **overrides))


def train_preference(config: PrefConfig | str | Path | None = None, /, **overrides: Any) -> Path:
    """`kositp train pref`: DPO, ORPO, KTO or SimPO (on top of an SFT run with `sft_run=`); returns the run."""
    from kositp.train.pref import PrefConfig, train_pref

    return train_pref(resolve_config(PrefConfig, config, **overrides))


def export_model(config: ExportConfig | str | Path | None = None, /, **overrides: Any) -> dict:
    """`kositp export`: merge a run into a servable model folder and verify it; returns the export record."""
    from kositp.export import ExportConfig, export

    cfg = resolve_config(ExportConfig, config, **overrides)
    record = export(cfg)
    vllm_check = record.get("vllm_check")
    if not record["logits_check"]["passed"] or (vllm_check and not vllm_check["passed"]):
        raise KositpError(f"export written to {cfg.out}, but its verification failed (see kositp_export.json there)")
    return record


def evaluate(config: EvalConfig | str | Path | None = None, /, *, show_progress: bool = True,
             **overrides: Any) -> dict:
    """`kositp eval`: the held-out task suite and Korean benchmarks; returns the report (also written to `out`)."""
    from kositp.eval.run import EvalConfig
    from kositp.eval.run import evaluate as run

    return run(resolve_config(EvalConfig, config, **overrides), show_progress=show_progress)


def serve(config: ServeConfig | str | Path | None = None, /, **overrides: Any) -> int:
    """`kositp serve`: the OpenAI-compatible API in the foreground, until Ctrl-C or SIGTERM.

    Returns the exit code: 0, or 3 when the drain after the signal had to cut requests in flight."""
    from kositp.serve.config import ServeConfig, check_servable
    from kositp.serve.server import run

    cfg = resolve_config(ServeConfig, config, **overrides)
    check_servable(cfg)
    return run(cfg)


@contextmanager
def serve_in_background(config: ServeConfig | str | Path | None = None, /, **overrides: Any) -> Iterator[str]:
    """The same API on a background thread: `with kositp.serve_in_background(model=DIR, port=0) as url:`."""
    from kositp.serve.config import ServeConfig, check_servable
    from kositp.serve.server import ServerThread

    cfg = resolve_config(ServeConfig, config, **overrides)
    check_servable(cfg)
    with ServerThread(cfg) as url:
        yield url


def register_source_format(name: str, reader: Callable, emits: str = "documents",
                           description: str = "") -> SourceFormat:
    """Plug a reader of your own raw format into `build_data` (`sources: [{format: NAME, path: ...}]`)."""
    from kositp.data.sources import register_format

    return register_format(name, reader, emits=emits, description=description)
