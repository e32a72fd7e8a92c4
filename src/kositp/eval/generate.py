"""Generation backends for evaluation: in-process transformers, or any OpenAI-compatible API.

Both take chat messages and return `Generation`s in input order, with greedy decoding, so a suite
never knows which one it talks to. In-process generation renders prompts with the model's chat
format (`kositp.chat.encode_prompt`: message content is always text, never control tokens), batches
them with left padding (`kositp.batching.left_pad`), ordered by generation budget and then by length
(so a batch of one-word answers is not held to a long budget and little is padded), and stops
on every end-of-turn id, as serving does; a batch ends as soon as every row has stopped.
`max_new_tokens` is one budget for all conversations or one per conversation (the tasks suite gives
each task its own). The API path is what users get from
`kositp serve` or a vLLM server: `chat.completions` with temperature 0 over a bounded thread pool.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from kositp.errors import KositpError

Messages = list[dict]
Progress = Callable[[int], None]  # called with the number of items just finished
Budget = int | Sequence[int]  # max_new_tokens: one for every conversation, or one per conversation


def per_conversation(max_new_tokens: Budget, n: int) -> list[int]:
    if isinstance(max_new_tokens, int):
        return [max_new_tokens] * n
    budgets = list(max_new_tokens)
    if len(budgets) != n:
        raise ValueError(f"{len(budgets)} budgets for {n} conversations")
    return budgets


@dataclass(frozen=True)
class Generation:
    text: str
    finished: bool  # stopped on an end-of-turn token (False: cut off by max_new_tokens)
    n_tokens: int


class LocalGenerator:
    """Batched greedy generation with a transformers model loaded by `kositp.eval.loading`; `sample` draws
    several seeded answers per prompt (for on-policy preference pairs, `kositp data pairs --samples`)."""

    kind = "transformers"

    def __init__(self, loaded, batch_size: int = 8, max_prompt_tokens: int = 3072):
        self.loaded = loaded
        self.batch_size = batch_size
        self.max_prompt_tokens = max_prompt_tokens

    def prompt_text(self, messages: Messages) -> str:
        from kositp.chat import render

        return render(self.loaded.tokenizer, messages, add_generation_prompt=True)

    def _encode(self, messages: Messages) -> list[int]:
        from kositp.chat import encode_prompt

        ids = encode_prompt(self.loaded.tokenizer, messages, add_generation_prompt=True)
        # Keep the end of an over-long prompt: the question and the generation prompt are there.
        return ids[-self.max_prompt_tokens:]

    def count_tokens(self, text: str) -> int:
        return len(self.loaded.tokenizer(text, add_special_tokens=False)["input_ids"])

    def batches(self, encoded: list[list[int]], budgets: list[int], group_by_budget: bool = True,
                size: int | None = None) -> list[list[int]]:
        """Indices per batch of `size` (default: batch_size), longest prompts first; with `group_by_budget`,
        ordered by budget before length.

        Batches stay full: a batch that straddles two budgets runs to the larger and each row is cut to its
        own, so many small tasks do not become many small batches, each paying its own decode steps.
        """
        def budget_of(i: int) -> int:
            return budgets[i] if group_by_budget else 0

        order = sorted(range(len(encoded)), key=lambda i: (budget_of(i), -len(encoded[i]), i))
        size = size or self.batch_size
        return [order[k:k + size] for k in range(0, len(order), size)]

    def generate(
        self, conversations: Sequence[Messages], max_new_tokens: Budget, progress: Progress | None = None,
        group_by_budget: bool = True,
    ) -> list[Generation]:
        import torch

        from kositp.batching import left_pad

        tokenizer, model = self.loaded.tokenizer, self.loaded.model
        stop_ids = set(self.loaded.stop_ids)
        encoded = [self._encode(m) for m in conversations]
        budgets = per_conversation(max_new_tokens, len(encoded))
        results: list[Generation | None] = [None] * len(encoded)
        pad_id = tokenizer.pad_token_id
        for batch in self.batches(encoded, budgets, group_by_budget):
            padded = left_pad([encoded[i] for i in batch], pad_id)
            with torch.inference_mode():
                out = model.generate(
                    input_ids=padded.input_ids,
                    attention_mask=padded.attention_mask,
                    max_new_tokens=max(budgets[i] for i in batch),
                    do_sample=False,
                    eos_token_id=list(self.loaded.stop_ids),
                    pad_token_id=pad_id,
                )
            new_rows = out[:, padded.width:].tolist()  # one device-to-host copy per batch
            for row, i in enumerate(batch):
                # a mixed batch (grouping off) runs to its largest budget
                results[i] = self._finish(new_rows[row][:budgets[i]], stop_ids)
            if progress:
                progress(len(batch))
        return [r for r in results if r is not None]

    def sample(
        self, conversations: Sequence[Messages], max_new_tokens: int, n: int, temperature: float = 1.0,
        seed: int = 0, progress: Progress | None = None, share_prefill: bool = True,
    ) -> list[list[Generation]]:
        """`n` sampled answers per conversation (plain temperature sampling: no top-k, no top-p cut).

        Seeded once, so the same model, prompts, batch size and seed give the same samples. A batch
        holds `batch_size // n` conversations, so it decodes about as many rows as a greedy one.
        `share_prefill`: run each prompt through the model once and copy its cache to its `n` rows;
        `generate(num_return_sequences=n)` repeats the prompt before the prefill, so a long passage
        is read `n` times. The sampled tokens are the same either way (`kositp bench sample`).
        """
        import torch

        from kositp.batching import left_pad

        if n < 1 or temperature <= 0:
            raise KositpError(f"sampling needs n >= 1 and temperature > 0 (got n={n}, temperature={temperature})")
        tokenizer, model = self.loaded.tokenizer, self.loaded.model
        stop_ids = set(self.loaded.stop_ids)
        encoded = [self._encode(m) for m in conversations]
        results: list[list[Generation]] = [[] for _ in encoded]
        sampling = {"max_new_tokens": max_new_tokens, "do_sample": True, "temperature": temperature, "top_k": 0,
                    "top_p": 1.0, "eos_token_id": list(self.loaded.stop_ids), "pad_token_id": tokenizer.pad_token_id}
        torch.manual_seed(seed)
        for batch in self.batches(encoded, [max_new_tokens] * len(encoded), size=max(1, self.batch_size // n)):
            padded = left_pad([encoded[i] for i in batch], tokenizer.pad_token_id)
            with torch.inference_mode():
                if share_prefill and padded.width > 1:
                    out = model.generate(**self._prefilled_rows(padded, n), **sampling)
                else:
                    out = model.generate(input_ids=padded.input_ids, attention_mask=padded.attention_mask,
                                         num_return_sequences=n, **sampling)
            new_rows = out[:, padded.width:].tolist()  # rows come as n per conversation, in batch order
            for row, new in enumerate(new_rows):
                results[batch[row // n]].append(self._finish(new, stop_ids))
            if progress:
                progress(len(batch))
        return results

    def _prefilled_rows(self, padded, n: int) -> dict:
        """`generate` inputs for `n` rows per prompt whose cache already holds all but each prompt's last
        token, computed once per prompt; `generate` runs that last token and samples from there."""
        from transformers import DynamicCache

        model = self.loaded.model
        prefix_mask = padded.attention_mask[:, :-1]
        cache = DynamicCache(config=model.config)
        model(input_ids=padded.input_ids[:, :-1], attention_mask=prefix_mask,
              position_ids=(prefix_mask.cumsum(-1) - 1).clamp(min=0),  # left padding, as generate counts them
              past_key_values=cache, use_cache=True, logits_to_keep=1)  # only the cache is needed
        cache.batch_repeat_interleave(n)
        return {"input_ids": padded.input_ids.repeat_interleave(n, 0),
                "attention_mask": padded.attention_mask.repeat_interleave(n, 0), "past_key_values": cache}

    def _finish(self, new: list[int], stop_ids: set[int]) -> Generation:
        """A row of generated ids as text, cut at its first end-of-turn id."""
        cut = next((k for k, tok in enumerate(new) if tok in stop_ids), None)
        kept = new if cut is None else new[:cut]
        text = self.loaded.tokenizer.decode(kept, skip_special_tokens=True)
        return Generation(text.strip(), finished=cut is not None, n_tokens=len(kept))

    def describe(self) -> dict:
        return {"backend": self.kind, "batch_size": self.batch_size, **self.loaded.description}


class ApiGenerator:
    """Greedy chat completions from an OpenAI-compatible server (`kositp serve`, vLLM, ...)."""

    kind = "openai-api"

    def __init__(self, base_url: str, model: str | None = None, api_key: str = "EMPTY",
                 concurrency: int = 4, timeout_s: float = 300.0, seed: int = 0):
        from openai import OpenAI

        self.base_url = base_url.rstrip("/")
        self.client = OpenAI(base_url=self.base_url, api_key=api_key, timeout=timeout_s, max_retries=2)
        self.concurrency = max(1, concurrency)
        self.seed = seed
        self.model = model or self._first_model()

    def _first_model(self) -> str:
        import openai

        try:
            models = self.client.models.list().data
        except openai.APIConnectionError:
            raise KositpError(f"cannot reach the API at {self.base_url} (is the server running?)") from None
        except openai.APIStatusError as exc:
            raise KositpError(f"the API at {self.base_url} answered {exc.status_code} to /models") from None
        if not models:
            raise KositpError(f"the API at {self.base_url} lists no models; pass --api-model")
        return models[0].id

    def prompt_text(self, messages: Messages) -> str:
        return "\n".join(f"[{m['role']}] {m['content']}" for m in messages)

    def count_tokens(self, text: str) -> int:
        # The server's tokenizer is not at hand; UTF-8 bytes bound the count of any byte-level tokenizer.
        return len(text.encode("utf-8"))

    def _one(self, messages: Messages, max_new_tokens: int) -> Generation:
        import openai

        try:
            response = self.client.chat.completions.create(
                model=self.model, messages=messages, temperature=0.0, max_tokens=max_new_tokens, seed=self.seed
            )
        except openai.APIConnectionError:
            raise KositpError(f"lost the connection to the API at {self.base_url}") from None
        except openai.APIStatusError as exc:
            raise KositpError(f"the API at {self.base_url} answered {exc.status_code}: {exc.message}") from None
        choice = response.choices[0]
        tokens = response.usage.completion_tokens if response.usage else 0
        return Generation((choice.message.content or "").strip(), choice.finish_reason == "stop", tokens)

    def generate(
        self, conversations: Sequence[Messages], max_new_tokens: Budget, progress: Progress | None = None,
        group_by_budget: bool = True,  # requests are independent: nothing to group
    ) -> list[Generation]:
        budgets = per_conversation(max_new_tokens, len(conversations))

        def task(messages: Messages, budget: int) -> Generation:
            result = self._one(messages, budget)
            if progress:
                progress(1)
            return result

        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(task, conversations, budgets))  # map keeps input order

    def describe(self) -> dict:
        return {"backend": self.kind, "api": self.base_url, "model": self.model, "concurrency": self.concurrency}
