"""float32 or bfloat16 on this CPU: whichever is faster here, decided once per CPU by a short timed probe.

bf16 instructions (AVX512-BF16, AMX) do not make bf16 the faster choice everywhere: a bf16 matmul
beats an fp32 one on a Xeon with AVX512-BF16, yet LoRA training of gemma-3-270m under bf16
autocast was slower there than in fp32 (autocast re-casts every frozen weight on each step, and the
small ops do not speed up; figures in docs/training.md). Without bf16 instructions bf16 is emulated and always slower.
So `auto` (training's `bf16: auto`, eval's and the transformers server's `dtype: auto`) means:

- `KOSITP_CPU_DTYPE` set (`float32` or `bfloat16`): that, with no probe;
- a CPU without bf16 instructions: float32, with no probe (nothing to time that could win);
- otherwise the result cached in `$KOSITP_HOME/cpu_dtype.json` for this CPU model, its flags and
  this torch version, or a probe of about two seconds that fills it: a training-shaped step
  (frozen linears with LoRA adapters and a cross-entropy head, forward and backward, fp32 against
  bf16 autocast) for `train`, an inference-shaped forward (a decode batch through the MLP and an
  output projection, fp32 oneDNN linears as eval and serving run them against bf16 weights) for
  `infer`. bf16 is picked only when it wins by `MARGIN`, since fp32 is the exact choice.

`python -m kositp.cpu_dtype` runs both probes afresh and prints the timings and the choice.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from kositp.errors import KositpError

Workload = Literal["train", "infer"]
WORKLOADS: tuple[Workload, ...] = ("train", "infer")
PIN_ENV = "KOSITP_CPU_DTYPE"
CACHE_FILE = "cpu_dtype.json"
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
# Flags that decide how fast fp32 and bf16 matmuls run; they name the CPU in the cache key and in figures.
DTYPE_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
# bf16 must take at most 1/MARGIN of fp32's time to be chosen: a tie goes to the exact dtype.
MARGIN = 1.1
PIN_VALUES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16"}


@dataclass(frozen=True)
class CpuIdentity:
    """A CPU as far as dtype speed goes: its model name and which of `DTYPE_FLAGS` it has."""

    model: str
    flags: tuple[str, ...]

    @property
    def has_bf16_instructions(self) -> bool:
        return any(flag in self.flags for flag in BF16_FLAGS)

    def describe(self) -> str:
        return f"{self.model} ({', '.join(self.flags) or 'none of ' + ', '.join(DTYPE_FLAGS)})"


def cpu_identity(cpuinfo: str | None = None) -> CpuIdentity:
    """Model name and dtype flags from /proc/cpuinfo (Linux), or the platform's processor name elsewhere."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            cpuinfo = ""
    model, flags = "", set()
    for line in cpuinfo.splitlines():
        name, _, value = line.partition(":")
        name = name.strip()
        if name == "model name" and not model:
            model = value.strip()
        elif name == "flags" and not flags:
            flags = set(value.split())
    return CpuIdentity(model or platform.processor() or platform.machine(),
                       tuple(flag for flag in DTYPE_FLAGS if flag in flags))


def cache_key(identity: CpuIdentity, workload: Workload, torch_version: str) -> str:
    return f"{workload} | {identity.model} | {' '.join(identity.flags)} | torch {torch_version}"


def pick_faster(timings: dict[str, float], margin: float = MARGIN) -> str:
    """`bfloat16` when its time is below fp32's by at least `margin`, else `float32`."""
    return "bfloat16" if timings["bfloat16"] * margin <= timings["float32"] else "float32"


def pinned_dtype() -> str | None:
    value = os.environ.get(PIN_ENV, "").strip().lower()
    if not value:
        return None
    if value not in PIN_VALUES:
        raise KositpError(f"{PIN_ENV}={value!r} is not a dtype; use float32 or bfloat16 (or unset it)")
    return PIN_VALUES[value]


def cache_path() -> Path:
    from kositp.models import kositp_home

    return kositp_home() / CACHE_FILE


def read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # missing or damaged: probe again and rewrite it
    return data if isinstance(data, dict) else {}


def write_cache(path: Path, key: str, entry: dict) -> None:
    data = read_cache(path)
    data[key] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    tmp.replace(path)  # atomic: two processes probing at once never leave half a file


def resolve_cpu_dtype(workload: Workload, probe=None) -> str:
    """`float32` or `bfloat16` for `workload` on this CPU (see the module docstring for the order of rules).

    `probe(workload) -> {"float32": s, "bfloat16": s}` replaces the timed probe (tests inject timings).
    """
    if workload not in WORKLOADS:
        raise ValueError(f"workload must be one of {WORKLOADS}, not {workload!r}")
    pinned = pinned_dtype()
    if pinned:
        return pinned
    identity = cpu_identity()
    if not identity.has_bf16_instructions:
        return "float32"
    import torch

    path = cache_path()
    key = cache_key(identity, workload, torch.__version__)
    cached = read_cache(path).get(key)
    if isinstance(cached, dict) and cached.get("dtype") in ("float32", "bfloat16"):
        return cached["dtype"]
    timings = (probe or probe_seconds)(workload)
    dtype = pick_faster(timings)
    write_cache(path, key, {"dtype": dtype, "seconds": {k: round(v, 5) for k, v in timings.items()},
                            "threads": torch.get_num_threads(), "measured": time.strftime("%Y-%m-%d")})
    print(f"kositp: {workload} dtype on this CPU: {dtype} (probe: fp32 {timings['float32'] * 1000:.0f} ms, "
          f"bf16 {timings['bfloat16'] * 1000:.0f} ms; cached in {path}; pin with {PIN_ENV})", file=sys.stderr)
    return dtype


