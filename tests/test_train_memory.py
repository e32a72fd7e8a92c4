"""The CPU memory levers of training: selective MLP recomputation and the fixed mmap threshold."""

from __future__ import annotations

import copy

import pytest
import torch

from kositp.train.host_memory import set_mmap_threshold
from kositp.train.recompute import recompute_gated_mlps


def _loss_and_grads(model, batch):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(0)
    loss = model(**batch).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _saved_bytes(model, batch) -> int:
    """Bytes autograd keeps for the backward pass (activations only: parameters are not counted)."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:
            seen[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(**batch).loss.backward()
    return sum(seen.values())


@pytest.mark.parametrize("lora_dropout", [0.0, 0.1])
def test_recomputed_mlps_give_identical_loss_and_grads_with_fewer_saved_activations(tiny_model_dir, lora_dropout):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    torch.manual_seed(1)
    plain = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, lora_dropout=lora_dropout,
                                            target_modules="all-linear", init_lora_weights=False))
    plain.train()
    patched = copy.deepcopy(plain)
    n_layers = plain.get_base_model().config.num_hidden_layers
    assert recompute_gated_mlps(patched) == n_layers
    assert recompute_gated_mlps(patched) == 0, "patching twice must be a no-op"

    ids = torch.randint(5, 4000, (2, 48), generator=torch.Generator().manual_seed(3))
    batch = {"input_ids": ids, "labels": ids}
    loss_a, grads_a = _loss_and_grads(plain, batch)
    loss_b, grads_b = _loss_and_grads(patched, batch)
    torch.testing.assert_close(loss_b, loss_a, rtol=0, atol=0)
    assert grads_a.keys() == grads_b.keys() and any("mlp" in n for n in grads_a)
    for name in grads_a:
        torch.testing.assert_close(grads_b[name], grads_a[name], rtol=1e-6, atol=1e-7, msg=name)
    # gate output, up output and the activation no longer stay: three intermediate-size floats per token and layer
    config = plain.get_base_model().config
    dropped = 3 * ids.numel() * config.intermediate_size * n_layers * 4
    assert _saved_bytes(plain, batch) - _saved_bytes(patched, batch) >= dropped

    plain.eval(), patched.eval()
    with torch.no_grad():  # inference through the patched forward is unchanged
        torch.testing.assert_close(patched(input_ids=ids).logits, plain(input_ids=ids).logits, rtol=0, atol=0)


def test_mmap_threshold_is_accepted_on_linux_glibc():
    assert set_mmap_threshold(None) is False
    import platform

    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert set_mmap_threshold(64) is True
