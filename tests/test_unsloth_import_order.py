"""Unsloth is imported before transformers, TRL, PEFT and datasets on every path that trains on CUDA,
and never on CPU -- proved without a GPU.

A stand-in `unsloth` package, first on PYTHONPATH, records which of those modules were already
imported when it was imported, plus the hub variables its process saw, then exits with code 17
(so the CUDA path stops right there). A `sitecustomize` in the same folder makes
`torch.cuda.is_available()` answer True when FAKE_CUDA=1, which is all kositp needs to choose the
Unsloth path. Everything else is the real `kositp` command in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kositp.hub_access import OFFLINE_VARIABLES

WATCHED = ("transformers", "trl", "peft", "datasets")
STANDIN_EXIT = 17

STANDIN = f"""
import json, os, sys
record = {{
    "already_imported": [m for m in {WATCHED!r} if m in sys.modules],
    "env": {{k: os.environ.get(k) for k in {sorted(OFFLINE_VARIABLES)!r}}},
}}
with open(os.environ["UNSLOTH_STANDIN_RECORD"], "a", encoding="utf-8") as fh:
    fh.write(json.dumps(record) + "\\n")
raise SystemExit({STANDIN_EXIT})
"""

SITECUSTOMIZE = """
import os
if os.environ.get("FAKE_CUDA") == "1":
    import torch
    torch.cuda.is_available = lambda: True
    torch.cuda.get_device_name = lambda *args, **kwargs: "stand-in GPU"
