"""Where a decode step's time goes, and how fast it could physically be on this machine.

`step_anatomy` times whole decode steps of a loaded model at a few batch sizes, and its output
projection alone on the same number of rows: for a small model with a large vocabulary
(gemma-3-270m: 640 x 262,144) that projection is most of the weights a step reads.

`ceiling` turns the model's weight traffic into upper bounds on decode tokens/s: every step reads
every weight once (bytes ÷ the measured copy bandwidth) and does 2 FLOPs per weight per row
(FLOPs ÷ the measured matmul peak); a step can be no faster than the larger of the two. The
embedding lookup (one row per token), norms, attention over a short cache and sampling are left
out: they add little traffic at these lengths, so the bound is optimistic, never pessimistic.
"""

from __future__ import annotations

import statistics
import time
from typing import Any


def weight_traffic(model) -> dict[str, float]:
    """Bytes of weights a decode step reads and FLOPs per generated token, from the model's linear layers."""
    size = next(model.parameters()).element_size()
    head = model.get_output_embeddings()
    linear_weights, counted = 0, []
    for name, module in model.named_modules():
        if any(name.startswith(prefix) for prefix in counted):
            continue  # the inner layer of one counted already (a RowSplitLinear's oneDNN half)
        if hasattr(module, "in_features") and hasattr(module, "out_features"):
            linear_weights += module.in_features * module.out_features
            counted.append(name + ".")
    head_weights = head.in_features * head.out_features
    return {"bytes_per_step": linear_weights * size, "output_projection_bytes": head_weights * size,
            "flops_per_token": 2 * linear_weights, "bytes_per_weight": size}


def ceiling(traffic: dict[str, float], bandwidth_gbs: float, peak_gflops: float, batch: int) -> dict[str, float]:
    """Upper bounds on tokens/s at `batch` rows: from weight bytes ÷ bandwidth and from FLOPs ÷ matmul peak."""
    memory_s = traffic["bytes_per_step"] / (bandwidth_gbs * 1e9)
    compute_s = batch * traffic["flops_per_token"] / (peak_gflops * 1e9)
    return {"batch": batch, "memory_bound_step_s": memory_s, "compute_bound_step_s": compute_s,
            "tokens_per_s": batch / max(memory_s, compute_s), "bound": "memory" if memory_s >= compute_s else "compute"}


def step_anatomy(model, prompts: list[list[int]], pad_id: int, batch_sizes: list[int], steps: int = 6) -> list[dict[str, Any]]:
    """Median seconds of a decode step and of the output projection alone, per batch size.

    Each batch is the prompts (repeated as needed) prefilled together, then `steps` greedy decode
    steps after one warm-up step, the way the serving engine calls the model (left padding,
    explicit positions, `logits_to_keep=1`). The projection is timed right after each step on as
    many rows, so a busy machine slows both alike.
    """
    import torch

    from kositp.batching import left_pad

    head = model.get_output_embeddings()
    dtype = next(model.parameters()).dtype
    results = []
    with torch.inference_mode():
        for batch in batch_sizes:
            padded = left_pad([prompts[i % len(prompts)] for i in range(batch)], pad_id)
            mask = padded.attention_mask
            out = model(input_ids=padded.input_ids, attention_mask=mask, position_ids=padded.position_ids,
                        use_cache=True, logits_to_keep=1)
            cache = out.past_key_values
            next_ids = out.logits[:, -1].argmax(-1, keepdim=True)
            hidden = torch.randn(batch, 1, head.in_features, dtype=dtype)
            step_s, head_s = [], []
            for i in range(steps + 1):
                mask = torch.cat([mask, torch.ones((batch, 1), dtype=mask.dtype)], dim=-1)
                start = time.perf_counter()
                out = model(input_ids=next_ids, attention_mask=mask, position_ids=mask.sum(-1, keepdim=True) - 1,
                            past_key_values=cache, use_cache=True, logits_to_keep=1)
                next_ids = out.logits[:, -1].argmax(-1, keepdim=True)
                middle = time.perf_counter()
                head(hidden)
                end = time.perf_counter()
                if i:  # the first step is a warm-up
                    step_s.append(middle - start)
                    head_s.append(end - middle)
            step, projection = statistics.median(step_s), statistics.median(head_s)
            results.append({"batch": batch, "step_s": step, "output_projection_s": projection,
                            "output_projection_fraction": projection / step, "tokens_per_s": batch / step})
    return results
