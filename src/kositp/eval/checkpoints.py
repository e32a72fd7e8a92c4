"""One file per finished suite in `REPORT_DIR/suites/`, so an interrupted evaluation continues (`resume=true`).

A full evaluation on a CPU can take hours; losing the finished suites to an interruption would cost
that again. Each suite's result is written as soon as it finishes, under a key
made of everything that decides its numbers: the evaluation settings (less the suite list and the
output folder), the generator's description, and the model files' sizes and modification times (a
retrained run directory gets a new key). A checkpoint is reused only when its key matches; otherwise
the suite runs again and the reason is printed.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import asdict
from pathlib import Path

from kositp.eval.suites import SuiteResult

FOLDER = "suites"


def model_stamp(spec: str | None) -> list | str | None:
    """Sizes and modification times of a local model's files (top level and adapter/), or the spec itself."""
    if not spec:
        return spec
    path = Path(spec)
    if not path.is_dir():
        return spec
    files = sorted(p for p in [*path.iterdir(), *path.glob("*/*.safetensors")] if p.is_file())
    return [[str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns] for p in files]


def resume_key(settings: dict, generator: dict, model: str | None) -> str:
    """A short hash of what decides a suite's numbers (settings: the config record without suites/resume)."""
    blob = json.dumps({"settings": settings, "generator": generator, "model_files": model_stamp(model)},
                      sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def save(out: Path, suite: str, key: str, result: SuiteResult, seconds: float) -> Path:
    folder = out / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{suite}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"key": key, "seconds": round(seconds, 3), "result": asdict(result)},
                              ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)  # a kill mid-write leaves the old file or none, never half a result
    return path


def load(out: Path, suite: str, key: str) -> tuple[SuiteResult, float] | None:
    """The suite's saved result and its original seconds if its key matches; None (and why, on stderr) if not."""
    path = out / FOLDER / f"{suite}.json"
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        result = SuiteResult(**record["result"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"{suite}: not reusing {path} (unreadable: {exc}); running it again", file=sys.stderr)
        return None
    if record.get("key") != key:
        print(f"{suite}: not reusing {path} (made with other settings or model files); running it again",
              file=sys.stderr)
        return None
    print(f"{suite}: reused {path} ({len(result.examples)} examples)", file=sys.stderr)
    return result, float(record.get("seconds", 0.0))