"""

RECORDS = [
    ("한국의 수도는 어디인가요?", "한국의 수도는 서울입니다."),
    ("다음 단어의 반대말은? 크다", "작다"),
    ("부산은 어느 나라의 도시인가요?", "부산은 대한민국의 도시입니다."),
    ("질문에 예 또는 아니요로 답하세요: 물은 100도에서 끓나요?", "예"),
]


@pytest.fixture
def standin(tmp_path) -> Path:
    folder = tmp_path / "standin"
    (folder / "unsloth").mkdir(parents=True)
    (folder / "unsloth" / "__init__.py").write_text(STANDIN, encoding="utf-8")
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
    return folder


@pytest.fixture
def data(tmp_path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    with open(folder / "train.jsonl", "w", encoding="utf-8") as fh:
        for i, (question, answer) in enumerate(RECORDS):
            messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
            fh.write(json.dumps({"id": f"r{i}", "task": "t", "messages": messages}, ensure_ascii=False) + "\n")
    return folder


def _kositp(standin: Path, *args: str, fake_cuda: bool, extra_env: dict | None = None):
    env = {k: v for k, v in os.environ.items() if k not in OFFLINE_VARIABLES and k != "KOSITP_ONLINE"}
    env |= {"PYTHONPATH": os.pathsep.join([str(standin), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
            "UNSLOTH_STANDIN_RECORD": str(standin / "record.jsonl"), "FAKE_CUDA": "1" if fake_cuda else "0",
            "OMP_NUM_THREADS": "1"} | (extra_env or {})
    proc = subprocess.run([sys.executable, "-m", "kositp.cli", *args], env=env, capture_output=True, text=True,
                          timeout=600)
    record = standin / "record.jsonl"
    lines = record.read_text(encoding="utf-8").splitlines() if record.is_file() else []
    return proc, [json.loads(line) for line in lines]


def _sft_args(data: Path, out: Path, *overrides: str) -> list[str]:
    return ["train", "sft", "--config", "sft/tiny", "--data", str(data), "--out", str(out),
            "trainer.max_steps=1", "trainer.per_device_train_batch_size=2", "progress=false", *overrides]


def test_train_sft_imports_unsloth_before_the_libraries_it_patches(standin, data, tmp_path):
    proc, records = _kositp(standin, *_sft_args(data, tmp_path / "run"), fake_cuda=True)
    assert proc.returncode == STANDIN_EXIT, proc.stderr[-2000:]
    assert len(records) == 1
    assert records[0]["already_imported"] == []
    assert records[0]["env"] == OFFLINE_VARIABLES  # the default: offline


def test_train_pref_imports_unsloth_before_the_libraries_it_patches(standin, tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"id": "p0", "prompt": [{"role": "user", "content": "수도는?"}],
                                 "chosen": [{"role": "assistant", "content": "서울"}],
                                 "rejected": [{"role": "assistant", "content": "부산"}]}, ensure_ascii=False) + "\n",
                     encoding="utf-8")
    proc, records = _kositp(standin, "train", "pref", "--config", "pref/tiny-dpo", "--model", "tiny",
                            "--data", str(pairs), "--out", str(tmp_path / "dpo"), "trainer.max_steps=1",
                            fake_cuda=True)
    assert proc.returncode == STANDIN_EXIT, proc.stderr[-2000:]
    assert [r["already_imported"] for r in records] == [[]]


def test_bench_train_child_imports_unsloth_first_and_inherits_offline_settings(standin, data, tmp_path):
    args = ["bench", "train", "--quick", "--variants", "kositp", "--data", str(data), "--out", str(tmp_path / "b"),
            "--batch-size", "2", "--threads", "1"]
    proc, records = _kositp(standin, *args, fake_cuda=True)
    assert proc.returncode != 0 and f"exit {STANDIN_EXIT}" in proc.stderr, proc.stderr[-2000:]
    assert len(records) == 1  # the measured child imported it; the parent never trains
    assert records[0]["already_imported"] == []
    assert records[0]["env"] == OFFLINE_VARIABLES  # a child process of kositp sees the offline settings


def test_demo_training_stage_imports_unsloth_first(standin, tmp_path):
    proc, records = _kositp(standin, "demo", "--quick", "--no-serve", "--out", str(tmp_path / "demo"), fake_cuda=True)
    assert proc.returncode != 0 and f"exit code {STANDIN_EXIT}" in proc.stderr, proc.stderr[-2000:]
    assert [r["already_imported"] for r in records] == [[]]  # the SFT stage's child, before anything else


def test_bench_gpu_unsloth_case_imports_unsloth_first(standin, data, tmp_path, tiny_model_dir):
    from kositp.bench.model_shapes import write_random_model

    out = tmp_path / "gpu"
    write_random_model("llama-tiny", out / "work" / "models" / "llama-tiny", str(tiny_model_dir))  # on the real (CPU) torch
    proc, records = _kositp(standin, "bench", "gpu", "--out", str(out), "--shapes", "llama-tiny", "--adapters",
                            "lora", "--variants", "kositp-unsloth", "--no-extras", "--data", str(data),
                            "--tokenizer", str(tiny_model_dir), fake_cuda=True)
    assert proc.returncode == 0, proc.stderr[-2000:]  # the case failed and was recorded; the run did not
    case = json.loads((out / "bench_gpu.json").read_text(encoding="utf-8"))["cases"][0]
    assert case["status"] == f"failed (exit {STANDIN_EXIT})"
    assert [r["already_imported"] for r in records] == [[]]
    assert records[0]["env"] == OFFLINE_VARIABLES


def test_online_switch_leaves_the_hub_variables_alone(standin, data, tmp_path):
    _, records = _kositp(standin, "--online", *_sft_args(data, tmp_path / "run"), fake_cuda=True)
    assert records and records[0]["env"] == dict.fromkeys(OFFLINE_VARIABLES)
    _, records = _kositp(standin, *_sft_args(data, tmp_path / "run"), fake_cuda=True,
                         extra_env={"KOSITP_ONLINE": "1", "HF_HUB_OFFLINE": "0"})
    assert records[-1]["env"] == dict.fromkeys(OFFLINE_VARIABLES) | {"HF_HUB_OFFLINE": "0"}


def test_an_explicit_user_setting_is_kept(standin, data, tmp_path):
    _, records = _kositp(standin, *_sft_args(data, tmp_path / "run"), fake_cuda=True,
                         extra_env={"HF_HUB_OFFLINE": "0"})
    assert records[0]["env"] == OFFLINE_VARIABLES | {"HF_HUB_OFFLINE": "0"}


def test_cpu_training_never_imports_unsloth(standin, data, tmp_path):
    proc, records = _kositp(standin, *_sft_args(data, tmp_path / "run"), fake_cuda=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert records == []
    assert (tmp_path / "run" / "run.json").is_file()


def test_explicit_trl_backend_on_cuda_never_imports_unsloth(standin, data, tmp_path):
    # backend=trl on a (faked) GPU: no Unsloth; the run then fails later, on the missing real GPU
    _, records = _kositp(standin, *_sft_args(data, tmp_path / "run", "backend=trl"), fake_cuda=True)
    assert records == []
