"""The fast CPU LM head gives the same loss, entropy and gradients as computing the full logits."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kositp.train import fast_lm_head
from kositp.train.fast_lm_head import FastLabelLogProb


def _reference(hidden, weight, bias, targets, temperature, softcap, scale):
    z = F.linear(hidden, weight, bias).float() * scale
    if softcap is not None:
        z = softcap * torch.tanh(z / softcap)
    logp = torch.log_softmax(z / temperature, dim=-1)
    logprobs = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    entropy = -(logp.exp() * logp).sum(-1)
    return logprobs, entropy, torch.logsumexp(2 * logp, -1), (z / temperature).mean(-1), logp.argmax(-1) == targets


def _inputs(n, hidden_size, vocab, seed, weight_grad=False, with_bias=False):
    gen = torch.Generator().manual_seed(seed)
    hidden = (torch.randn(n, hidden_size, generator=gen) * 2).requires_grad_()
    weight = (torch.randn(vocab, hidden_size, generator=gen) / hidden_size**0.5).requires_grad_(weight_grad)
    bias = torch.randn(vocab, generator=gen).requires_grad_(weight_grad) if with_bias else None
    targets = torch.randint(0, vocab, (n,), generator=gen)
    return hidden, weight, bias, targets


def _grads(fn, hidden, weight, bias, targets, entropy_weight):
    tensors = [t for t in (hidden, weight, bias) if t is not None and t.requires_grad]
    for t in tensors:
        t.grad = None
    logprobs, entropy, *rest = fn()
    loss = -logprobs.sum() / len(targets)
    if entropy_weight:
        loss = loss + entropy_weight * entropy.sum()
    loss.backward()
    return loss.detach(), [logprobs.detach(), entropy.detach(), *[r.detach() for r in rest]], [t.grad for t in tensors]


@pytest.mark.parametrize(
    "n,softcap,scale,temperature,entropy_weight,weight_grad,with_bias",
    [
        (7, None, 1.0, 1.0, 0.0, False, False),  # the LoRA SFT case: frozen head, loss on log-probs only
        (600, None, 1.0, 1.0, 0.0, False, False),  # several token chunks and vocabulary slices
        (300, 30.0, 0.5, 0.7, 0.3, True, True),  # softcap, logit scale, temperature, entropy in the loss, head trained
        (0, None, 1.0, 1.0, 0.0, False, False),  # a micro-batch without any loss-bearing token
    ],
)
def test_matches_full_logits_in_fp32(monkeypatch, n, softcap, scale, temperature, entropy_weight, weight_grad,
                                     with_bias):
    monkeypatch.setattr(fast_lm_head, "VOCAB_SLICE", 300)  # 1000 = 3 full slices + a short one, merged online
    monkeypatch.setattr(fast_lm_head, "SLICED_TOKEN_CHUNK", 250)
    hidden, weight, bias, targets = _inputs(n, 32, 1000, seed=n, weight_grad=weight_grad, with_bias=with_bias)
    grads = _compare(hidden, weight, weight, bias, targets, (temperature, softcap, scale), entropy_weight)
    assert len(grads) == 1 + 2 * weight_grad


@pytest.mark.parametrize(
    "n,softcap,scale,temperature,entropy_weight,with_bias",
    [
        (7, None, 1.0, 1.0, 0.0, False),  # the LoRA SFT case
        (130, 30.0, 0.5, 0.7, 0.3, True),  # several token chunks, every transform, entropy in the loss
        (0, None, 1.0, 1.0, 0.0, False),
    ],
)
def test_a_bf16_stored_frozen_head_matches_its_fp32_widening(monkeypatch, n, softcap, scale, temperature,
                                                              entropy_weight, with_bias):
    """`frozen_embedding_dtype: bfloat16`: each vocabulary slice widened to fp32 on the fly."""
    monkeypatch.setattr(fast_lm_head, "VOCAB_SLICE", 300)  # 1000 = 3 full slices + a short one
    monkeypatch.setattr(fast_lm_head, "SLICED_TOKEN_CHUNK", 50)
    hidden, weight, bias, targets = _inputs(n, 32, 1000, seed=n + 1, with_bias=with_bias)
    stored = weight.detach().to(torch.bfloat16)
    grads = _compare(hidden, stored, stored.float(), bias, targets, (temperature, softcap, scale), entropy_weight)
    assert len(grads) == 1 and grads[0].dtype == torch.float32


def _compare(hidden, weight, reference_weight, bias, targets, transforms, entropy_weight):
    """The fast head with `weight` against full logits with `reference_weight`: loss, every output, gradients."""
    temperature, softcap, scale = transforms
    outputs = ("log_probs", "entropy", "log_sum_sq_probs", "mean_logits", "is_top1")

    def fast():
        return FastLabelLogProb.apply(hidden, weight, bias, targets, temperature, 0, softcap, scale, outputs)

    def ref():
        return _reference(hidden, reference_weight, bias, targets, temperature, softcap, scale)

    loss_f, out_f, grads_f = _grads(fast, hidden, weight, bias, targets, entropy_weight)
    loss_r, out_r, grads_r = _grads(ref, hidden, reference_weight, bias, targets, entropy_weight)
    if len(targets):
        torch.testing.assert_close(loss_f, loss_r, rtol=1e-5, atol=1e-5)
    for got, want in zip(out_f, out_r, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert len(grads_f) == len(grads_r)
    for got, want in zip(grads_f, grads_r, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    return grads_f


def test_bf16_autocast_stays_close_to_fp32():
    hidden, weight, _, targets = _inputs(64, 64, 2000, seed=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fast, *_ = FastLabelLogProb.apply(hidden, weight, None, targets, 1.0, 0, None, 1.0, ("log_probs",))
    (-fast.mean()).backward()
    grad_fast = hidden.grad.clone()
    hidden.grad = None
    ref, *_ = _reference(hidden, weight, None, targets, 1.0, None, 1.0)
    (-ref.mean()).backward()
    assert abs(fast.mean().item() - ref.mean().item()) / abs(ref.mean().item()) < 0.01
    cos = F.cosine_similarity(grad_fast.flatten(), hidden.grad.flatten(), dim=0)
    assert cos > 0.99


def test_tiny_lora_model_loss_and_grads_match_the_models_own_loss(tiny_model_dir, fast_head):
    """Through TRL's fused head on a PEFT-wrapped model, as the SFT trainer runs it (padding-free position ids)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", lora_dropout=0.0,
                                             init_lora_weights=False))
    vocab = model.config.vocab_size
    gen = torch.Generator().manual_seed(3)
    input_ids = torch.randint(4, vocab, (1, 40), generator=gen)
    position_ids = torch.cat([torch.arange(25), torch.arange(15)]).unsqueeze(0)  # two packed samples
    labels = input_ids.clone()
    labels[0, :10] = -100  # prompt of sample 1
    labels[0, 25:31] = -100  # prompt of sample 2
    trainable = [p for p in model.parameters() if p.requires_grad]

    def run(**kwargs):
        model.zero_grad()
        loss = model(input_ids=input_ids, position_ids=position_ids, labels=labels, **kwargs).loss
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in trainable]

    loss_fast, grads_fast = run(fused_lm_head=True)
    # the model's own forward: full logits + transformers' cross-entropy. use_cache=False as the trainer passes it:
    # with a cache, transformers does not split packed samples by position ids and the losses differ
    loss_full, grads_full = run(use_cache=False)
    torch.testing.assert_close(loss_fast, loss_full, rtol=1e-5, atol=1e-5)
    assert len(grads_fast) == len(grads_full) > 0
    for got, want in zip(grads_fast, grads_full, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
