"""Log-likelihood of continuations given contexts, with lm-evaluation-harness's conventions.

For multiple-choice benchmarks (KoBEST) each choice is scored as the summed log-probability of its
tokens after the context, exactly as lm-eval's `HFLM.loglikelihood` does:
* trailing spaces of the context move to the start of the continuation;
* the pair is tokenized as one string, and the continuation's tokens are those after the
  context's own tokenization (so a merge across the boundary is handled the same way);
* both strings are tokenized with the tokenizer's own special-token default (lm-eval 0.4.13's
  `add_bos_token=None`): a tokenizer that adds BOS (Gemma) gets it, one that does not (ChatML) not;
* an over-long input keeps its last `max_length` tokens.
Batches are left-padded with explicit position ids (`kositp.batching.left_pad`), so padding cannot shift a score, and logits
are computed only at the continuation positions (`logits_to_keep`): with a 262k vocabulary that is
most of the cost.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Scored:
    logprob: float  # summed log-probability of the continuation tokens
    n_tokens: int
    is_greedy: bool  # every continuation token was the argmax


def encode_pair(tokenizer, context: str, continuation: str,
                add_special_tokens: bool = True) -> tuple[list[int], list[int]]:
    """(context ids, continuation ids) split the way lm-eval's `_encode_pair` splits them."""
    if not context:
        raise ValueError("the context must not be empty")
    spaces = len(context) - len(context.rstrip())
    if spaces:
        continuation = context[-spaces:] + continuation
        context = context[:-spaces]
    whole = tokenizer(context + continuation, add_special_tokens=add_special_tokens)["input_ids"]
    ctx = tokenizer(context, add_special_tokens=add_special_tokens)["input_ids"]
    return ctx, whole[len(ctx):]


def score(
    model,
    tokenizer,
    requests: Sequence[tuple[str, str]],
    add_special_tokens: bool = True,
    batch_size: int = 8,
    max_length: int = 2048,
    progress: Callable[[int], None] | None = None,
) -> list[Scored]:
    import torch

    from kositp.batching import left_pad

    pairs = [encode_pair(tokenizer, c, x, add_special_tokens) for c, x in requests]
    # Requests whose model input is identical (one context, single-token options like " A".." D") share
    # one forward pass, as lm-eval's logits cache does; each still reads its own continuation.
    inputs: list[list[int]] = []
    keeps: list[int] = []
    members: list[list[int]] = []
    index: dict[tuple[int, ...], int] = {}
    for i, (ctx, cont) in enumerate(pairs):
        if not cont:
            raise ValueError(f"empty continuation for request {i}")
        full = (ctx + cont)[-(max_length + 1):]
        key = tuple(full[:-1])
        if key not in index:
            index[key] = len(inputs)
            inputs.append(full[:-1])
            keeps.append(0)
            members.append([])
        u = index[key]
        keeps[u] = max(keeps[u], len(cont))
        members[u].append(i)
    order = sorted(range(len(inputs)), key=lambda u: (-len(inputs[u]), u))
    results: list[Scored | None] = [None] * len(pairs)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        keep = max(keeps[u] for u in batch)
        padded = left_pad([inputs[u] for u in batch], pad_id)
        with torch.inference_mode():
            logits = model(
                input_ids=padded.input_ids, attention_mask=padded.attention_mask, position_ids=padded.position_ids,
                logits_to_keep=keep,
            ).logits
            logprobs = torch.log_softmax(logits.float(), dim=-1)
        for row, u in enumerate(batch):
            for i in members[u]:
                cont = pairs[i][1]
                rows = logprobs[row, keep - len(cont):]
                target = torch.tensor(cont)
                picked = rows.gather(-1, target[:, None]).squeeze(-1)
                greedy = bool((rows.argmax(-1) == target).all())
                results[i] = Scored(float(picked.sum()), len(cont), greedy)
        if progress:
            progress(sum(len(members[u]) for u in batch))
    return [r for r in results if r is not None]
