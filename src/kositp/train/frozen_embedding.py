"""Keep a frozen (tied) token embedding in bfloat16 while the rest of the model trains in float32.

Gemma 3's 262k x 640 embedding is 640 MB in fp32, two thirds of gemma-3-270m, and LoRA never
changes it: stored in bf16 it takes half that. Nothing downstream sees bf16:

- the input lookup reads bf16 rows and widens them before the embedding scale, so the layers get
  fp32 activations as before;
- the tied output head is consumed by the fast LM head (`fast_lm_head`), which widens the bf16
  matrix to fp32 one vocabulary slice at a time (a full fp32 copy would undo the saving);
- a direct call of the output layer (anything outside that path) widens the weight for that call.

The only numerical change is the rounding of each embedding value to bf16 (8 bits of mantissa),
which is lossless for checkpoints stored in bf16 and well below the Q4 quantisation error of the
embedded default model. The adapter is saved as usual; the run's embedding is never written.
`restore_frozen_embedding` puts the model's dtype and forwards back when the training call ends
(`kositp.train.speedups` scopes the two): the original weights where they were file-backed (as
loaded from safetensors), else the bf16 values widened to fp32.
"""

from __future__ import annotations

import ctypes
import functools
import mmap
import sys

import torch
import torch.nn.functional as F

from kositp.dtypes import torch_dtype

MADV_DONTNEED = 4


def _embed_widened(module: torch.nn.Embedding, input_ids: torch.Tensor) -> torch.Tensor:
    out = F.embedding(input_ids, module.weight, module.padding_idx).float()
    scale = getattr(module, "embed_scale", None)  # Gemma's sqrt(hidden_size) scaling, applied in fp32
    return out * scale.float() if isinstance(scale, torch.Tensor) else out


def _linear_widened(module: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return F.linear(x, module.weight.to(x.dtype), None if module.bias is None else module.bias.to(x.dtype))


def _release_file_pages(replaced: torch.Tensor) -> bool:
    """Drop the resident pages of a replaced tensor that lives in a file mapping; True if it did.

    transformers maps safetensors files privately and gives each parameter a view into the
    mapping, which stays as long as any parameter does: without this the old fp32 embedding would
    stay resident (and counted) beside its bf16 copy. Only file-backed ranges are touched: their
    pages can always be read again from the file, and nothing refers to this range any more.
    """
    if not sys.platform.startswith("linux") or replaced.device.type != "cpu":
        return False
    start = replaced.data_ptr()
    end = start + replaced.numel() * replaced.element_size()
    try:
        with open("/proc/self/maps", encoding="utf-8") as maps:
            backing = next((line.split(maxsplit=5) for line in maps
                            if _in_range(line, start, end)), None)
    except OSError:
        return False
    if backing is None or len(backing) < 6 or not backing[5].strip().startswith("/"):
        return False  # anonymous memory: freeing the tensor returns it
    page = mmap.PAGESIZE
    first, last = -(-start // page) * page, end // page * page
    if last <= first:
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.madvise(ctypes.c_void_p(first), ctypes.c_size_t(last - first), MADV_DONTNEED) == 0


def _in_range(maps_line: str, start: int, end: int) -> bool:
    low, high = (int(x, 16) for x in maps_line.split(maxsplit=1)[0].split("-"))
    return low <= start and end <= high


# Where a module keeps its replaced fp32 weight when that weight lives in a file mapping: its pages
# are dropped, so it costs nothing resident, and restoring gives the exact weights back without a
# new fp32 allocation.
ORIGINAL_WEIGHT = "_kositp_file_backed_weight"


def _narrow(module: torch.nn.Module, dtype: torch.dtype) -> None:
    old = module.weight.data
    module.weight.data = old.to(dtype)
    if _release_file_pages(old):
        module.__dict__[ORIGINAL_WEIGHT] = old


def store_frozen_embedding(model, dtype_name: str) -> str | None:
    """Convert the frozen input embedding (and its tied head) to `dtype_name` in place.

    Returns None when done, else why it was left alone (the run goes on in the model's dtype).
    """
    if dtype_name == "float32":
        return "frozen_embedding_dtype is float32"
    dtype = torch_dtype(dtype_name)
    embedding = model.get_input_embeddings()
    if type(embedding).forward is not torch.nn.Embedding.forward and not hasattr(embedding, "embed_scale"):
        return f"the input embedding is a {type(embedding).__name__}, not a plain (or scaled) embedding"
    weight = embedding.weight
    if weight.requires_grad:
        return "the embedding is trained in this run"
    if weight.dtype != torch.float32:
        return f"the embedding is already {weight.dtype}"
    head = model.get_output_embeddings()
    tied = head is not None and head.weight is weight
    if head is not None and not tied and head.weight.requires_grad:
        return "the output head is trained in this run"
    with torch.no_grad():
        _narrow(embedding, dtype)  # same Parameter object: a tied head follows
        if head is not None and not tied:
            _narrow(head, dtype)
    embedding.forward = functools.partial(_embed_widened, embedding)
    if isinstance(head, torch.nn.Linear):
        head.forward = functools.partial(_linear_widened, head)
    return None


def restore_frozen_embedding(model, dtype: torch.dtype = torch.float32) -> None:
    """Undo `store_frozen_embedding`: the class forwards again, and the embedding (and an untied head) back in
    `dtype`: the original file-backed tensor when there was one (exact), else the bf16 values widened."""
    embedding, head = model.get_input_embeddings(), model.get_output_embeddings()
    with torch.no_grad():
        for module in (embedding, head):
            if module is None:
                continue
            module.__dict__.pop("forward", None)  # the instance override; the class's forward shows through
            original = module.__dict__.pop(ORIGINAL_WEIGHT, None)
            if original is not None:
                module.weight.data = original
            elif module.weight.dtype != dtype:
                module.weight.data = module.weight.data.to(dtype)  # a tied head shares the Parameter
