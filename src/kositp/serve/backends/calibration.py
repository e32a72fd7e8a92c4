"""The transformers backend's speed settings for this CPU: measured once on the served model, then cached.

Which linear kernel, how many threads and how large a decode batch serve fastest depends on the
CPU: oneDNN with prepacked weights (`kositp.cpu_linear`) beat MKL's sgemm 2-3x on a 16-row decode
step of gemma-3-270m on an AVX2 EPYC, while at one row (one user) MKL can be the faster one. So on
start-up the backend times the choices on the model it serves and keeps the fastest:

- **linear kernel**, per weight shape: `dense` (`nn.Linear`, MKL) or `onednn`, each timed at 1 row
  and at the largest decode batch. Where one kernel wins both it runs alone; where they split, the
  layer becomes a `RowSplitLinear` (MKL for a single row, oneDNN for more), which holds the weight in
  both layouts (free for a tied output projection: its dense weight is the input embedding's).
- **threads**: each count from 1 to the cores torch sees, timed on a whole decode-shaped forward
  (one new token per row) at 1 row and at the largest batch; the fastest at 1 row is used while a
  single request decodes (`solo_threads`), the fastest at the largest batch otherwise (`threads`).
  On a CPU shared with other jobs one thread can beat two several times over: OpenMP threads wait
  for each other at every operation, and a descheduled one stalls the rest.
- **decode batch size** (`max_batch_size`): 16, doubled while a doubling still raises tokens/s by
  `BATCH_GAIN`, up to `MAX_BATCH`. Never below 16: a noisy measurement must not switch batching off.

The result is cached in `$KOSITP_HOME/serve_calibration.json` under kositp.cpu_dtype's key (CPU
model, dtype flags, torch version) plus the dtype and the model's linear shapes, so the next start
reads it; the entry records the load average it was measured under, since a busy machine favours
fewer threads, and an entry measured busy (1-minute load above the cores) is measured again at the
first start on a quiet machine. Pinning: the serve settings `linear_kernels` (onednn|dense), `threads` (or the
environment's `OMP_NUM_THREADS`) and `max_batch_size` fix those choices (measurement only fills
what is left as auto); `calibrate: false` or `KOSITP_SERVE_CALIBRATION=off` measures nothing and
uses oneDNN, all threads and 16. `python -m kositp.serve.backends.calibration [MODEL]` measures
afresh and prints (caching nothing).
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from kositp.bench.machine import load_average, over_cores
from kositp.cpu_dtype import cache_key, cpu_identity, read_cache, write_cache
from kositp.cpu_linear import OneDNNLinear, onednn_usable

CACHE_FILE = "serve_calibration.json"
OFF_ENV = "KOSITP_SERVE_CALIBRATION"
KERNELS = ("dense", "onednn")
DEFAULT_BATCH = 16
MAX_BATCH = 32
BATCH_GAIN = 1.15  # a doubled batch must raise tokens/s by 15% to be worth its longer steps
MARGIN = 1.05  # a kernel that is not 5% faster at one row does not earn a second copy of a weight


class RowSplitLinear(nn.Module):
    """MKL's `nn.Linear` for a single row, oneDNN with the prepacked weight for more rows."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight, self.bias = linear.weight, linear.bias  # shared with a tied embedding, never copied
        self.onednn = OneDNNLinear(linear)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.numel() == self.in_features:
            return nn.functional.linear(x, self.weight, self.bias)
        return self.onednn(x)


def shape_name(linear) -> str:
    return f"{linear.in_features}x{linear.out_features}"


def plain_linears(model: nn.Module) -> dict[str, list[tuple[nn.Module, str, nn.Linear]]]:
    """Every plain `nn.Linear` outside adapter layers, as (parent, attribute, layer), grouped by shape."""
    modules = list(model.named_modules())
    adapters = [name + "." for name, m in modules if hasattr(m, "base_layer")]  # PEFT layers read their linears
    groups: dict[str, list] = {}
    for parent_name, parent in modules:
        if any((parent_name + ".").startswith(a) for a in adapters):
            continue
        for name, child in parent.named_children():
            if type(child) is nn.Linear:
                groups.setdefault(shape_name(child), []).append((parent, name, child))
    return groups


