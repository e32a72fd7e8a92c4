"""Continuous batching in the transformers backend's engine, driven step by step (no thread, no timing).

Rows that join a running batch, and rows that leave it, must not change anyone's greedy output:
every result equals the same request decoded alone. Checked on the tiny Llama (full-attention
cache) and on a tiny random Gemma 3 (alternating sliding-window and full layers, as gemma-3-270m),
where a batch that would outgrow the sliding window must not take newcomers.
"""

from __future__ import annotations

import asyncio

import pytest

from kositp.serve.backends.base import Finished, TextDelta
from kositp.serve.backends.batching import BatchingEngine, Job, SamplingSpec


@pytest.fixture(scope="module")
def llama(tiny_model_dir):
    from kositp.serve.backends.transformers import load_for_serving

    return load_for_serving(str(tiny_model_dir), "float32")


@pytest.fixture(scope="module")
def gemma(llama):
    """A random two-layer Gemma 3 (one sliding-window layer of 24 positions, one full) on the tiny tokenizer."""
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    _, tokenizer, eot = llama
    config = Gemma3TextConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                              num_attention_heads=2, num_key_value_heads=1, head_dim=32, sliding_window=24,
                              layer_types=["sliding_attention", "full_attention"], max_position_embeddings=512,
                              pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    return Gemma3ForCausalLM(config).eval(), tokenizer, eot


class Harness:
    """The engine's admit/step/evict loop run by hand, so the test decides when a request arrives."""

    def __init__(self, model, tokenizer, eot, max_batch_size=8):
        self.engine = BatchingEngine(model, tokenizer, eot, max_batch_size=max_batch_size, flush_denormal=False)
        self.loop = asyncio.new_event_loop()
        self.batch = None
        self.widths: list[int] = []

    def job(self, prompt_ids, max_tokens):
        return Job(list(prompt_ids), SamplingSpec(max_tokens=max_tokens, temperature=0.0), self.loop, asyncio.Queue())

    def arrive(self, *jobs):
        self.engine._waiting.extend(jobs)
        admitted = self.engine._admissible(self.batch)
        if admitted:
            self.batch = self.engine._admit(self.batch, admitted)
        return admitted

    def step(self, n=1):
        for _ in range(n):
            if self.batch is not None:
                self.batch = self.engine._step(self.batch)
                if self.batch is not None:
                    self.widths.append(self.batch.width)

    def run_out(self):
        while self.batch is not None or self.engine._waiting:
            self.arrive()
            self.step()

    def result(self, job):
        self.loop.run_until_complete(asyncio.sleep(0))  # deliver the worker's call_soon_threadsafe events
        text, finished = "", None
        while not job.out.empty():
            event = job.out.get_nowait()
            if isinstance(event, TextDelta):
                text += event.text
            elif isinstance(event, Finished):
                finished = event
        assert finished is not None, "the request never finished"
        return text, finished.completion_tokens, finished.reason


def _solo(model, tokenizer, eot, prompt, max_tokens):
    h = Harness(model, tokenizer, eot)
    job = h.job(prompt, max_tokens)
    h.arrive(job)
    h.run_out()
    return h.result(job)


def _prompts(tokenizer):
    texts = ["안녕", "헌법 제1조를 요약하세요. 대한민국은 민주공화국이다.", "예", "김치찌개 끓이는 법을 알려 주세요."]
    return [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]


@pytest.mark.parametrize("which", ["llama", "gemma"])
def test_rows_joining_and_leaving_a_running_batch_keep_solo_greedy_output(which, request):
    model, tokenizer, _ = request.getfixturevalue(which)
    eot: list[int] = []  # a random model may end its turn at once: run every row to its own max_tokens
    prompts = _prompts(tokenizer)
    budgets = [14, 5, 12, 9]
    solo = [_solo(model, tokenizer, eot, p, n) for p, n in zip(prompts, budgets, strict=True)]

    h = Harness(model, tokenizer, eot)
    first = h.job(prompts[0], budgets[0])
    assert h.arrive(first) == [first]
    h.step(3)
    # a longer prompt (the running cache is padded) and a shorter one (the newcomer is padded) join
    later = [h.job(prompts[1], budgets[1]), h.job(prompts[2], budgets[2])]
    assert h.arrive(*later) == later
    h.step(2)
    last = h.job(prompts[3], budgets[3])
    assert h.arrive(last) == [last]
    h.run_out()
    together = [h.result(j) for j in [first, *later, last]]
    assert together == solo
    assert h.engine.joined_running == 3 and h.engine.batches_run == 1 and h.engine.largest_batch == 4
    # columns only finished rows used are trimmed: the batch narrows after the long prompt's row ends
    assert min(h.widths[h.widths.index(max(h.widths)):]) < max(h.widths)


def test_a_batch_about_to_outgrow_the_sliding_window_takes_no_newcomers(gemma):
    model, tokenizer, _ = gemma
    prompts = _prompts(tokenizer)
    h = Harness(model, tokenizer, [])
    first = h.job(prompts[0], 40)
    h.arrive(first)
    h.step(30)  # the running batch is now wider than the 24-position window
    late = h.job(prompts[2], 6)
    assert h.arrive(late) == []  # it waits for the batch to finish, then runs alone
    h.run_out()
    assert h.result(first)[1:] == (40, "length")
    assert h.result(late) == _solo(model, tokenizer, [], prompts[2], 6)
    assert h.engine.joined_running == 0 and h.engine.batches_run == 2


def test_cancelled_rows_leave_the_batch(llama):
    model, tokenizer, _ = llama
    prompts = _prompts(tokenizer)
    h = Harness(model, tokenizer, [])
    keep, gone = h.job(prompts[0], 10), h.job(prompts[1], 10)
    h.arrive(keep, gone)
    h.step()
    gone.cancelled.set()
    h.step()
    assert h.batch is not None and [r.job for r in h.batch.rows] == [keep]
    h.run_out()
    assert h.result(keep) == _solo(model, tokenizer, [], prompts[0], 10)


@pytest.mark.parametrize("which", ["llama", "gemma"])
def test_a_lone_request_decodes_without_a_mask_until_a_second_one_joins(which, request):
    model, tokenizer, _ = request.getfixturevalue(which)
    prompts = _prompts(tokenizer)
    solo = [_solo(model, tokenizer, [], prompts[i], n) for i, n in ((1, 16), (3, 4))]

    h = Harness(model, tokenizer, [])
    first = h.job(prompts[1], 16)
    h.arrive(first)
    assert h.batch.mask is None  # one request, no padding: the unpadded path
    h.step(3)
    assert h.engine.unpadded_steps == 3 and h.batch.mask is None
    second = h.job(prompts[3], 4)  # a different length: the batch needs padding and a mask from here on
    assert h.arrive(second) == [second]
    assert h.batch.mask is not None
    h.step(2)
    assert h.engine.unpadded_steps == 3  # the padded steps went through the masked path
    h.step(3)  # the second request ends: its padding columns are trimmed and the lone row is unpadded again
    assert [r.job for r in h.batch.rows] == [first] and h.batch.mask is None
    h.run_out()
    assert h.engine.unpadded_steps > 3
    assert [h.result(first), h.result(second)] == solo
