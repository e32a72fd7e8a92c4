"""A PyTorch implementation of TRL's fused LM-head log-probability kernel, for machines without Triton.

TRL 1.15's SFT, DPO and KTO trainers always run the LM head through `add_fused_lm_head`, which
projects only the positions whose label is kept and computes per-token log-probabilities with a
Triton kernel (`trl.kernels.ChunkedLogProbFunction`). The CPU torch wheel ships without Triton,
so TRL leaves `trl.trainer.utils._ChunkedLogProbFunction = None` and every trainer fails on its
first step. `kositp.train.speedups` fills that slot, for one training call, with `ChunkedLogProb`
below (or the faster `fast_lm_head.FastLabelLogProb`): same arguments, same five
outputs, plain PyTorch ops. It keeps the property that matters for speed on CPU -- logits exist
only at loss-bearing positions -- and bounds memory by recomputing each token chunk's logits in
backward (activation checkpointing) instead of storing `[tokens, vocab]` for the whole batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

# Tokens per chunk: 512 x 262k (Gemma's vocabulary) fp32 logits is ~0.5 GB, recomputed in backward.
TOKEN_CHUNK = 512


def _chunk(hidden, weight, bias, targets, temperature, softcap, logit_scale, want_entropy, want_sq, want_mean):
    z = F.linear(hidden, weight, bias).float() * logit_scale
    if softcap is not None:
        z = softcap * torch.tanh(z / softcap)
    z = z / temperature
    log_z = torch.logsumexp(z, dim=-1)
    logprobs = z.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - log_z
    outputs = [logprobs]
    log_p = z - log_z.unsqueeze(-1)
    outputs.append(-(log_p.exp() * log_p).sum(-1) if want_entropy else torch.zeros_like(logprobs))
    outputs.append(torch.logsumexp(2 * log_p, dim=-1) if want_sq else torch.zeros_like(logprobs))
    outputs.append(z.mean(-1) if want_mean else torch.zeros_like(logprobs))
    # argmax returns the first maximum, matching the kernel's "ties with an earlier token do not count"
    outputs.append((z.argmax(-1) == targets).to(logprobs.dtype))
    return tuple(outputs)


class ChunkedLogProb:
    """Drop-in for `trl.kernels.ChunkedLogProbFunction` (it is called only through `.apply`)."""

    @staticmethod
    def apply(hidden, weight, bias, targets, temperature, chunk_size, final_logit_softcapping=None,
              logit_scale=1.0, outputs=("entropy", "log_sum_sq_probs", "mean_logits", "is_top1")):
        del chunk_size  # the vocabulary is not tiled here; tokens are
        flags = ("entropy" in outputs, "log_sum_sq_probs" in outputs, "mean_logits" in outputs)
        needs_grad = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)
        pieces = []
        for start in range(0, max(hidden.shape[0], 1), TOKEN_CHUNK):
            args = (hidden[start:start + TOKEN_CHUNK], weight, bias, targets[start:start + TOKEN_CHUNK],
                    temperature, final_logit_softcapping, logit_scale, *flags)
            pieces.append(checkpoint(_chunk, *args, use_reentrant=False) if needs_grad else _chunk(*args))
        logprobs, entropy, sq, mean, top1 = (torch.cat(parts) for parts in zip(*pieces, strict=True))
        return (
            logprobs,
            entropy if flags[0] else None,
            sq.detach() if flags[1] else None,
            mean.detach() if flags[2] else None,
            top1.detach().bool() if "is_top1" in outputs else None,
        )