@dataclass
class ServeSettings:
    kernels: dict[str, str]  # linear shape "INxOUT" -> dense | onednn | split
    threads: int  # torch threads for prefills and batched decode steps
    max_batch_size: int
    source: str  # measured | cached | pinned | defaults
    measured: dict = field(default_factory=dict)
    layers: dict[str, int] = field(default_factory=dict)  # layers per kernel once applied
    solo_threads: int | None = None  # torch threads while one request decodes alone (None: `threads`)

    def __post_init__(self) -> None:
        self.solo_threads = self.solo_threads or self.threads

    def summary(self) -> dict:
        """What a benchmark report shows: the choices, where they came from, and the CPU they are for."""
        identity = cpu_identity()
        return {"kernels": self.kernels, "layers": self.layers, "threads": self.threads,
                "solo_threads": self.solo_threads,
                "max_batch_size": self.max_batch_size, "source": self.source, "cpu": identity.model,
                "cpu_flags": list(identity.flags)}

    def describe(self) -> str:
        counts = {k: sum(1 for v in self.kernels.values() if v == k) for k in ("dense", "onednn", "split")}
        kernels = ", ".join(f"{k} {n}" for k, n in counts.items() if n) or "none"
        return (f"linear kernels by shape: {kernels}; threads {self.threads} ({self.solo_threads} for a lone request); "
                f"max_batch_size {self.max_batch_size} ({self.source})")


def apply_settings(model: nn.Module, settings: ServeSettings) -> dict[str, int]:
    """Swap the model's linears to the chosen kernels and set torch's threads; returns layers per kernel."""
    torch.set_num_threads(settings.threads)
    counts = dict.fromkeys(("dense", "onednn", "split"), 0)
    for shape, layers in plain_linears(model).items():
        kernel = settings.kernels.get(shape, "dense")
        for parent, name, layer in layers:
            if kernel == "onednn":
                setattr(parent, name, OneDNNLinear(layer))
            elif kernel == "split":
                setattr(parent, name, RowSplitLinear(layer))
            counts[kernel] += 1
    settings.layers = {k: counts[k] + settings.layers.get(k, 0) for k in counts}
    return counts


# ------------------------------------------------------------------------------------------ measuring


def _median_call_s(fn, budget_s: float = 0.05, rounds: int = 3) -> float:
    """Median seconds of one `fn()` call, each round timing enough calls to fill about `budget_s`."""
    fn()
    start = time.perf_counter()
    fn()
    calls = max(1, min(500, int(budget_s / max(time.perf_counter() - start, 1e-6))))
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter() - start) / calls)
    return statistics.median(samples)


def time_kernels(layer: nn.Linear, rows_threads: dict[int, int]) -> dict[str, dict[int, float]]:
    """Seconds per call of `dense` and `onednn` on this layer's weight, per row count, each row count at its
    thread count (the two kernels alternate, so a machine getting busier hurts neither)."""
    kernels = {"dense": layer, "onednn": OneDNNLinear(layer)}
    times: dict[str, dict[int, float]] = {k: {} for k in kernels}
    with torch.inference_mode():
        for n, threads in rows_threads.items():
            torch.set_num_threads(threads)
            x = torch.randn(1, n, layer.in_features)  # (batch, positions, features) as a decoder calls it
            for _ in range(2):
                for name in KERNELS:
                    t = _median_call_s(lambda k=kernels[name], x=x: k(x))
                    times[name][n] = min(times[name].get(n, t), t)
    return times


def choose_kernel(times: dict[str, dict[int, float]], one: int, many: int) -> str:
    """The kernel for a shape from its timings at `one` row and at `many` rows."""
    fast_many = min(KERNELS, key=lambda k: times[k][many])
    fast_one = min(KERNELS, key=lambda k: times[k][one])
    if fast_one == fast_many:
        return fast_many
    slower = times[fast_many][one] / times[fast_one][one]
    return "split" if fast_one == "dense" and slower >= MARGIN else fast_many


