"""What every benchmark report records about the machine it ran on: CPU, flags, cores, versions, load,
and the two physical limits a decode step runs into (memory bandwidth, matmul peak)."""

from __future__ import annotations

import os
import platform
import statistics
import time
from typing import Any


def machine_info() -> dict[str, Any]:
    """CPU model and its dtype-relevant flags, core count, platform, Python and torch versions, CUDA device."""
    import torch

    from kositp.cpu_dtype import cpu_identity

    identity = cpu_identity()
    return {"cpu": identity.model, "cpu_flags": list(identity.flags), "cores": os.cpu_count(),
            "platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (empty where the OS has none): how busy a shared machine was."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def over_cores(load: list[float], cores: int | None = None) -> bool:
    """Whether a load average says other work was running: its 1-minute figure above the core count
    (a benchmark's or server's own threads never push it there). No load average: no claim."""
    return bool(load) and load[0] > (cores or os.cpu_count() or 1)


def _median_seconds(fn, repeats: int) -> float:
    fn()  # first touch: page faults and kernel selection are not the steady state
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def memory_bandwidth_gbs(megabytes: int = 512, repeats: int = 7) -> float:
    """Copy bandwidth in GB/s: a `megabytes` fp32 tensor copied into another (bytes read + bytes written),
    far larger than any cache, with torch's own threads, median of `repeats`."""
    import torch

    src = torch.ones(megabytes * 2**20 // 4)
    dst = torch.empty_like(src)
    seconds = _median_seconds(lambda: dst.copy_(src), repeats)
    return 2 * src.numel() * 4 / seconds / 1e9


def matmul_peak_gflops(dtype: str = "float32", size: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of one square `size` matmul in `dtype` (2·size³ FLOPs), median of `repeats`: the
    compute ceiling a batched decode step can approach."""
    import torch

    g = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=g).to(getattr(torch, dtype))
    b = torch.randn(size, size, generator=g).to(getattr(torch, dtype))
    with torch.inference_mode():
        seconds = _median_seconds(lambda: torch.mm(a, b), repeats)
    return 2 * size**3 / seconds / 1e9
