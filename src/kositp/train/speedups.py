"""CPU speed-ups for one training call, installed on entry and put back on exit.

TRL's trainers compute the loss through one kernel slot, `trl.trainer.utils._ChunkedLogProbFunction`,
which holds a Triton kernel on CUDA and `None` on the CPU wheel (every trainer then fails on its
first step). `cpu_speedups(cpu, model)` fills that slot with kositp's CPU kernel (`fast_lm_head` or
the plain `cpu_logprob`), optionally holds the frozen embedding in bf16 (`frozen_embedding`), and
restores both when the call ends, so no later trainer in the process inherits them. It yields what
it did, which the run records in run.json under `speedups`.

The slot is TRL's internal: `TRL_VERSIONS` names the releases whose call (`.apply(hidden, weight,
bias, targets, temperature, chunk_size, softcap, logit_scale, outputs)` -> five tensors) the CPU
kernels were written against. Where TRL has its own kernel (Triton) nothing is replaced on any
version. Without Triton, another TRL release gets the CPU kernel only if its slot still exists and
its version is in range; otherwise the run stops with one clear line, never with a kernel called
in a way it was not written for.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any, Literal

from kositp.errors import KositpError

TRL_VERSIONS = ">=1.15.0,<1.16"
FAST_KERNEL = "kositp fast_lm_head"
PLAIN_KERNEL = "kositp cpu_logprob"
TRL_KERNEL = "trl (its own Triton kernel)"


def trl_version_problem() -> str | None:
    """Why kositp's CPU kernel must not go into this TRL's slot, or None when it fits."""
    import trl
    import trl.trainer.utils as trl_utils
    from packaging.specifiers import SpecifierSet

    if trl.__version__ not in SpecifierSet(TRL_VERSIONS, prereleases=True):
        return f"TRL {trl.__version__} is outside the releases kositp's CPU LM head was written for ({TRL_VERSIONS})"
    if not hasattr(trl_utils, "_ChunkedLogProbFunction"):
        return f"TRL {trl.__version__} has no trl.trainer.utils._ChunkedLogProbFunction slot"
    return None


@contextmanager
def lm_head_kernel(kind: Literal["fast", "plain"]) -> Iterator[str]:
    """Fill TRL's empty kernel slot with kositp's `kind` kernel for the block; yields which kernel runs."""
    import trl.trainer.utils as trl_utils

    from kositp.train import fast_lm_head
    from kositp.train.cpu_logprob import ChunkedLogProb

    original = getattr(trl_utils, "_ChunkedLogProbFunction", None)
    if original is not None:
        yield TRL_KERNEL
        return
    problem = trl_version_problem()
    if problem:
        raise KositpError(f"{problem}, and without Triton TRL has no loss kernel of its own: install the pinned "
                          "trl (constraints.txt)")
    trl_utils._ChunkedLogProbFunction = fast_lm_head.FastLabelLogProb if kind == "fast" else ChunkedLogProb
    try:
        yield FAST_KERNEL if kind == "fast" else PLAIN_KERNEL
    finally:
        trl_utils._ChunkedLogProbFunction = original
        fast_lm_head.clear_cache()


@contextmanager
def frozen_embedding_held(model, dtype_name: str) -> Iterator[str]:
    """Hold `model`'s frozen embedding in `dtype_name` for the block; yields what was done (or why not)."""
    from kositp.train.frozen_embedding import restore_frozen_embedding, store_frozen_embedding

    why_not = store_frozen_embedding(model, dtype_name)
    if why_not:
        yield f"kept in the model's dtype: {why_not}"
        return
    try:
        yield f"stored in {dtype_name}"
    finally:
        restore_frozen_embedding(model)


@contextmanager
def cpu_speedups(cpu: Any, model) -> Iterator[dict[str, str]]:
    """Enter the speed-ups `cpu` (a `CpuSettings`) enables around one training call on `model`."""
    from kositp.train.host_memory import set_mmap_threshold

    with ExitStack() as stack:
        kernel = stack.enter_context(lm_head_kernel("fast" if cpu.fast_lm_head else "plain"))
        active = {"lm_head": kernel}
        if cpu.frozen_embedding_dtype != "float32":
            if kernel == FAST_KERNEL:  # only the fast head widens a bf16 head slice by slice
                active["frozen_embedding"] = stack.enter_context(frozen_embedding_held(model, cpu.frozen_embedding_dtype))
            else:
                active["frozen_embedding"] = f"kept in the model's dtype: the LM head is {kernel}"
        if set_mmap_threshold(cpu.malloc_mmap_threshold_kib):
            # glibc has no way back to its dynamic threshold: the setting is process-wide, so say so
            active["malloc_mmap_threshold"] = f"{cpu.malloc_mmap_threshold_kib} KiB for the rest of this process"
        yield active


def train_with_speedups(trainer, cpu: Any, resume_from: str | None = None):
    """`trainer.train()` with the speed-ups of `cpu` in place; returns (TrainOutput, what was active)."""
    with cpu_speedups(cpu, trainer.model) as active:
        result = trainer.train(resume_from_checkpoint=resume_from)
    return result, active
