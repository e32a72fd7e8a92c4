"""kositp: Korean smaller-LLM toolkit.

The pipeline as Python functions, one per stage, with files on disk between them (the same entry
points the `kositp` command calls; see kositp/api.py and docs/python-api.md):

    build_data -> [build_pairs] -> train_sft -> train_preference -> export_model -> evaluate / serve

Each takes a recipe name (`"sft/tiny"`, listed by `kositp config list`), a YAML path or the stage's
config object, plus keyword overrides with the config's field names.
"""

__version__ = "0.1.0"

# kositp.serve(...) is the API's serve function; the name is also the serve package, which is made
# callable for that reason (kositp/serve/__init__.py). Importing it here keeps the name one object.
from kositp import serve
from kositp.api import (
    build_data,
    build_pairs,
    evaluate,
    export_model,
    register_source_format,
    resolve_config,
    serve_in_background,
    train_preference,
    train_sft,
)
from kositp.errors import KositpError

__all__ = [
    "KositpError",
    "__version__",
    "build_data",
    "build_pairs",
    "evaluate",
    "export_model",
    "register_source_format",
    "resolve_config",
    "serve",
    "serve_in_background",
    "train_preference",
    "train_sft",
]
