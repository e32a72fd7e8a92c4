"""A faster CPU LM head for TRL's fused log-probability slot: one autograd Function, hand-written backward.

TRL 1.15 projects only the positions whose label is kept and asks a kernel for per-token
log-probabilities (plus entropy and top-1 for its metrics). The CPU wheel has no Triton kernel, so
`cpu_logprob.ChunkedLogProb` fills the slot with plain ops under activation checkpointing. That is
correct but, for Gemma's 262k vocabulary, most of its time goes into ~20 element-wise passes over
the `[tokens, vocab]` logits (fp32 upcast, scaling, logsumexp, entropy, argmax, then all of them
again in the recompute, then autograd's backward of each) rather than into the three matmuls.

`LabelLogProb` keeps the three matmuls (forward, recompute, input gradient) and cuts the passes.
In fp32 (the CPU default) it walks the vocabulary in slices of `VOCAB_SLICE` rows, all tokens at a
time, so each slice of the head is read from memory once per pass and reused across the tokens:

- forward, per slice: `z = h @ W[slice]^T`, then the running max, `sum exp(z - max)` and
  `sum exp(z - max) z` (entropy), the target logit and the argmax, merged across slices online as in
  flash attention; only per-token vectors are kept, never the logits;
- backward, per slice: recompute `z`, `p = exp(z - log_z)` in place, `dz = g * (p - onehot)` in
  place, then `dh += dz @ W[slice]` (and `dW[slice] = dz^T @ h` only when the head is trained).

Walking tokens in chunks instead (every chunk reading the whole 640 MB head) was memory-bound:
400 tokens of Gemma 3 took 7.0 s forward + backward in chunks of 256 rows, 4.5 s in slices.
A head stored in bf16 (`frozen_embedding_dtype`) is widened one slice at a time, never whole.

Under bf16 autocast (CPUs with AVX512-BF16) the head goes by token chunks in bf16 instead, with the
bf16 copy of a frozen head made once and reused rather than re-cast for every chunk of every step.

Gradients are exact for `log_probs` and `entropy` (dH/dz = p * (sum(p z) - z)); the other outputs
are metrics and returned detached, as in `cpu_logprob`. `tests/test_fast_lm_head.py` checks loss,
entropy and gradients against the full-logits computation.
"""

from __future__ import annotations

import torch

# bf16 autocast path: tokens per chunk (256 x 262k logits).
TOKEN_CHUNK = 256
# fp32 path: head rows per slice (10 MB for d=640, cache-sized) and tokens per walk over the slices
# (each walk reads the head once; the slice's logits are 1024 x 4096 x 4 B = 16 MB).
VOCAB_SLICE = 4096
SLICED_TOKEN_CHUNK = 1024

_frozen_cast: dict[tuple, torch.Tensor] = {}


