"""kositp as a user installs and imports it: recipes by name, the `kositp config` commands, the
Python API's config convention, and a built wheel in a fresh virtual environment running the demo."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import httpx
import pytest

import kositp
from kositp.data.build import BuildConfig
from kositp.errors import KositpError
from kositp.recipes import RECIPES_DIR, names, resolve
from kositp.serve.process import free_port, wait_ready
from kositp.train.sft import SFTConfig

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kositp.cli", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def test_recipe_names_resolve_and_an_existing_file_wins(tmp_path: Path, monkeypatch):
    assert resolve("sft/demo") == RECIPES_DIR / "sft" / "demo.yaml"
    assert resolve("sft/demo.yaml") == RECIPES_DIR / "sft" / "demo.yaml"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sft").mkdir()
    (tmp_path / "sft" / "demo.yaml").write_text("model: tiny\n", encoding="utf-8")
    assert resolve("sft/demo.yaml") == Path("sft/demo.yaml")  # the user's own file, not the recipe


def test_unknown_recipe_is_one_error_naming_the_closest():
    with pytest.raises(KositpError, match=r"config file not found: sft/dmeo .*did you mean sft/demo"):
        resolve("sft/dmeo")
    with pytest.raises(KositpError, match="kositp config list"):
        resolve("nothing/like/it")


def test_config_commands_list_show_path_and_check_take_names():
    listed = run_cli("config", "list")
    assert listed.returncode == 0, listed.stderr
    for name in names():
        assert name in listed.stdout
    assert "sft:" in listed.stdout and "CPU demo: google/gemma-3-270m" in listed.stdout

    shown = run_cli("config", "show", "sft/tiny")
    assert shown.returncode == 0 and shown.stdout == (RECIPES_DIR / "sft" / "tiny.yaml").read_text(encoding="utf-8")
    located = run_cli("config", "path", "accelerate/ddp")
    assert Path(located.stdout.strip()) == RECIPES_DIR / "accelerate" / "ddp.yaml"
    checked = run_cli("config", "check", "sft/demo", "data/demo", "accelerate/ddp")
    assert checked.returncode == 0, checked.stderr
    assert "ok: sft/demo (SFTConfig)" in checked.stdout and "ok: data/demo (BuildConfig)" in checked.stdout

    missing = run_cli("config", "show", "sft/dmeo")
    assert missing.returncode != 0
    assert missing.stderr.count("\n") == 1 and "did you mean sft/demo" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_stage_commands_take_recipe_names(tmp_path: Path):
    result = run_cli("data", "build", "--config", "data/demo", "--out", str(tmp_path / "data"), "max_per_task=2",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    card = json.loads((tmp_path / "data" / "card.json").read_text(encoding="utf-8"))
    assert card["counts"]["written"] > 0


def test_api_keyword_overrides_merge_into_the_recipe_like_cli_overrides():
    recipe = kositp.resolve_config(BuildConfig, "data/demo")
    cfg = kositp.resolve_config(BuildConfig, "data/demo", splits={"validation": 0.25}, seed=7)
    assert cfg.seed == 7 and cfg.splits.validation == 0.25
    assert cfg.splits.test == recipe.splits.test  # the group's other settings stay the recipe's
    assert cfg.sources == recipe.sources

    again = kositp.resolve_config(BuildConfig, cfg, max_per_task=3)  # a config object, overridden
    assert again.max_per_task == 3 and again.seed == 7 and again.splits.validation == 0.25
    assert kositp.resolve_config(BuildConfig, cfg) is cfg

    sft = kositp.resolve_config(SFTConfig, "sft/tiny", out=Path("runs/x"), trainer={"extra": {"adam_epsilon": 1e-8}})
    assert sft.out == "runs/x" and sft.trainer.extra == {"adam_epsilon": 1e-8}  # a float, also where untyped
    assert sft.trainer.max_steps == kositp.resolve_config(SFTConfig, "sft/tiny").trainer.max_steps

    with pytest.raises(KositpError, match="did you mean 'seed'"):
        kositp.resolve_config(BuildConfig, "data/demo", sed=1)
    with pytest.raises(KositpError, match="invalid value for 'seed'"):
        kositp.resolve_config(BuildConfig, "data/demo", seed="many")


def test_public_api_is_listed():
    for name in ("build_data", "build_pairs", "train_sft", "train_preference", "export_model", "evaluate",
                 "serve", "serve_in_background", "register_source_format"):
        assert name in kositp.__all__ and callable(getattr(kositp, name))


def test_serve_in_background_answers_and_serve_refuses_a_missing_model(tiny_model_dir: Path, tmp_path: Path):
    with kositp.serve_in_background(model=str(tiny_model_dir), port=0, served_model_name="tiny") as url:
        models = httpx.get(f"{url}/v1/models", timeout=60).json()
        reply = httpx.post(f"{url}/v1/chat/completions", timeout=120, json={
            "model": "tiny", "messages": [{"role": "user", "content": "안녕하세요"}], "max_tokens": 4})
    assert [m["id"] for m in models["data"]] == ["tiny"]
    assert reply.status_code == 200 and isinstance(reply.json()["choices"][0]["message"]["content"], str)
    with pytest.raises(KositpError, match="is not a directory or an alias"):
        kositp.serve(model=str(tmp_path / "missing"))  # the package name, callable: the API's serve


def _build_wheel(tmp_path: Path) -> Path:
    """The wheel `pip wheel` builds, offline, from a copy of the sources (nothing is written into the repo)."""
    source = tmp_path / "source"
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                    "-q", "-w", str(wheels), str(source)], check=True, timeout=300, capture_output=True)
    (wheel,) = wheels.glob("kositp-*.whl")
    return wheel


def test_wheel_holds_every_file_the_package_tracks(tmp_path: Path):
    listed = subprocess.run(["git", "ls-files", "-z", "src/kositp"], cwd=REPO, capture_output=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout: the tracked files are unknown")
    tracked = {name.removeprefix("src/") for name in listed.stdout.decode().split("\0")
               if name and not name.endswith("/.gitignore")}
    with zipfile.ZipFile(_build_wheel(tmp_path)) as wheel:
        shipped = {name for name in wheel.namelist() if name.startswith("kositp/")}
    assert tracked - shipped == set()  # a data file missing here is missing for every installed user
    assert "kositp/recipes/sft/demo.yaml" in shipped and "kositp/ui/public/theme.json" in shipped


def _venv_with_the_wheel(tmp_path: Path) -> Path:
    """A fresh venv holding the built wheel; the other dependencies come from this venv, read-only."""
    wheel = _build_wheel(tmp_path)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    # A plain path line: the dependencies become importable, while this venv's own .pth files (the
    # editable install's pointer at src/ among them) are not processed, so `kositp` is the wheel's.
    Path(purelib, "kositp-test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                    "-q", str(wheel)], check=True, timeout=300)
    return venv


@pytest.mark.slow
def test_wheel_installs_and_runs_the_quick_demo_from_an_empty_folder(tmp_path: Path):
    venv = _venv_with_the_wheel(tmp_path)
    workdir = tmp_path / "empty"
    workdir.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env |= {"KOSITP_BENCHMARKS": str(tmp_path / "no-benchmarks"), "OMP_NUM_THREADS": "1",
            "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"}

    def kositp_cli(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
        return subprocess.run([str(venv / "bin" / "kositp"), *args], capture_output=True, text=True,
                              timeout=timeout, cwd=workdir, env=env)

    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import kositp; print(kositp.__file__)"],
                           capture_output=True, text=True, cwd=workdir, env=env, check=True).stdout.strip()
    assert Path(where).is_relative_to(venv), f"kositp imported from {where}, not from the installed wheel"

    listed = kositp_cli("config", "list")
    assert listed.returncode == 0, listed.stderr
    needed = ("data/demo", "sft/demo", "sft/tiny", "pref/demo-dpo", "pref/tiny-dpo", "serve/local", "ui/default")
    assert [name for name in needed if name not in listed.stdout] == [], listed.stdout  # package data
    assert kositp_cli("config", "check", "sft/demo", "pref/demo-dpo").returncode == 0

    demo = kositp_cli("demo", "--quick", "--no-serve", "--eval-limit", "2", "--out", "demo", timeout=900)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "without seed4 and kobest" in " ".join(demo.stdout.split())  # said, not a crash
    summary = json.loads((workdir / "demo" / "demo.json").read_text(encoding="utf-8"))
    assert [s["name"] for s in summary["stages"]][:2] == ["data", "sft"]
    assert all(isinstance(summary["scores"][name], float) for name in ("base", "sft", "dpo"))
    assert (workdir / "demo" / "export" / "model.safetensors").is_file()
    assert "tasks/mean_primary" in (workdir / "demo" / "demo.md").read_text(encoding="utf-8")
    assert not (workdir / "configs").exists() and sorted(p.name for p in workdir.iterdir()) == ["demo"]

    # `kositp demo` again, serving: every stage is reused, then the API and the chat page start from
    # the installed package (the page's files are package data) until Ctrl-C.
    api_port, ui_port = free_port(), free_port()
    serving = subprocess.Popen([str(venv / "bin" / "kositp"), "demo", "--quick", "--eval-limit", "2", "--out", "demo",
                                "--api-port", str(api_port), "--ui-port", str(ui_port)], cwd=workdir, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_ready(f"http://127.0.0.1:{api_port}", 300, serving)
        wait_ready(f"http://127.0.0.1:{ui_port}", 300, serving, path="/")
        page = httpx.get(f"http://127.0.0.1:{ui_port}/", timeout=30)
        reply = httpx.post(f"http://127.0.0.1:{api_port}/v1/chat/completions", timeout=120, json={
            "model": "export", "messages": [{"role": "user", "content": "안녕하세요"}], "max_tokens": 4})
    finally:
        serving.send_signal(signal.SIGINT)
        output = serving.communicate(timeout=120)[0]
    assert page.status_code == 200 and "<html" in page.text.lower()
    assert reply.status_code == 200, reply.text
    assert serving.returncode == 130, output[-3000:]
