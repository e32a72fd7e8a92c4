"""Selective activation recomputation for gated MLPs (Llama, Gemma, Qwen, Mistral layouts).

A gated MLP `down(act(gate(x)) * up(x))` keeps four intermediate-size tensors per token for the
backward pass (gate and up outputs, the activation, their product): with gemma-3-270m that is half
of all saved activations. `recompute_gated_mlps` makes each MLP keep only what it cannot cheaply
get back: the gated product `act(gate(x)) * up(x)` is computed under non-reentrant activation
checkpointing, so its internals are dropped after the forward pass and recomputed in the backward
pass (two of the MLP's three matmuls, plus the LoRA branches on them). The product itself is kept,
since `down` (and its LoRA branch) needs it. Unlike full gradient checkpointing, attention and
`down` are never recomputed.

The patch replaces `forward` on the module instances only: weights, state dicts, adapters and
exports are unchanged, and results are identical (the RNG state is replayed for LoRA dropout).
"""

from __future__ import annotations

import types

import torch
from torch.utils.checkpoint import checkpoint

GATED_MLP_PARTS = ("gate_proj", "up_proj", "down_proj", "act_fn")


def _gated_product(mlp: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return mlp.act_fn(mlp.gate_proj(x)) * mlp.up_proj(x)


def _forward_recomputing_gate(self, x: torch.Tensor) -> torch.Tensor:
    if torch.is_grad_enabled():
        gated = checkpoint(_gated_product, self, x, use_reentrant=False)
    else:  # inference: nothing is saved anyway
        gated = _gated_product(self, x)
    return self.down_proj(gated)


def recompute_gated_mlps(model: torch.nn.Module) -> int:
    """Patch every gated MLP in `model`; returns how many were patched (0: no gated MLP layout found)."""
    patched = 0
    for module in model.modules():
        if all(hasattr(module, part) for part in GATED_MLP_PARTS) and not getattr(module, "_kositp_recompute", False):
            module.forward = types.MethodType(_forward_recomputing_gate, module)
            module._kositp_recompute = True
            patched += 1
    return patched
