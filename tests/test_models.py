from __future__ import annotations

import re

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from kositp.chat import CHATML, GEMMA, end_of_turn_ids, load_chat_format, resolve_chat_format
from kositp.errors import KositpError
from kositp.models import build_tiny_model, load_model, load_tokenizer, verify_manifest

HANGUL = re.compile(r"[\uac00-\ud7a3]")


def test_tiny_model_is_small_loads_and_generates(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert sum(p.numel() for p in model.parameters()) <= 5_000_000
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in model.generation_config.eos_token_id
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "대한민국 헌법 제1조는?"}], add_generation_prompt=True, return_tensors="pt",
        return_dict=True,
    )
    out = model.generate(**prompt, max_new_tokens=8, do_sample=False, min_new_tokens=8)
    assert out.shape[1] == prompt["input_ids"].shape[1] + 8


def test_tiny_tokenizer_learned_korean(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    text = "대한민국은 민주공화국이다."
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    # Trained on kolaw/kobill, common words are merged well below one token per UTF-8 byte.
    assert len(ids) < len(text.encode("utf-8")) / 2
    assert tokenizer.decode(ids) == text


def test_tiny_model_same_seed_identical_files(tmp_path):
    a = build_tiny_model(tmp_path / "a", seed=3)
    b = build_tiny_model(tmp_path / "b", seed=3)
    c = build_tiny_model(tmp_path / "c", seed=4)
    files = sorted(p.name for p in a.iterdir())
    assert files == sorted(p.name for p in b.iterdir())
    for name in files:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "model.safetensors").read_bytes() != (c / "model.safetensors").read_bytes()
    verify_manifest(a)


def test_chat_template_masks_only_assistant_text_and_end_token(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    fmt = load_chat_format(tiny_model_dir, tokenizer)
    assert fmt == CHATML
    messages = [
        {"role": "system", "content": "너는 친절한 도우미야."},
        {"role": "user", "content": "안녕?"},
        {"role": "assistant", "content": "네, 안녕하세요."},
    ]
    enc = tokenizer.apply_chat_template(messages, return_dict=True, return_assistant_tokens_mask=True)
    kept = [t for t, m in zip(enc["input_ids"], enc["assistant_masks"], strict=True) if m]
    assert tokenizer.decode(kept) == "네, 안녕하세요.<|im_end|>"
    assert kept[-1] in end_of_turn_ids(tokenizer, fmt)


def test_hub_id_offline_fails_with_a_clear_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(KositpError, match="not a local directory.*hf download upstage/SOLAR"):
        load_tokenizer("upstage/SOLAR-10.7B-v1.0")
    with pytest.raises(KositpError, match="seed must be an integer"):
        load_model("tiny:abc")


@pytest.mark.slow
def test_default_model_answers_korean_offline(default_model_dir):
    manifest = verify_manifest(default_model_dir)
    assert manifest["kind"] == "default"
    tokenizer = AutoTokenizer.from_pretrained(default_model_dir)
    assert resolve_chat_format(tokenizer) == GEMMA
    model = AutoModelForCausalLM.from_pretrained(default_model_dir, dtype=torch.float32)
    assert 106 in model.generation_config.eos_token_id  # <end_of_turn> ends a reply
    # <end_of_turn> has an embedding of its own (the pretrained row is shared with ~4,700 unused tokens)
    assert manifest["version"] == 2 and manifest["separated_rows"] == [106]
    weight = model.get_input_embeddings().weight
    unit = weight / weight.norm(dim=1, keepdim=True)
    assert int((unit @ unit[106] > 0.99).sum()) == 1
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "한국의 수도는 어디인가요? 한국어로 짧게 답해 주세요."}],
        add_generation_prompt=True, return_tensors="pt", return_dict=True,
    )
    out = model.generate(**prompt, max_new_tokens=24, do_sample=False)
    reply = tokenizer.decode(out[0, prompt["input_ids"].shape[1]:], skip_special_tokens=True)
    assert HANGUL.search(reply), reply


def test_separate_untrained_rows_moves_only_a_row_with_twins():
    from kositp.models import separate_untrained_rows

    torch.manual_seed(0)
    model = torch.nn.Module()
    embedding = torch.nn.Embedding(200, 16)
    embedding.weight.data[100:180] = embedding.weight.data[100]  # an "untrained" cluster
    model.get_input_embeddings = lambda: embedding
    before = embedding.weight.detach().clone()
    assert separate_untrained_rows(model, [3, 120]) == [120]  # row 3 is distinct already
    after = embedding.weight.detach().clone()
    changed = (after != before).any(dim=1).nonzero().flatten().tolist()
    assert changed == [120]
    unit = after / after.norm(dim=1, keepdim=True)
    assert int((unit @ unit[120] > 0.99).sum()) == 1
    again = before.clone()
    embedding.weight.data.copy_(again)
    separate_untrained_rows(model, [120])
    assert torch.equal(embedding.weight.detach()[120], after[120])  # deterministic per token id
