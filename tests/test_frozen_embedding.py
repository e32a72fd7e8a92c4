"""`frozen_embedding_dtype: bfloat16`: a bf16-stored frozen embedding trains exactly like its fp32 widening."""

from __future__ import annotations

import copy

import pytest
import torch

from kositp.train import fast_lm_head
from kositp.train.frozen_embedding import _release_file_pages, store_frozen_embedding


def _tiny_gemma3():
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    config = Gemma3TextConfig(vocab_size=600, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=128,
                              sliding_window=16, tie_word_embeddings=True)
    return Gemma3ForCausalLM(config).float()


def _tiny_llama(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)


@pytest.fixture(params=["llama", "gemma3"])
def base_model(request, tiny_model_dir):
    return _tiny_llama(tiny_model_dir) if request.param == "llama" else _tiny_gemma3()


def _with_lora(model):
    from peft import LoraConfig, get_peft_model
    from trl.trainer.utils import add_fused_lm_head

    add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
    torch.manual_seed(1)
    return get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", lora_dropout=0.0,
                                            init_lora_weights=False))


def test_bf16_embedding_matches_the_fp32_model_with_the_same_rounded_values(base_model, monkeypatch, fast_head):
    monkeypatch.setattr(fast_lm_head, "VOCAB_SLICE", 128)  # several slices of the tiny vocabularies
    reference = copy.deepcopy(base_model)
    with torch.no_grad():  # what bf16 storage keeps of each value, held in fp32
        reference.get_input_embeddings().weight.data = reference.get_input_embeddings().weight.data.bfloat16().float()
    reference, stored = _with_lora(reference), _with_lora(base_model)

    assert store_frozen_embedding(stored, "bfloat16") is None
    embedding, head = stored.get_input_embeddings(), stored.get_output_embeddings()
    assert embedding.weight.dtype == torch.bfloat16 and head.weight is embedding.weight  # still tied

    vocab = stored.config.vocab_size
    input_ids = torch.randint(4, vocab, (1, 40), generator=torch.Generator().manual_seed(3))
    position_ids = torch.cat([torch.arange(25), torch.arange(15)]).unsqueeze(0)  # two packed samples
    labels = input_ids.clone()
    labels[0, :10] = -100
    labels[0, 25:31] = -100

    def run(model, **kwargs):
        model.zero_grad()
        loss = model(input_ids=input_ids, position_ids=position_ids, labels=labels, use_cache=False, **kwargs).loss
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters() if p.requires_grad]

    loss_stored, grads_stored = run(stored, fused_lm_head=True)  # as the SFT trainer runs it
    loss_ref, grads_ref = run(reference)  # full fp32 logits, transformers' own loss
    torch.testing.assert_close(loss_stored, loss_ref, rtol=1e-5, atol=1e-5)
    assert len(grads_stored) == len(grads_ref) > 0
    for got, want in zip(grads_stored, grads_ref, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    # anything calling the output layer directly still gets fp32 logits
    with torch.no_grad():
        logits = stored(input_ids=input_ids, use_cache=False).logits
        want = reference(input_ids=input_ids, use_cache=False).logits
    assert logits.dtype == torch.float32
    torch.testing.assert_close(logits, want, rtol=1e-4, atol=1e-4)


def test_a_trained_embedding_is_left_alone(tiny_model_dir):
    model = _tiny_llama(tiny_model_dir)  # full fine-tuning: every weight trains
    why = store_frozen_embedding(model, "bfloat16")
    assert why == "the embedding is trained in this run"
    assert model.get_input_embeddings().weight.dtype == torch.float32


def test_replaced_file_backed_pages_are_dropped_and_anonymous_memory_is_not_touched(tmp_path):
    values = torch.arange(4 * 2**20 // 4, dtype=torch.float32)  # 4 MiB: whole pages inside
    path = tmp_path / "weights.bin"
    values.numpy().tofile(path)
    mapped = torch.from_file(str(path), shared=False, size=values.numel(), dtype=torch.float32)
    assert mapped.sum() == values.sum()  # resident now
    assert _release_file_pages(mapped)
    assert torch.equal(mapped, values)  # pages read again from the file: nothing was lost
    anonymous = values.clone()
    assert not _release_file_pages(anonymous)
    assert torch.equal(anonymous, values)


def test_an_embedding_with_trainable_new_token_rows_is_left_alone(tiny_model_dir):
    """Added chat tokens train their rows (PEFT's trainable_token_indices): that embedding stays as it is."""
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(_tiny_llama(tiny_model_dir), LoraConfig(
        r=4, lora_alpha=8, target_modules="all-linear", trainable_token_indices={"embed_tokens": [5, 6]}))
    why = store_frozen_embedding(model, "bfloat16")
    assert why is not None and "not a plain" in why
    assert all(p.dtype == torch.float32 for p in model.parameters())
