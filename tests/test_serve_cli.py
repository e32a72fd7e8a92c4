"""`kositp serve` refuses bad settings with one clear line (exit 2), before binding any port."""

from __future__ import annotations

import subprocess
import sys

import pytest


def serve(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kositp.cli", "serve", *args], capture_output=True, text=True,
                          timeout=120, env=env)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--model", "/no/such/model"], "is not a directory"),
        (["--model", "tiny", "--backend", "llamacpp"], "backend"),
        (["--model", "tiny", "max_concurency=3"], "did you mean 'max_concurrency'"),
        (["--model", "tiny", "--port", "70000"], "port"),
        (["--model", "tiny", "--upstream", "http://127.0.0.1:1"], "need --backend vllm"),
        (["--model", "tiny", "--api-key-file", "/no/keys.txt"], "API key file not found"),
        (["--model", "tiny", "--backend", "vllm", "--lora", "oops"], "NAME=DIR"),
    ],
)
def test_bad_settings_fail_with_one_line(args, fragment, tiny_model_dir):
    proc = serve(*args)
    assert proc.returncode == 2, proc.stderr
    assert fragment in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_missing_vllm_environment_is_explained(tiny_model_dir, tmp_path):
    import os

    env = dict(os.environ, KOSITP_VLLM_PYTHON=str(tmp_path / "nothing" / "python"))
    proc = serve("--model", str(tiny_model_dir), "--backend", "vllm", "--port", "0", env=env)
    assert proc.returncode == 2
    assert "make vllm-env" in proc.stderr and "Traceback" not in proc.stderr



def test_vllm_gets_float32_on_a_cpu_without_bf16_and_an_in_process_engine(monkeypatch):
    from kositp.serve.backends.vllm import vllm_command, vllm_dtype, vllm_env
    from kositp.serve.config import ServeConfig

    assert vllm_dtype("auto", cpu_without_bf16=True) == "float32"
    assert vllm_dtype("auto", cpu_without_bf16=False) == "auto"  # the checkpoint's dtype
    assert vllm_dtype("bfloat16", cpu_without_bf16=True) == "bfloat16"  # an explicit choice is kept

    cfg = ServeConfig(model="tiny", backend="vllm")
    cmd = vllm_command(cfg, "/models/m", "m", 8001, None)
    assert cmd[cmd.index("--dtype") + 1] in ("float32", "auto") and "--enforce-eager" in cmd
    monkeypatch.delenv("VLLM_ENABLE_V1_MULTIPROCESSING", raising=False)
    env = vllm_env(cfg)
    assert env["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0" and env["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "0"
    separate = cfg.model_copy(update={"vllm": cfg.vllm.model_copy(update={"in_process_engine": False})})
    assert "VLLM_ENABLE_V1_MULTIPROCESSING" not in vllm_env(separate)
