"""`kositp.batching.left_pad`: the one left-padded batch builder of generation, scoring and serving."""

from __future__ import annotations

import pytest
import torch

from kositp.batching import left_pad


def test_rows_are_right_aligned_with_positions_over_real_tokens():
    batch = left_pad([[5, 6, 7], [8], [9, 10]], pad_id=0)
    assert batch.width == 3
    assert batch.input_ids.tolist() == [[5, 6, 7], [0, 0, 8], [0, 9, 10]]
    assert batch.attention_mask.tolist() == [[1, 1, 1], [0, 0, 1], [0, 1, 1]]
    assert batch.position_ids.tolist() == [[0, 1, 2], [0, 0, 0], [0, 0, 1]]
    assert batch.input_ids.dtype == batch.attention_mask.dtype == batch.position_ids.dtype == torch.long


def test_empty_input_is_refused():
    with pytest.raises(ValueError):
        left_pad([], pad_id=0)
    with pytest.raises(ValueError):
        left_pad([[1], []], pad_id=0)


def test_a_padded_row_predicts_what_it_predicts_alone(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    short, long = [30, 31, 32], [40, 41, 42, 43, 44, 45, 46]
    batch = left_pad([long, short], pad_id=1)
    with torch.inference_mode():
        together = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                         position_ids=batch.position_ids).logits[1, -1]
        alone = model(input_ids=torch.tensor([short])).logits[0, -1]
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)
