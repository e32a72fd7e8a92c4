"""The measured side of `kositp bench data`, run in a fresh interpreter per measurement.

Kept apart from `kositp.data.bench` so the child imports only the reader (no typer/rich/click):
its peak RSS is then the reader's own, not the CLI's.
"""

from __future__ import annotations

import json
import resource
import time


def _rss_mb() -> float:
    """Peak RSS of this process in MB.

    Linux keeps `ru_maxrss` across fork+exec, so a child started by a big parent would report the
    parent's peak; `VmHWM` in /proc/self/status belongs to this process's own address space.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def read_child(path: str, mode: str = "reader") -> None:
    """Run in a fresh interpreter: read `path` once and print one JSON line of measurements."""
    import ijson

    from kositp.data.schema import Document
    from kositp.data.sources.aihub_mrc import read_mrc

    rss_start = _rss_mb()
    wall, cpu = time.perf_counter(), time.process_time()
    if mode == "parse":
        with open(path, "rb") as fh:
            qas = sum(len(p.get("qas") or ()) for item in ijson.items(fh, "data.item", use_float=True)
                      for p in item.get("paragraphs") or ())
    else:
        qas = sum(len(p.qas) for d in read_mrc(path, "bench") if isinstance(d, Document) for p in d.passages)
    seconds, cpu_seconds = time.perf_counter() - wall, time.process_time() - cpu
    print(json.dumps({"mode": mode, "qa_records": qas, "seconds": round(seconds, 4),
                      "cpu_seconds": round(cpu_seconds, 4), "peak_rss_mb": round(_rss_mb(), 1),
                      "rss_before_read_mb": round(rss_start, 1), "ijson_backend": ijson.backend}))
