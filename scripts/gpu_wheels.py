"""Download the wheels the GPU check installs, for a machine with no network (`make gpu-wheels`).

The GPU machine has Python 3.12, torch with CUDA 13, transformers, peft and accelerate, and at
most 64 MiB may travel with the working tree; it lacks TRL, Unsloth, bitsandbytes, datasets and
their small dependencies. Every wheel here is downloaded for CPython 3.12 manylinux x86_64 without
its dependencies (each needed one is listed), and two are slimmed to fit:

- unsloth: its `studio/` web app (about 25 MB of the wheel) is a separate top-level package that
  `import unsloth` never touches;
- bitsandbytes: only the CUDA 13 and CPU libraries are kept (it loads the library matching
  `torch.version.cuda`), dropping the CUDA 11/12 and ROCm builds.

Folders: `.gpu/wheels/` (always carried) and `.gpu/wheels-arrow/` (pyarrow and pandas, for
datasets; about 64 MB on their own, so they cannot travel with the rest: the GPU check's probe
says whether the machine has them). Each folder gets a SIZES.txt. Exit status 1 if the carried
folder is over its limit.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import re
import subprocess
import sys
import zipfile
from pathlib import Path

PLATFORM = ["--python-version", "3.12", "--implementation", "cp", "--abi", "cp312", "--abi", "abi3",
            "--abi", "none", "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_17_x86_64",
            "--platform", "manylinux_2_24_x86_64", "--platform", "manylinux_2_28_x86_64", "--platform", "any"]

# Versions follow pyproject.toml / constraints.txt where those pin them.
CARRIED = [
    # training: TRL and datasets (+ its small dependencies)
    "trl==1.15.0", "datasets==4.8.5", "dill==0.4.1", "multiprocess==0.70.19", "xxhash==4.1.0",
    "requests==2.34.2", "urllib3", "idna", "charset_normalizer", "certifi>=2026.10.19",
    # Unsloth (+ its fused cross-entropy; torchao for its fp8/QAT paths), bitsandbytes for QLoRA
    "unsloth==2026.10.9", "unsloth_zoo==2026.10.9", "cut_cross_entropy", "torchao", "bitsandbytes==0.50.2",
    # kositp's own light dependencies that transformers does not bring
    "pydantic==2.14.4", "pydantic_core==2.50.5", "annotated-types==0.8.0", "typing-inspection==0.4.5",
    # `kositp train` writes TensorBoard logs and loss.png (the end-to-end checks use the real commands)
    "tensorboard==2.21.0", "absl-py", "markdown", "werkzeug", "matplotlib", "contourpy", "cycler", "fonttools",
    "kiwisolver", "pyparsing", "pillow", "python-dateutil==4.0.0", "six",
]
ARROW = ["pyarrow==26.0.1", "pandas==3.1.1", "tzdata==2026.6"]

SLIM = {
    "unsloth": re.compile(r"^studio/"),
    "bitsandbytes": re.compile(r"^bitsandbytes/libbitsandbytes_(cuda1[12]\d|rocm)\w*\.so$"),
}
LIMIT_MIB = 58  # of the 64 MiB that may travel; the rest is for .gpu/assets and the working tree


def download(specs: list[str], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--no-deps",
           "--only-binary=:all:", *PLATFORM, "-d", str(folder), *specs]
    subprocess.run(cmd, check=True)


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def slim_wheel(wheel: Path, drop: re.Pattern) -> int:
    """Rewrite `wheel` without the members `drop` matches (RECORD updated); returns bytes saved."""
    before = wheel.stat().st_size
    tmp = wheel.with_suffix(".slim")
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
        kept = [i for i in src.infolist() if not drop.search(i.filename)]
        if len(kept) == len(src.infolist()):
            tmp.unlink()
            return 0
        record_name = next(i.filename for i in kept if i.filename.endswith(".dist-info/RECORD"))
        lines = []
        for info in kept:
            if info.filename == record_name:
                continue
            data = src.read(info)
            dst.writestr(info, data)
            lines.append(_record_line(info.filename, data))
        dst.writestr(record_name, "\n".join([*lines, f"{record_name},,"]) + "\n")
    tmp.replace(wheel)
    return before - wheel.stat().st_size


def write_sizes(folder: Path) -> float:
    wheels = sorted(folder.glob("*.whl"), key=lambda p: -p.stat().st_size)
    total = sum(p.stat().st_size for p in wheels) / 2**20
    lines = [f"{p.stat().st_size / 2**20:8.2f} MiB  {p.name}" for p in wheels] + [f"{total:8.2f} MiB  total"]
    (folder / "SIZES.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=Path(".gpu"))
    args = parser.parse_args()
    carried, arrow = args.dest / "wheels", args.dest / "wheels-arrow"
    download(CARRIED, carried)
    download(ARROW, arrow)
    for wheel in carried.glob("*.whl"):
        dist = wheel.name.split("-")[0].lower()
        if dist in SLIM:
            saved = slim_wheel(wheel, SLIM[dist])
            print(f"slimmed {wheel.name}: -{saved / 2**20:.1f} MiB")
    print(f"--- {carried}")
    total = write_sizes(carried)
    print(f"--- {arrow} (carry only where the probe says pyarrow/pandas are missing)")
    write_sizes(arrow)
    if total > LIMIT_MIB:
        print(f"error: {carried} holds {total:.1f} MiB, over the {LIMIT_MIB} MiB it may take", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