def decode_step_s(model: nn.Module, rows: int, vocab: int) -> float:
    """Seconds of a decode-shaped forward: one new token for each of `rows` rows, logits for it only."""
    ids = torch.randint(0, vocab, (rows, 1), generator=torch.Generator().manual_seed(rows))
    with torch.inference_mode():
        return _median_call_s(lambda: model(input_ids=ids, use_cache=False, logits_to_keep=1), budget_s=0.2)


def choose_threads(step_s: dict[int, dict[int, float]], batch: int) -> int:
    """The thread count with the fastest decode step at `batch` rows (a tie takes more threads)."""
    return min(step_s, key=lambda n: (step_s[n][batch], -n))


def choose_batch(step_s: dict[int, float]) -> int:
    """From the smallest measured batch, keep doubling while doing so raises tokens/s by `BATCH_GAIN`."""
    chosen = min(step_s)
    for b in sorted(step_s):
        if b > chosen and (b / step_s[b]) >= BATCH_GAIN * (chosen / step_s[chosen]):
            chosen = b
        elif b > chosen:
            break
    return chosen


def measure(model: nn.Module, threads: int | None, max_batch_size: int | None, kernel: str | None,
            log=print) -> ServeSettings:
    """Time the unpinned choices on `model`, which is left with the chosen kernels applied.

    Threads first, on the model as loaded: on a busy CPU the thread count changes every other timing
    (a parallel region waits for its slowest thread), so each kernel is then timed at the thread
    count it will run with (a lone request's for 1 row, the batch's for many), and the batch size last.
    """
    cores = os.cpu_count() or 1
    vocab = model.get_output_embeddings().out_features
    many = max_batch_size or DEFAULT_BATCH
    measured: dict = {"step_s": {}, "kernel_s": {}, "batch_step_s": {}}
    batch_threads = solo_threads = threads or torch.get_num_threads()
    if threads is None and cores > 1:
        step_s = {}
        for n in range(1, cores + 1):
            torch.set_num_threads(n)
            step_s[n] = {b: decode_step_s(model, b, vocab) for b in (1, many)}
            log(f"calibration: {n} thread(s): decode step {step_s[n][1] * 1e3:.0f} ms at 1 row, "
                f"{step_s[n][many] * 1e3:.0f} ms at {many} rows")
        batch_threads, solo_threads = choose_threads(step_s, many), choose_threads(step_s, 1)
        measured["step_s"] = step_s
    kernels = {}
    for shape, layers in plain_linears(model).items():
        if kernel:
            kernels[shape] = kernel
            continue
        times = time_kernels(layers[0][2], {1: solo_threads, many: batch_threads})
        kernels[shape] = choose_kernel(times, 1, many)
        measured["kernel_s"][shape] = times
        log(f"calibration: {shape} at 1 / {many} rows: dense {times['dense'][1] * 1e3:.2f} / "
            f"{times['dense'][many] * 1e3:.2f} ms, onednn {times['onednn'][1] * 1e3:.2f} / "
            f"{times['onednn'][many] * 1e3:.2f} ms -> {kernels[shape]}")
    settings = ServeSettings(kernels, batch_threads, many, "measured", measured, solo_threads=solo_threads)
    apply_settings(model, settings)  # also sets the batch thread count for the batch-size timing
    if max_batch_size is None:
        sizes = [DEFAULT_BATCH * 2**i for i in range(8) if DEFAULT_BATCH * 2**i <= MAX_BATCH]
        batch_s = {b: decode_step_s(model, b, vocab) for b in sizes}
        settings.max_batch_size = choose_batch(batch_s)
        measured["batch_step_s"] = batch_s
        log("calibration: tokens/s by decode batch: "
            + ", ".join(f"{b}: {b / s:.1f}" for b, s in batch_s.items()) + f" -> {settings.max_batch_size}")
    return settings


