"""Continuous batching for the in-process transformers backend.

One worker thread owns the model and keeps one running batch with a shared KV cache. Between
decode steps it admits waiting requests into that batch (a left-padded prefill of the newcomers,
whose cache is then left-padded to the batch's length and concatenated along the batch axis) and
drops finished rows (their cache rows are removed, and cache columns that no remaining row uses are
trimmed from the left). So a request that arrives while others are decoding starts at the next
step instead of waiting for the whole batch to finish, and a finished row stops costing compute.
When the batch is empty the worker waits up to `batch_wait_ms` after the first request so that
requests sent together are prefilled together. Every row has explicit position ids, so padding
never shifts a row's positions.

Each row keeps its own sampling settings (temperature, top_p, its own seeded RNG), its own stop
conditions and its own incremental decoder, and streams its text to its asyncio queue as soon as
the text is stable. A cancelled row (client gone) is dropped at the next step.

Admission edits the cache tensors directly, which is exact for transformers' `DynamicLayer` and for
`DynamicSlidingWindowLayer` while it still holds every position (shorter than the window: Gemma 3's
512). Any other cache layout, or a batch about to outgrow the window, falls back to the safe
behaviour: newcomers wait until the running batch has finished (batching in waves).

Why not transformers' ContinuousBatchingManager: it exists in 5.17, but its paged-attention
path is built for GPUs, and per-request seeds, stop strings and cancellation would still have to be
added around it; this loop is short, exact, and fast enough for the CPU models kositp serves.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import random
import threading
import time
from dataclasses import dataclass, field

from kositp.serve.backends.base import Finished, TextDelta
from kositp.serve.textstream import IncrementalDecoder, StopMatcher

log = logging.getLogger("kositp.serve")


@dataclass
class SamplingSpec:
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None


@dataclass
class Job:
    prompt_ids: list[int]
    spec: SamplingSpec
    loop: asyncio.AbstractEventLoop
    out: asyncio.Queue
    cancelled: threading.Event = field(default_factory=threading.Event)
    enqueued_at: float = field(default_factory=time.monotonic)

    def emit(self, event) -> None:
        self.loop.call_soon_threadsafe(self.out.put_nowait, event)


class _Row:
    """Per-request state inside a running batch."""

    def __init__(self, job: Job, tokenizer, eot_ids: set[int]) -> None:
        import torch

        self.job = job
        self.eot_ids = eot_ids
        self.decoder = IncrementalDecoder(tokenizer)
        self.stops = StopMatcher(job.spec.stop)
        self.generated = 0
        self.done = False
        seed = job.spec.seed if job.spec.seed is not None else random.getrandbits(63)
        self.rng = torch.Generator().manual_seed(seed % (2**63))

    def finish(self, reason: str) -> None:
        if not self.done:
            tail = self.stops.push(self.decoder.flush())
            if not self.stops.stopped:
                tail += self.stops.flush()
            if tail:
                self.job.emit(TextDelta(tail))
            self.job.emit(Finished(reason, len(self.job.prompt_ids), self.generated))
        self.done = True

    def accept(self, token_id: int) -> None:
        """One sampled token: end of turn, or text for the client (with stop and length checks)."""
        if self.job.cancelled.is_set():
            self.done = True
            return
        self.generated += 1
        if token_id in self.eot_ids:
            self.finish("stop")
            return
        text = self.stops.push(self.decoder.push(token_id))
        if text:
            self.job.emit(TextDelta(text))
        if self.stops.stopped:
            self.finish("stop")
        elif self.generated >= self.job.spec.max_tokens:
            self.finish("length")


def _sample(logits, rows: list[_Row]):
    """Next token for each row: greedy at temperature 0, else temperature + nucleus sampling.

    Sampling uses the exponential race (argmax of p / E with E ~ Exp(1), drawn from the row's own
    seeded generator), which picks token i with probability p_i like multinomial does but is several
    times faster over a 262k vocabulary. Softmax runs once for all sampled rows.
    """
    import torch

    tokens = torch.argmax(logits, dim=-1)
    sampled = [i for i, row in enumerate(rows) if not row.done and row.job.spec.temperature > 0.0]
    if not sampled:
        return tokens
    temps = torch.tensor([rows[i].job.spec.temperature for i in sampled], dtype=torch.float32)
    probs = torch.softmax(logits[sampled].float() / temps[:, None], dim=-1)
    for k, i in enumerate(sampled):
        p = probs[k]
        top_p = rows[i].job.spec.top_p
        if top_p < 1.0:
            sorted_probs, order = torch.sort(p, descending=True)
            keep = torch.cumsum(sorted_probs, dim=-1) - sorted_probs < top_p  # always keeps the top token
            p = torch.zeros_like(p).scatter(0, order, sorted_probs * keep)
        race = torch.empty_like(p).exponential_(generator=rows[i].rng)
        tokens[i] = torch.argmax(p / race)
    return tokens


class _RunningBatch:
    """The rows decoding together, with their shared KV cache, attention mask and next input ids.

    Invariant: `width` is the number of cached positions; `mask` has one column per cached
    position (1 = a real token of that row), or is None when every row has a real token in every
    column (a lone request: no padding). `next_ids` holds each row's last sampled token, which the
    next decode step feeds in.
    """

    def __init__(self, rows: list[_Row], cache, mask, next_ids, width: int) -> None:
        self.rows, self.cache, self.mask, self.next_ids, self.width = rows, cache, mask, next_ids, width

    def full_mask(self):
        """The attention mask with every column spelled out (all ones when `mask` is None)."""
        import torch

        return self.mask if self.mask is not None else torch.ones((len(self.rows), self.width), dtype=torch.long)

    def __len__(self) -> int:
        return len(self.rows)


def _cache_layers_editable(cache) -> bool:
    """True when every layer stores all its positions as plain tensors we can pad, concatenate and trim."""
    from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

    for layer in getattr(cache, "layers", None) or [None]:
        if type(layer) is DynamicLayer:
            continue
        if type(layer) is DynamicSlidingWindowLayer and layer.keys.shape[-2] == layer.cumulative_length:
            continue
        return False
    return True


def _window_limit(cache) -> int | None:
    """The most positions a sliding-window layer of this cache holds in full (None: no sliding layer)."""
    windows = [layer.sliding_window for layer in getattr(cache, "layers", []) if hasattr(layer, "sliding_window")]
    return min(windows) - 1 if windows else None


def _pad_left(t, width: int, dim: int):
    import torch

    missing = width - t.shape[dim]
    if missing <= 0:
        return t
    shape = list(t.shape)
    shape[dim] = missing
    return torch.cat([torch.zeros(shape, dtype=t.dtype, device=t.device), t], dim=dim)


def _set_length(layer, keys, values) -> None:
    layer.keys, layer.values = keys, values
    if hasattr(layer, "cumulative_length"):  # sliding-window layer: its position count is the stored length
        layer.cumulative_length = keys.shape[-2]


class BatchingEngine:
    """Owns the model on one worker thread and decodes queued jobs in one continuously refilled batch."""

    def __init__(self, model, tokenizer, eot_ids: list[int], max_batch_size: int = 16, batch_wait_ms: float = 5.0,
                 flush_denormal: bool = True, continuous: bool = True, threads: int | None = None,
                 solo_threads: int | None = None):
        self.flush_denormal = flush_denormal
        # torch threads for prefills and batched steps, and for a lone request's steps (None: torch's setting)
        self.threads, self.solo_threads = threads, solo_threads or threads
        self._threads_now: int | None = None
        self.continuous = continuous
        self.model = model
        self.tokenizer = tokenizer
        self.eot_ids = set(eot_ids)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eot_ids[0]
        self.max_batch_size = max_batch_size
        self.batch_wait_s = batch_wait_ms / 1000.0
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._waiting: list[Job] = []  # taken from the queue but not admitted yet (worker thread only)
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.batches_run = 0  # busy periods: a batch starts on an idle engine and runs until its last row ends
        self.rows_run = 0
        self.largest_batch = 0
        self.prefills = 0
        self.joined_running = 0  # rows admitted into a batch that was already decoding
        self.decode_steps = 0
        self.unpadded_steps = 0  # decode steps of a batch without padding (a lone request): no attention mask

    def start(self) -> None:
        self._thread = threading.Thread(target=self._worker, name="kositp-batcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=30)
            self._thread = None

    def queue_depth(self) -> int:
        return self._queue.qsize() + len(self._waiting)

    def submit(self, job: Job) -> None:
        self._queue.put(job)

    # ------------------------------------------------------------------ queue

    def _take(self, block: bool, wait_s: float) -> None:
        """Move jobs from the queue to `_waiting`: blocking for the first if asked, then up to `wait_s` more."""
        if block:
            job = self._queue.get()
            if job is None:
                self._stopping = True
                return
            self._waiting.append(job)
        deadline = time.monotonic() + wait_s
        while len(self._waiting) < self.max_batch_size:
            remaining = deadline - time.monotonic()
            try:
                job = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                return
            if job is None:
                self._stopping = True
                return
            self._waiting.append(job)

    def _admissible(self, batch: _RunningBatch | None) -> list[Job]:
        """Waiting jobs that can join `batch` now (all of them, up to the batch size, when there is none)."""
        self._waiting = [j for j in self._waiting if not j.cancelled.is_set()]
        if not self._waiting:
            return []
        room = self.max_batch_size - (len(batch) if batch else 0)
        if batch is None:
            chosen = self._waiting[:room]
        elif room <= 0 or not self.continuous or not _cache_layers_editable(batch.cache):
            return []
        else:
            limit = _window_limit(batch.cache)
            chosen = []
            for job in self._waiting[:room]:
                # the merged batch must still fit wholly inside every sliding window
                if limit is not None and max(batch.width, len(job.prompt_ids)) + 1 > limit:
                    break
                chosen.append(job)
        del self._waiting[: len(chosen)]
        return chosen

    # ------------------------------------------------------------------ worker

    def _worker(self) -> None:
        import torch

        if self.flush_denormal:
            # Denormal floats are very slow on x86 and the dequantized default model produces many
            # (docs/serving.md has the measured difference).
            torch.set_flush_denormal(True)
        self._use_threads(self.threads)
        batch: _RunningBatch | None = None
        while True:
            if batch is None:
                if self._stopping and not self._waiting:
                    return
                self._take(block=not self._waiting, wait_s=self.batch_wait_s)
            elif self.continuous:
                self._take(block=False, wait_s=0.0)
            jobs = self._admissible(batch)
            try:
                if jobs:
                    batch = self._admit(batch, jobs)
                if batch is not None:
                    batch = self._step(batch)
            except Exception as exc:  # never let one bad batch kill the worker
                log.exception("generation failed")
                for row in (batch.rows if batch else []):
                    row.job.emit(exc)
                for job in jobs:
                    if batch is None or all(r.job is not job for r in batch.rows):
                        job.emit(exc)
                batch = None

    def _use_threads(self, n: int | None) -> None:
        """torch's thread count for the next forward; OpenMP's is per calling thread, so the worker sets it."""
        if n and n != self._threads_now:
            import torch

            torch.set_num_threads(n)
            self._threads_now = n

    def _prefill(self, jobs: list[Job]) -> _RunningBatch:
        """One left-padded forward over the newcomers' prompts; samples their first token."""
        import torch

        from kositp.batching import left_pad

        self._use_threads(self.threads)
        self.prefills += 1
        self.rows_run += len(jobs)
        rows = [_Row(j, self.tokenizer, self.eot_ids) for j in jobs]
        # left padding: every row's last prompt token is in the last column
        padded = left_pad([j.prompt_ids for j in jobs], self.pad_id)
        mask = padded.attention_mask
        with torch.inference_mode():
            # logits_to_keep=1: only the last position's logits are needed; with a 262k vocabulary
            # (Gemma 3) the full prefill logits would cost more than the rest of the model.
            out = self.model(input_ids=padded.input_ids, attention_mask=mask, position_ids=padded.position_ids,
                             use_cache=True, logits_to_keep=1)
            next_ids = _sample(out.logits[:, -1, :], rows)
        for row, token in zip(rows, next_ids.tolist(), strict=True):
            row.accept(token)
        return _RunningBatch(rows, out.past_key_values, mask, next_ids, int(mask.shape[1]))

    def _admit(self, batch: _RunningBatch | None, jobs: list[Job]) -> _RunningBatch:
        new = self._prefill(jobs)
        if batch is None:
            self.batches_run += 1
            merged = new
        else:
            import torch

            self.joined_running += len(jobs)
            width = max(batch.width, new.width)
            for old_layer, new_layer in zip(batch.cache.layers, new.cache.layers, strict=True):
                keys = torch.cat([_pad_left(old_layer.keys, width, -2), _pad_left(new_layer.keys, width, -2)])
                values = torch.cat([_pad_left(old_layer.values, width, -2), _pad_left(new_layer.values, width, -2)])
                _set_length(old_layer, keys, values)
            mask = torch.cat([_pad_left(batch.full_mask(), width, 1), _pad_left(new.full_mask(), width, 1)])
            merged = _RunningBatch(batch.rows + new.rows, batch.cache, mask, torch.cat([batch.next_ids, new.next_ids]),
                                   width)
        self.largest_batch = max(self.largest_batch, len(merged))
        return self._evict(merged)

    def _step(self, batch: _RunningBatch) -> _RunningBatch | None:
        """One forward pass for every row, one token each; returns the batch without its finished rows."""
        import torch

        self.decode_steps += 1
        self._use_threads(self.solo_threads if len(batch) == 1 else self.threads)
        if batch.mask is None:
            # No padding anywhere (a lone request): no mask to build, and every row's next position is
            # the cache length, which is what `model.generate` feeds a single sequence.
            self.unpadded_steps += 1
            mask = None
            positions = torch.full((len(batch), 1), batch.width, dtype=torch.long)
        else:
            mask = torch.cat([batch.mask, torch.ones((len(batch), 1), dtype=torch.long)], dim=-1)
            positions = mask.sum(-1, keepdim=True) - 1
        with torch.inference_mode():
            out = self.model(input_ids=batch.next_ids.unsqueeze(-1), attention_mask=mask, position_ids=positions,
                             past_key_values=batch.cache, use_cache=True, logits_to_keep=1)
            next_ids = _sample(out.logits[:, -1, :], batch.rows)
        for row, token in zip(batch.rows, next_ids.tolist(), strict=True):
            if not row.done:
                row.accept(token)
        return self._evict(_RunningBatch(batch.rows, out.past_key_values, mask, next_ids, batch.width + 1))

    def _evict(self, batch: _RunningBatch) -> _RunningBatch | None:
        """Drop finished and cancelled rows, and the cache columns no remaining row attends to."""
        import torch

        for row in batch.rows:
            if not row.done and row.job.cancelled.is_set():
                row.done = True
        keep = [i for i, row in enumerate(batch.rows) if not row.done]
        if not keep:
            return None
        if len(keep) < len(batch):
            index = torch.tensor(keep, dtype=torch.long)
            batch.cache.batch_select_indices(index)
            batch = _RunningBatch([batch.rows[i] for i in keep], batch.cache,
                                  None if batch.mask is None else batch.mask[index], batch.next_ids[index], batch.width)
            if batch.mask is not None:
                used = batch.mask.any(dim=0).nonzero()
                start = int(used[0]) if len(used) else 0
                if start > 0 and _cache_layers_editable(batch.cache):
                    for layer in batch.cache.layers:
                        _set_length(layer, layer.keys[:, :, start:], layer.values[:, :, start:])
                    batch.mask = batch.mask[:, start:]
                    batch.width -= start
        if batch.mask is not None and bool(batch.mask.all()):
            batch.mask = None  # no padding left (e.g. one row remains): decode without a mask
        return batch
