"""Weight dtype names, one map for every stage: `fp32`/`float32`, `bf16`/`bfloat16`, `fp16`/`float16`.

Recipes and flags accept either spelling; code compares and passes on the canonical (torch) name.
"""

from __future__ import annotations

from kositp.errors import KositpError

DTYPE_NAMES = ("float32", "bfloat16", "float16")
CANONICAL = {
    "fp32": "float32", "float32": "float32",
    "bf16": "bfloat16", "bfloat16": "bfloat16",
    "fp16": "float16", "float16": "float16",
}


def canonical_dtype(name: str, choices: tuple[str, ...] = DTYPE_NAMES, what: str = "dtype") -> str:
    """The canonical name of `name` (`bf16` -> `bfloat16`; `auto` stays `auto`).

    A one-line error unless the result is one of `choices`.
    """
    key = name.strip().lower() if isinstance(name, str) else None
    canonical = "auto" if key == "auto" else CANONICAL.get(key)
    if canonical not in choices:
        raise KositpError(f"{what} '{name}' is not one of {', '.join(choices)}")
    return canonical


def torch_dtype(name: str):
    """The `torch.dtype` of a dtype name in either spelling."""
    import torch

    return getattr(torch, canonical_dtype(name))