def inference_dtype(requested: str) -> str:
    """The weight dtype eval and the transformers server load: `requested`, with `auto` resolved
    (CUDA: the checkpoint's own dtype; CPU: the faster of float32 and bfloat16 for inference)."""
    if requested != "auto":
        return requested
    import torch

    return "auto" if torch.cuda.is_available() else resolve_cpu_dtype("infer")


# ------------------------------------------------------------------------------------------ probes
# Shapes of gemma-3-270m (hidden 640, MLP 2048), with an 8k-row slice of its output
# projection: the head then takes about 60% of a training step's FLOPs, as the whole head does in gemma's.
HIDDEN, INTERMEDIATE, VOCAB_SLICE, LORA_R = 640, 2048, 8192, 8
TRAIN_TOKENS, DECODE_ROWS, REPEATS = 256, 16, 3


def _train_step(dtype: str):
    """One LoRA-shaped forward + backward: frozen fp32 linears with rank-8 adapters, a head, cross-entropy."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    frozen = [torch.randn(INTERMEDIATE, HIDDEN, generator=g) * 0.02, torch.randn(HIDDEN, INTERMEDIATE, generator=g) * 0.02]
    adapters = [(torch.zeros(LORA_R, w.shape[1]).normal_(0, 0.02, generator=g).requires_grad_(),
                 torch.zeros(w.shape[0], LORA_R).requires_grad_()) for w in frozen]
    head = torch.randn(VOCAB_SLICE, HIDDEN, generator=g) * 0.02
    x = torch.randn(TRAIN_TOKENS, HIDDEN, generator=g)
    labels = torch.randint(0, VOCAB_SLICE, (TRAIN_TOKENS,), generator=g)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bfloat16"):
            (up, (up_a, up_b)), (down, (down_a, down_b)) = zip(frozen, adapters, strict=True)
            h = F.gelu(F.linear(x, up) + F.linear(F.linear(x, up_a), up_b))
            h = F.linear(h, down) + F.linear(F.linear(h, down_a), down_b)
            loss = F.cross_entropy(F.linear(h, head).float(), labels)
        loss.backward()
        for a, b in adapters:
            a.grad = b.grad = None

    return step


def _infer_step(dtype: str):
    """One decode step of a batch: the MLP and an output-projection slice, weights stored in `dtype`."""
    import torch
    from torch import nn

    from kositp.cpu_linear import OneDNNLinear, onednn_usable

    torch.manual_seed(0)
    layers = nn.Sequential(nn.Linear(HIDDEN, INTERMEDIATE, bias=False), nn.GELU(),
                           nn.Linear(INTERMEDIATE, HIDDEN, bias=False), nn.Linear(HIDDEN, VOCAB_SLICE, bias=False))
    if dtype == "bfloat16":
        layers = layers.to(torch.bfloat16)
    elif onednn_usable(layers):  # fp32 runs as eval and serving run it
        for i, layer in enumerate(layers):
            if isinstance(layer, nn.Linear):
                layers[i] = OneDNNLinear(layer)
    x = torch.randn(DECODE_ROWS, HIDDEN).to(getattr(torch, dtype))

    def step() -> None:
        with torch.inference_mode():
            layers(x)

    return step


def probe_seconds(workload: Workload, repeats: int = REPEATS) -> dict[str, float]:
    """Median seconds of one `workload` step in fp32 and in bf16, the two interleaved after a warm-up each."""
    make = _train_step if workload == "train" else _infer_step
    steps = {dtype: make(dtype) for dtype in ("float32", "bfloat16")}
    rounds = repeats * (1 if workload == "train" else 5)  # a decode step is short: time many
    for step in steps.values():
        step()
    samples: dict[str, list[float]] = {dtype: [] for dtype in steps}
    for _ in range(rounds):
        for dtype, step in steps.items():
            start = time.perf_counter()
            step()
            samples[dtype].append(time.perf_counter() - start)
    return {dtype: statistics.median(values) for dtype, values in samples.items()}


def main() -> None:
    import torch

    identity = cpu_identity()
    print(f"CPU: {identity.describe()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    for workload in WORKLOADS:
        timings = probe_seconds(workload)
        print(f"{workload:>5}: fp32 {timings['float32'] * 1000:8.2f} ms, bf16 {timings['bfloat16'] * 1000:8.2f} ms "
              f"(bf16/fp32 speed {timings['float32'] / timings['bfloat16']:.2f}x) -> {pick_faster(timings)}"
              + ("" if identity.has_bf16_instructions else " (auto skips the probe here: no bf16 instructions)"))


if __name__ == "__main__":
    main()
