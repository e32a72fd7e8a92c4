"""`auto` dtype on CPU: the probe's choice, its cache, the pin, and the wiring into training, eval and serving.

Timings are injected: nothing here asserts on how fast this machine is.
"""

from __future__ import annotations

import json

import pytest

from kositp import cpu_dtype
from kositp.cpu_dtype import CpuIdentity, cache_key, cpu_identity, pick_faster, resolve_cpu_dtype
from kositp.errors import KositpError

XEON_CPUINFO = """processor	: 0
vendor_id	: GenuineIntel
model name	: Intel(R) Xeon(R) Platinum 8488C
flags		: fpu sse2 avx avx2 avx512f avx512bw avx512_bf16 avx512_vnni amx_bf16 amx_tile
processor	: 1
model name	: Intel(R) Xeon(R) Platinum 8488C
flags		: fpu sse2 avx avx2 avx512f avx512bw avx512_bf16 avx512_vnni amx_bf16 amx_tile
"""
EPYC_AVX2_CPUINFO = """model name	: AMD EPYC 7B12
flags		: fpu sse2 avx avx2 fma
"""
BF16_CPU = CpuIdentity("Intel(R) Xeon(R) Platinum 8488C", ("avx2", "avx512f", "avx512_bf16", "amx_bf16"))
AVX2_CPU = CpuIdentity("AMD EPYC 7B12", ("avx2",))


def test_identity_keeps_the_model_name_and_the_dtype_flags_only():
    assert cpu_identity(XEON_CPUINFO) == BF16_CPU
    assert cpu_identity(XEON_CPUINFO).has_bf16_instructions
    assert cpu_identity(EPYC_AVX2_CPUINFO) == AVX2_CPU
    assert not cpu_identity(EPYC_AVX2_CPUINFO).has_bf16_instructions


@pytest.mark.parametrize(("fp32", "bf16", "expected"), [
    (1.00, 0.40, "bfloat16"),   # bf16 much faster
    (1.00, 1.10, "float32"),    # bf16 slower (the Xeon's LoRA training step)
    (1.00, 0.95, "float32"),    # within the margin: the exact dtype wins the tie
    (1.10, 1.00, "bfloat16"),   # exactly the margin
])
def test_the_faster_dtype_is_picked_and_a_near_tie_stays_fp32(fp32, bf16, expected):
    assert pick_faster({"float32": fp32, "bfloat16": bf16}) == expected


def test_cache_key_names_workload_cpu_flags_and_torch():
    key = cache_key(BF16_CPU, "train", "2.13.0+cpu")
    assert key == "train | Intel(R) Xeon(R) Platinum 8488C | avx2 avx512f avx512_bf16 amx_bf16 | torch 2.13.0+cpu"
    others = {cache_key(BF16_CPU, "infer", "2.13.0+cpu"), cache_key(BF16_CPU, "train", "2.14.0+cpu"),
              cache_key(CpuIdentity(BF16_CPU.model, ("avx2", "avx512f", "avx512_bf16")), "train", "2.13.0+cpu"),
              cache_key(AVX2_CPU, "train", "2.13.0+cpu")}
    assert key not in others and len(others) == 4


@pytest.fixture
def bf16_machine(monkeypatch, tmp_path):
    """A CPU with bf16 instructions, an empty KOSITP_HOME and no pin; yields the probe call log."""
    monkeypatch.setenv("KOSITP_HOME", str(tmp_path))
    monkeypatch.delenv(cpu_dtype.PIN_ENV, raising=False)
    monkeypatch.setattr(cpu_dtype, "cpu_identity", lambda: BF16_CPU)
    return tmp_path


def fixed_probe(timings: dict[str, dict[str, float]], calls: list[str]):
    def probe(workload):
        calls.append(workload)
        return timings[workload]
    return probe


