"""Shared fixtures: a cache home for models built by tests, the tiny model, the benchmarks folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Models built by tests (the tiny model, the converted default model) are cached across runs here.
os.environ.setdefault("KOSITP_HOME", str(REPO / ".cache" / "test-home"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

BENCHMARKS = Path(os.environ.get("KOSITP_BENCHMARKS", REPO.parent / "shared" / "data" / "benchmarks"))


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    """The tiny random Llama with the Korean tokenizer (seed 0), built once and cached."""
    from kositp.models import tiny_model_path

    return tiny_model_path(0)


@pytest.fixture(scope="session")
def default_model_dir() -> Path:
    """The converted gemma-3-270m; the first run converts it (about two minutes)."""
    from kositp.models import ensure_default_model

    return ensure_default_model()


@pytest.fixture(scope="session")
def benchmarks_dir() -> Path:
    if not BENCHMARKS.is_dir():
        pytest.skip(f"benchmark files not found at {BENCHMARKS} (set KOSITP_BENCHMARKS)")
    return BENCHMARKS


@pytest.fixture
def fast_head(monkeypatch):
    """kositp's fast head in TRL's kernel slot for this test (as on a CPU without Triton), restored after."""
    import trl.trainer.utils as trl_utils

    from kositp.train.speedups import FAST_KERNEL, lm_head_kernel

    monkeypatch.setattr(trl_utils, "_ChunkedLogProbFunction", None)
    with lm_head_kernel("fast") as kernel:
        assert kernel == FAST_KERNEL
        yield
