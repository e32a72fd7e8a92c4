"""One dtype map (kositp/dtypes.py): both spellings accepted, anything else a one-line error."""

from __future__ import annotations

import pytest
import torch

from kositp.dtypes import canonical_dtype, torch_dtype
from kositp.errors import KositpError


@pytest.mark.parametrize(("name", "canonical", "dtype"), [
    ("fp32", "float32", torch.float32), ("float32", "float32", torch.float32),
    ("bf16", "bfloat16", torch.bfloat16), ("BFloat16", "bfloat16", torch.bfloat16),
    ("fp16", "float16", torch.float16), ("float16", "float16", torch.float16),
])
def test_both_spellings_name_the_same_dtype(name, canonical, dtype):
    assert canonical_dtype(name) == canonical
    assert torch_dtype(name) is dtype


def test_unknown_or_excluded_dtypes_are_one_line_errors():
    with pytest.raises(KositpError, match=r"^dtype 'int8' is not one of float32, bfloat16, float16$"):
        canonical_dtype("int8")
    with pytest.raises(KositpError, match=r"^--dtype 'fp16' is not one of float32, bfloat16$"):
        canonical_dtype("fp16", ("float32", "bfloat16"), "--dtype")


def test_load_model_takes_either_spelling(tiny_model_dir):
    from kositp.models import load_model

    assert next(load_model(str(tiny_model_dir), "bf16").parameters()).dtype is torch.bfloat16
    with pytest.raises(KositpError, match="^dtype 'int4' is not one of float32, bfloat16, float16, auto$"):
        load_model(str(tiny_model_dir), "int4")