def _compute_weight(weight: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """`weight` in the compute dtype; a frozen weight's copy is cached (keyed on storage and version)."""
    if weight.dtype == dtype:
        return weight
    if weight.requires_grad:
        return weight.detach().to(dtype)
    key = (weight.data_ptr(), weight._version, tuple(weight.shape), dtype)
    cached = _frozen_cast.get(key)
    if cached is None:
        _frozen_cast.clear()  # one head at a time; a new version replaces the old copy
        cached = _frozen_cast[key] = weight.detach().to(dtype)
    return cached


def _logits(h, w, bias, scale, softcap, temperature):
    """fp32 logits of one chunk with the model's scale, softcap and temperature applied (in place)."""
    z = (h @ w.t()).float()
    if bias is not None:
        z += bias.float()
    if scale != 1.0:
        z *= scale
    if softcap is not None:
        z /= softcap
        z.tanh_()
        z *= softcap
    if temperature != 1.0:
        z /= temperature
    return z


def _rows(t: torch.Tensor | None, s: int, e: int) -> torch.Tensor | None:
    return None if t is None else t[s:e]


def _logits_grad(z, log_z, entropy, g_logprobs, g_entropy, targets, temperature, softcap, scale):
    """d loss / d (pre-scale logits) of one block, computed in place of `z` where possible.

    `z` holds the block's final logits (a column slice of the vocabulary is fine); `targets` are
    column indices into it, or -1 for rows whose target lies outside the block.
    """
    capped = z.clone() if softcap is not None else None
    z -= log_z.unsqueeze(1)  # log p
    dz = torch.exp(z) if g_entropy is not None else z.exp_()  # p
    # d logprob / dz = onehot - p;  d entropy / dz = -p * (log p + H)
    # so dz = -p * coef + g_logprobs * onehot, coef = g_entropy * (log p + H) + g_logprobs
    if g_entropy is not None:
        coef = z.add_(entropy.unsqueeze(1)).mul_(g_entropy.unsqueeze(1))
        if g_logprobs is not None:
            coef += g_logprobs.unsqueeze(1)
        dz.mul_(coef).neg_()
    else:
        dz.mul_(-g_logprobs.unsqueeze(1))
    if g_logprobs is not None:
        inside = targets >= 0
        dz.scatter_add_(1, targets.clamp_min(0).unsqueeze(1), (g_logprobs * inside).unsqueeze(1))
    # back through temperature, softcap and scale
    if temperature != 1.0:
        dz /= temperature
    if softcap is not None:
        capped *= temperature / softcap  # tanh(x / softcap)
        dz *= 1 - capped.square_()
    if scale != 1.0:
        dz *= scale
    return dz


# --------------------------------------------------------------------------- fp32: by vocabulary slices


def _by_vocab_slices(dtype: torch.dtype) -> bool:
    return dtype == torch.float32


def _sliced_forward(hidden, weight, bias, targets, temperature, softcap, scale, flags):
    want_entropy, want_sq, want_mean = flags
    n, vocab = hidden.shape[0], weight.shape[0]
    out = {k: hidden.new_zeros(n, dtype=torch.float32) for k in ("logprobs", "log_z", "entropy", "sq", "mean")}
    top1 = torch.zeros(n, dtype=torch.bool, device=hidden.device)
    for s in range(0, n, SLICED_TOKEN_CHUNK):
        e = min(s + SLICED_TOKEN_CHUNK, n)
        h, t = hidden[s:e].float(), targets[s:e]
        rows = e - s
        run_max = h.new_full((rows,), float("-inf"))
        sum_exp, sum_exp_z, sum_exp2, sum_z = (h.new_zeros(rows) for _ in range(4))
        target_logit = h.new_zeros(rows)
        best, best_idx = h.new_full((rows,), float("-inf")), torch.zeros(rows, dtype=torch.long, device=h.device)
        for v0 in range(0, vocab, VOCAB_SLICE):
            v1 = min(v0 + VOCAB_SLICE, vocab)
            z = _logits(h, weight[v0:v1].float(), None if bias is None else bias[v0:v1], scale, softcap,
                        temperature)
            block_max, block_idx = z.max(-1)
            better = block_max > best
            best = torch.where(better, block_max, best)
            best_idx = torch.where(better, block_idx + v0, best_idx)
            inside = (t >= v0) & (t < v1)
            target_logit += torch.where(inside, z.gather(1, (t - v0).clamp(0, v1 - v0 - 1).unsqueeze(1)).squeeze(1), 0.0)
            if want_mean:
                sum_z += z.sum(-1)
            new_max = torch.maximum(run_max, block_max)
            rescale = torch.exp(run_max - new_max)
            p = torch.exp(z - new_max.unsqueeze(1))  # unnormalised, <= 1
            sum_exp.mul_(rescale).add_(p.sum(-1))
            if want_entropy:
                sum_exp_z.mul_(rescale).add_(torch.linalg.vecdot(p, z))
            if want_sq:
                sum_exp2.mul_(rescale.square()).add_(torch.linalg.vecdot(p, p))
            run_max = new_max
        lz = run_max + sum_exp.log()
        out["log_z"][s:e] = lz
        out["logprobs"][s:e] = target_logit - lz
        top1[s:e] = best_idx == t
        if want_mean:
            out["mean"][s:e] = sum_z / vocab
        if want_entropy:
            out["entropy"][s:e] = lz - sum_exp_z / sum_exp
        if want_sq:  # log sum p^2 = log sum exp(2 (z - m)) + 2 m - 2 log Z
            out["sq"][s:e] = sum_exp2.log() + 2 * run_max - 2 * lz
    return out["logprobs"], out["log_z"], out["entropy"], out["sq"], out["mean"], top1


def _sliced_backward(hidden, weight, bias, targets, log_z, entropy, g_logprobs, g_entropy, temperature, softcap,
                     scale, needs):
    need_h, need_w, need_b = needs
    n, vocab = hidden.shape[0], weight.shape[0]
    grad_h = torch.zeros_like(hidden, dtype=torch.float32) if need_h else None
    grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
    grad_b = torch.zeros(vocab, dtype=torch.float32, device=weight.device) if need_b else None
    for s in range(0, n, SLICED_TOKEN_CHUNK):
        e = min(s + SLICED_TOKEN_CHUNK, n)
        h, t = hidden[s:e].float(), targets[s:e]
        for v0 in range(0, vocab, VOCAB_SLICE):
            v1 = min(v0 + VOCAB_SLICE, vocab)
            w = weight[v0:v1].float()  # a view when the head is fp32; widened when stored in bf16
            z = _logits(h, w, None if bias is None else bias[v0:v1], scale, softcap, temperature)
            local = torch.where((t >= v0) & (t < v1), t - v0, -1)
            dz = _logits_grad(z, log_z[s:e], entropy[s:e], _rows(g_logprobs, s, e), _rows(g_entropy, s, e), local,
                              temperature, softcap, scale)
            if need_b:
                grad_b[v0:v1] += dz.sum(0)
            if need_w:
                grad_w[v0:v1] += dz.t() @ h
            if need_h:
                grad_h[s:e] += dz @ w
    return (None if grad_h is None else grad_h.to(hidden.dtype),
            None if grad_w is None else grad_w.to(weight.dtype),
            None if grad_b is None else grad_b.to(bias.dtype))


class LabelLogProb(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, temperature, softcap, scale, flags, dtype):
        want_entropy, want_sq, want_mean = flags
        if _by_vocab_slices(dtype):
            logprobs, log_z, entropy, sq, mean, top1 = _sliced_forward(
                hidden, weight, bias, targets, temperature, softcap, scale, flags)
            ctx.save_for_backward(hidden, weight, bias, targets, log_z, entropy)
            ctx.params = (temperature, softcap, scale, dtype)
            ctx.mark_non_differentiable(sq, mean, top1)
            ctx.set_materialize_grads(False)
            return logprobs, entropy, sq, mean, top1
        n = hidden.shape[0]
        w = _compute_weight(weight, dtype)
        h_all = hidden.to(dtype)
        logprobs = hidden.new_empty(n, dtype=torch.float32)
        log_z = torch.empty_like(logprobs)
        entropy = torch.zeros_like(logprobs)
        sq = torch.zeros_like(logprobs)
        mean = torch.zeros_like(logprobs)
        top1 = torch.empty(n, dtype=torch.bool, device=hidden.device)
        for s in range(0, n, TOKEN_CHUNK):
            e = min(s + TOKEN_CHUNK, n)
            z = _logits(h_all[s:e], w, bias, scale, softcap, temperature)
            t = targets[s:e]
            lz = torch.logsumexp(z, dim=-1)
            log_z[s:e] = lz
            logprobs[s:e] = z.gather(1, t.unsqueeze(1)).squeeze(1) - lz
            top1[s:e] = z.argmax(-1) == t
            if want_mean:
                mean[s:e] = z.mean(-1)
            if want_entropy or want_sq:
                z -= lz.unsqueeze(1)  # log p, in place
                if want_sq:
                    sq[s:e] = torch.logsumexp(2 * z, dim=-1)
                if want_entropy:
                    entropy[s:e] = -torch.linalg.vecdot(torch.exp(z), z)
        ctx.save_for_backward(hidden, weight, bias, targets, log_z, entropy)
        ctx.params = (temperature, softcap, scale, dtype)
        ctx.mark_non_differentiable(sq, mean, top1)
        ctx.set_materialize_grads(False)
        return logprobs, entropy, sq, mean, top1

    @staticmethod
    def backward(ctx, g_logprobs, g_entropy, _g_sq, _g_mean, _g_top1):
        hidden, weight, bias, targets, log_z, entropy = ctx.saved_tensors
        temperature, softcap, scale, dtype = ctx.params
        need_h, need_w, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2]
        if g_logprobs is None and g_entropy is None:
            return (None,) * 9
        if _by_vocab_slices(dtype):
            grads = _sliced_backward(hidden, weight, bias, targets, log_z, entropy, g_logprobs, g_entropy,
                                     temperature, softcap, scale, (need_h, need_w, need_b))
            return (*grads, None, None, None, None, None, None)
        w = _compute_weight(weight, dtype)
        h_all = hidden.to(dtype)
        n = hidden.shape[0]
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
        grad_b = torch.zeros(weight.shape[0], dtype=torch.float32, device=weight.device) if need_b else None
        for s in range(0, n, TOKEN_CHUNK):
            e = min(s + TOKEN_CHUNK, n)
            z = _logits(h_all[s:e], w, bias, scale, softcap, temperature)
            dz = _logits_grad(z, log_z[s:e], entropy[s:e], _rows(g_logprobs, s, e), _rows(g_entropy, s, e),
                              targets[s:e], temperature, softcap, scale)
            if need_b:
                grad_b += dz.sum(0)
            dz_c = dz.to(dtype)
            if need_h:
                grad_h[s:e] = (dz_c @ w).to(hidden.dtype)
            if need_w:
                grad_w += (dz_c.t() @ h_all[s:e]).float()
        return (grad_h, None if grad_w is None else grad_w.to(weight.dtype),
                None if grad_b is None else grad_b.to(bias.dtype), None, None, None, None, None, None)


class FastLabelLogProb:
    """Drop-in for `trl.kernels.ChunkedLogProbFunction` (TRL calls it only through `.apply`)."""

    @staticmethod
    def apply(hidden, weight, bias, targets, temperature, chunk_size, final_logit_softcapping=None,
              logit_scale=1.0, outputs=("entropy", "log_sum_sq_probs", "mean_logits", "is_top1")):
        del chunk_size  # tokens are tiled here, not the vocabulary
        flags = ("entropy" in outputs, "log_sum_sq_probs" in outputs, "mean_logits" in outputs)
        if torch.is_autocast_enabled(hidden.device.type):
            dtype = torch.get_autocast_dtype(hidden.device.type)
        else:
            dtype = hidden.dtype
        logprobs, entropy, sq, mean, top1 = LabelLogProb.apply(
            hidden, weight, bias, targets, float(temperature), final_logit_softcapping, float(logit_scale),
            flags, dtype)
        return (
            logprobs,
            entropy if flags[0] else None,
            sq if flags[1] else None,
            mean if flags[2] else None,
            top1 if "is_top1" in outputs else None,
        )



def clear_cache() -> None:
    """Drop the cached compute-dtype copy of a frozen head (called when a training call ends)."""
    _frozen_cast.clear()
