"""Install the carried wheels that this Python lacks, then record what the environment holds.

Run by scripts/gpu_check.sh on the GPU machine (no network). A wheel is installed only when its
distribution is not installed at all (`--no-index --no-deps`), so the machine's own torch,
transformers, peft and accelerate stay as they are. Writes a JSON report: installed versions,
what was installed from which folder, the CUDA device, and the modules still missing.

    python scripts/gpu_install.py --wheels .gpu/wheels .gpu/wheels-arrow --report OUT/environment.json
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

# Distributions the check reports on, and the module each one is imported as.
WATCHED = {"torch": "torch", "transformers": "transformers", "peft": "peft", "accelerate": "accelerate",
           "trl": "trl", "datasets": "datasets", "pyarrow": "pyarrow", "pandas": "pandas",
           "unsloth": "unsloth", "unsloth_zoo": "unsloth_zoo", "bitsandbytes": "bitsandbytes",
           "xformers": "xformers", "triton": "triton", "pydantic": "pydantic", "typer": "typer", "rich": "rich",
           "pyyaml": "yaml", "tensorboard": "tensorboard", "matplotlib": "matplotlib"}
# Without these nothing trains; the rest only narrows what the check can measure.
REQUIRED = ("torch", "transformers", "peft", "accelerate", "trl", "datasets", "pyarrow", "pandas", "pydantic",
            "typer", "rich", "yaml")


def installed_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def missing_wheels(folders: list[Path]) -> list[Path]:
    """The first wheel of each distribution (in folder order) that is not installed."""
    chosen: dict[str, Path] = {}
    for folder in folders:
        for wheel in sorted(folder.glob("*.whl")) if folder.is_dir() else []:
            dist = wheel.name.split("-")[0]
            if dist.lower() not in chosen and installed_version(dist) is None:
                chosen[dist.lower()] = wheel
    return list(chosen.values())


def cuda_summary() -> dict:
    try:
        import torch
    except ImportError as exc:
        return {"error": str(exc)}
    info = {"torch": torch.__version__, "cuda_runtime": torch.version.cuda, "available": torch.cuda.is_available()}
    if info["available"]:
        props = torch.cuda.get_device_properties(0)
        info |= {"device": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
                 "capability": ".".join(map(str, torch.cuda.get_device_capability(0))),
                 "bf16": torch.cuda.is_bf16_supported()}
    return info


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheels", type=Path, nargs="+", required=True)
    parser.add_argument("--report", type=Path, required=True)
    args = parser.parse_args()

    todo = missing_wheels(args.wheels)
    install = {"wheels": [str(w) for w in todo], "status": "nothing to install"}
    if todo:
        # PIP_BREAK_SYSTEM_PACKAGES: a distribution Python marked externally managed still takes them.
        env = os.environ | {"PIP_BREAK_SYSTEM_PACKAGES": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", *map(str, todo)],
                              env=env, capture_output=True, text=True)
        install["status"] = "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
        install["output_tail"] = (proc.stdout + proc.stderr)[-3000:]
        print(install["output_tail"])
    importlib.invalidate_caches()
    versions = {dist: installed_version(dist) for dist in WATCHED}
    missing = [module for module in WATCHED.values() if importlib.util.find_spec(module) is None]
    report = {"python": sys.version.split()[0], "cuda": cuda_summary(), "install": install, "versions": versions,
              "missing_modules": missing, "missing_required": [m for m in missing if m in REQUIRED]}
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2))
    print(json.dumps({k: report[k] for k in ("python", "cuda", "versions", "missing_modules")}, indent=2))
    if report["missing_required"]:
        print(f"error: still missing {', '.join(report['missing_required'])}"
              + (" (carry .gpu/wheels-arrow: pyarrow/pandas)" if {"pyarrow", "pandas"} & set(missing) else ""),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
