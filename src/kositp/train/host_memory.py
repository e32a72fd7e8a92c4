"""Keep a CPU training process's resident memory close to what its tensors actually use.

glibc serves an allocation from the heap unless it is at least the *mmap threshold*, and that
threshold is dynamic: every time a large mmapped block is freed it rises (up to 32 MiB). A
training step frees megabyte-sized activations by the hundred, so after the first steps they all
come from the heap, where freed blocks stay resident and fragment: peak RSS grows well beyond the
live tensors. A fixed threshold (mallopt M_MMAP_THRESHOLD) makes every large tensor its own
mapping, returned to the OS the moment it is freed. That lowers the peak, but every page of every
such allocation becomes a page fault, which can cost more time than the memory is worth
(docs/training.md has both, measured), so it is opt-in (TrainConfig `malloc_mmap_threshold_kib`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_MMAP_THRESHOLD = -3  # <malloc.h>


def set_mmap_threshold(kib: int | None) -> bool:
    """Serve allocations of at least `kib` KiB with mmap; True when glibc accepted it (None: leave as is)."""
    if kib is None or not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt  # glibc only (musl has no mallopt)
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, kib * 1024) == 1
