"""oneDNN linears for CPU inference (kositp/cpu_linear.py): same outputs, and only where they apply."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kositp.cpu_linear import OneDNNLinear, use_onednn_linears

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN")


def _tiny_gemma(vocab: int):
    """Random two-layer Gemma 3 with a tied output projection (as gemma-3-270m)."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    config = Gemma3TextConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                              num_attention_heads=2, num_key_value_heads=1, head_dim=32, sliding_window=24,
                              layer_types=["sliding_attention", "full_attention"], max_position_embeddings=512,
                              tie_word_embeddings=True)
    torch.manual_seed(0)
    return Gemma3ForCausalLM(config).eval()


def test_onednn_linear_matches_nn_linear_for_any_leading_shape():
    torch.manual_seed(0)
    for bias in (True, False):
        dense = nn.Linear(48, 96, bias=bias)
        fast = OneDNNLinear(dense)
        for shape in [(1, 48), (5, 48), (2, 3, 48), (2, 1, 7, 48)]:
            x = torch.randn(*shape)
            torch.testing.assert_close(fast(x), dense(x), rtol=1e-5, atol=1e-5)
        x = torch.randn(48, 4).t()  # non-contiguous input
        torch.testing.assert_close(fast(x), dense(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("which", ["llama", "gemma"])
def test_models_answer_the_same_with_onednn_linears(which, tiny_model_dir):
    from kositp.models import load_model, load_tokenizer

    tokenizer = load_tokenizer(str(tiny_model_dir))
    model = load_model(str(tiny_model_dir), "float32").eval() if which == "llama" else _tiny_gemma(len(tokenizer))
    linears = sum(type(m) is nn.Linear for m in model.modules())
    ids = torch.tensor([tokenizer("대한민국 헌법 제1조는 무엇인가요?", add_special_tokens=False)["input_ids"]] * 2)
    with torch.inference_mode():
        logits_before = model(input_ids=ids).logits
        tokens_before = model.generate(ids, max_new_tokens=12, do_sample=False, pad_token_id=0)
    assert use_onednn_linears(model) == linears > 0
    assert not any(type(m) is nn.Linear for m in model.modules())
    with torch.inference_mode():
        torch.testing.assert_close(model(input_ids=ids).logits, logits_before, rtol=1e-4, atol=1e-4)
        assert torch.equal(model.generate(ids, max_new_tokens=12, do_sample=False, pad_token_id=0), tokens_before)


def test_onednn_linears_leave_other_dtypes_and_adapter_layers_alone(tiny_model_dir):
    from peft import LoraConfig, get_peft_model

    from kositp.models import load_model

    assert use_onednn_linears(load_model(str(tiny_model_dir), "bfloat16")) == 0

    model = get_peft_model(load_model(str(tiny_model_dir), "float32"),
                           LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    lora_layers = [m for m in model.modules() if hasattr(m, "base_layer")]
    plain = sum(type(m) is nn.Linear for m in model.modules())
    inside = sum(type(m) is nn.Linear for layer in lora_layers for m in layer.modules())
    assert use_onednn_linears(model) == plain - inside > 0
    assert all(type(layer.base_layer) is nn.Linear for layer in lora_layers)


def test_evaluation_loads_fp32_models_with_onednn_linears(tiny_model_dir):
    from kositp.eval.loading import load_for_eval

    assert any(isinstance(m, OneDNNLinear) for m in load_for_eval(str(tiny_model_dir)).model.modules())
    plain = load_for_eval(str(tiny_model_dir), onednn_linears=False).model
    assert not any(isinstance(m, OneDNNLinear) for m in plain.modules())


def test_measure_times_the_three_linears_on_the_same_outputs():
    from kositp.cpu_linear import measure

    (result,) = measure(rows=(3,), shapes=((32, 48),), rounds=2)
    assert result["shape"] == [32, 48] and result["rows"] == 3
    assert all(result[name] > 0 for name in ("nn.Linear", "OneDNNLinear", "MkldnnLinear"))