# ------------------------------------------------------------------------------------------ resolving


def calibration_key(model: nn.Module, kernel: str | None, threads: int | None, max_batch_size: int | None) -> str:
    """kositp.cpu_dtype's CPU key, the dtype and linear shapes of the model, and what was pinned."""
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    shapes = ",".join(sorted(plain_linears(model)))
    pins = f"kernels {kernel or 'auto'}, threads {threads or 'auto'}, batch {max_batch_size or 'auto'}"
    return f"{cache_key(cpu_identity(), 'serve', torch.__version__)} | {dtype} | {shapes} | {pins}"


def cache_path():
    from kositp.models import kositp_home

    return kositp_home() / CACHE_FILE


def calibration_off() -> bool:
    return os.environ.get(OFF_ENV, "").strip().lower() in ("0", "off", "false", "no")


def machine_busy() -> bool:
    """Other work is running: the 1-minute load exceeds the cores (the server itself is idle while it calibrates)."""
    return over_cores(load_average())


def was_busy(entry: dict) -> bool:
    """Measured with other work running, or with no load recorded (then it may have been)."""
    load = entry.get("load_average")
    return not isinstance(load, list) or over_cores(load)


def resolve_settings(model: nn.Module, linear_kernels: str = "auto", threads: int | None = None,
                     max_batch_size: int | None = None, calibrate: bool = True, flush_denormal: bool = True,
                     log=print) -> ServeSettings:
    """Settings for serving `model` here, applied to it: pinned ones as given, the rest cached or measured.

    Measuring flushes denormals (on this thread, for its duration) when the engine will: the
    dequantized default model is several times slower with them, and the timings must be the engine's.
    """
    usable = onednn_usable(model)
    kernel = "dense" if not usable else None if linear_kernels == "auto" else linear_kernels
    if threads is None and os.environ.get("OMP_NUM_THREADS"):
        threads = torch.get_num_threads()  # the environment already pins the thread count
    pinned = kernel is not None and threads is not None and max_batch_size is not None
    if pinned or not calibrate or calibration_off():
        default = kernel or ("onednn" if usable else "dense")
        settings = ServeSettings({s: default for s in plain_linears(model)}, threads or torch.get_num_threads(),
                                 max_batch_size or DEFAULT_BATCH, "pinned" if pinned else "defaults")
        apply_settings(model, settings)
        return settings
    path, key = cache_path(), calibration_key(model, kernel, threads, max_batch_size)
    cached = read_cache(path).get(key)
    if isinstance(cached, dict) and was_busy(cached) and not machine_busy():
        log(f"calibration: the cached settings were measured on a busy machine (load {cached.get('load_average')} "
            f"on {os.cpu_count()} cores), which favours fewer threads; measuring again now that it is quiet")
        cached = None
    if isinstance(cached, dict) and isinstance(cached.get("kernels"), dict):
        settings = ServeSettings(cached["kernels"], int(cached["threads"]), int(cached["max_batch_size"]), "cached",
                                 cached.get("measured", {}), solo_threads=cached.get("solo_threads"))
        apply_settings(model, settings)
        return settings
    log(f"calibration: measuring serving settings on {cpu_identity().describe()} (once; cached in {path})")
    torch.set_flush_denormal(flush_denormal)
    try:
        settings = measure(model, threads, max_batch_size, kernel, log)
    finally:
        torch.set_flush_denormal(False)
    write_cache(path, key, asdict(settings) | {"measured_on": time.strftime("%Y-%m-%d"), "load_average": load_average()})
    return settings


def main() -> None:
    import sys

    from kositp.serve.backends.transformers import load_for_serving

    model, _, _ = load_for_serving(sys.argv[1] if len(sys.argv) > 1 else "default", "float32")
    torch.set_flush_denormal(True)  # as the engine's worker does
    print(measure(model, None, None, None).describe())


if __name__ == "__main__":
    main()