def test_probe_runs_once_per_workload_and_its_choice_is_cached(bf16_machine):
    import torch

    calls: list[str] = []
    # Slower bf16 for training (autocast's casts), faster bf16 for inference: each workload keeps its own answer.
    probe = fixed_probe({"train": {"float32": 1.0, "bfloat16": 1.3}, "infer": {"float32": 1.0, "bfloat16": 0.4}}, calls)
    assert resolve_cpu_dtype("train", probe) == "float32"
    assert resolve_cpu_dtype("infer", probe) == "bfloat16"
    assert resolve_cpu_dtype("train", probe) == "float32"
    assert resolve_cpu_dtype("infer", probe) == "bfloat16"
    assert calls == ["train", "infer"]
    cache = json.loads((bf16_machine / cpu_dtype.CACHE_FILE).read_text(encoding="utf-8"))
    entry = cache[cache_key(BF16_CPU, "train", torch.__version__)]
    assert entry["dtype"] == "float32" and entry["seconds"] == {"float32": 1.0, "bfloat16": 1.3}


def test_another_torch_version_probes_again(bf16_machine, monkeypatch):
    import torch

    calls: list[str] = []
    probe = fixed_probe({"train": {"float32": 1.0, "bfloat16": 0.5}}, calls)
    assert resolve_cpu_dtype("train", probe) == "bfloat16"
    monkeypatch.setattr(torch, "__version__", "9.9.9")
    assert resolve_cpu_dtype("train", probe) == "bfloat16"
    assert calls == ["train", "train"]


def test_a_damaged_cache_is_probed_again_and_rewritten(bf16_machine):
    (bf16_machine / cpu_dtype.CACHE_FILE).write_text("{not json", encoding="utf-8")
    calls: list[str] = []
    assert resolve_cpu_dtype("train", fixed_probe({"train": {"float32": 1.0, "bfloat16": 0.5}}, calls)) == "bfloat16"
    assert calls == ["train"]
    assert json.loads((bf16_machine / cpu_dtype.CACHE_FILE).read_text(encoding="utf-8"))


def test_no_bf16_instructions_means_fp32_without_a_probe(bf16_machine, monkeypatch):
    monkeypatch.setattr(cpu_dtype, "cpu_identity", lambda: AVX2_CPU)
    calls: list[str] = []
    assert resolve_cpu_dtype("train", fixed_probe({}, calls)) == "float32"
    assert resolve_cpu_dtype("infer", fixed_probe({}, calls)) == "float32"
    assert calls == [] and not (bf16_machine / cpu_dtype.CACHE_FILE).exists()


@pytest.mark.parametrize(("pin", "expected"), [("bfloat16", "bfloat16"), ("bf16", "bfloat16"), ("FP32", "float32")])
def test_the_pin_wins_over_probe_and_cache(bf16_machine, monkeypatch, pin, expected):
    calls: list[str] = []
    monkeypatch.setenv(cpu_dtype.PIN_ENV, pin)
    assert resolve_cpu_dtype("train", fixed_probe({}, calls)) == expected
    monkeypatch.setattr(cpu_dtype, "cpu_identity", lambda: AVX2_CPU)  # pinned bf16 holds even where it is emulated
    assert resolve_cpu_dtype("infer", fixed_probe({}, calls)) == expected
    assert calls == []


def test_a_bad_pin_is_one_clear_error(bf16_machine, monkeypatch):
    monkeypatch.setenv(cpu_dtype.PIN_ENV, "int8")
    with pytest.raises(KositpError, match="KOSITP_CPU_DTYPE='int8' is not a dtype; use float32 or bfloat16"):
        resolve_cpu_dtype("train", fixed_probe({}, []))


def test_training_eval_and_serving_auto_follow_the_resolution(bf16_machine, monkeypatch):
    import torch

    from kositp.cpu_dtype import inference_dtype
    from kositp.train.common import resolve_bf16

    if torch.cuda.is_available():
        pytest.skip("on CUDA `auto` is the device's own answer, not the CPU probe's")
    monkeypatch.setenv(cpu_dtype.PIN_ENV, "bfloat16")
    assert resolve_bf16("auto") is True and inference_dtype("auto") == "bfloat16"
    monkeypatch.setenv(cpu_dtype.PIN_ENV, "float32")
    assert resolve_bf16("auto") is False and inference_dtype("auto") == "float32"
    assert resolve_bf16(True) is True and inference_dtype("bfloat16") == "bfloat16"  # explicit values pass through


def test_the_real_probes_run_both_dtypes():
    for workload in cpu_dtype.WORKLOADS:
        seconds = cpu_dtype.probe_seconds(workload, repeats=1)
        assert set(seconds) == {"float32", "bfloat16"} and all(s > 0 for s in seconds.values())
