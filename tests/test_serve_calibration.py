"""The transformers backend's start-up calibration: the choices it makes from timings, the layer it
builds where one row and a batch want different kernels, pinning, and the per-CPU cache.

Decisions are checked on given timings (a measured timing cannot be asserted); the measurement
itself runs for real on the tiny model, and the model it leaves behind must generate exactly what
the plain model does.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from kositp.cpu_linear import OneDNNLinear
from kositp.serve.backends import calibration
from kositp.serve.backends.calibration import (
    RowSplitLinear,
    choose_batch,
    choose_kernel,
    choose_threads,
    resolve_settings,
)


def _times(dense_one, dense_many, onednn_one, onednn_many):
    return {"dense": {1: dense_one, 16: dense_many}, "onednn": {1: onednn_one, 16: onednn_many}}


def test_kernel_choice_splits_only_when_one_row_and_a_batch_disagree_by_the_margin():
    assert choose_kernel(_times(2.0, 30.0, 3.0, 10.0), 1, 16) == "split"  # MKL for one row, oneDNN for a batch
    assert choose_kernel(_times(1.0, 30.0, 3.0, 10.0), 1, 16) == "split"
    assert choose_kernel(_times(2.9, 30.0, 3.0, 10.0), 1, 16) == "onednn"  # 3% at one row: not worth a 2nd copy
    assert choose_kernel(_times(3.0, 30.0, 2.0, 10.0), 1, 16) == "onednn"  # oneDNN wins both
    assert choose_kernel(_times(1.0, 9.0, 2.0, 10.0), 1, 16) == "dense"  # MKL wins both
    assert choose_kernel(_times(2.0, 9.0, 1.0, 10.0), 1, 16) == "dense"  # the batch decides otherwise


def test_batch_keeps_doubling_while_tokens_per_second_rise_enough():
    assert choose_batch({16: 16 / 110, 32: 32 / 120}) == 16  # doubling gains 9%: stay at 16
    assert choose_batch({16: 16 / 100, 32: 32 / 150}) == 32
    assert choose_batch({16: 0.1, 32: 0.3, 64: 0.1}) == 16  # stops at the first doubling that does not pay


def test_threads_are_chosen_for_a_lone_request_and_for_a_full_batch_apart():
    step_s = {1: {1: 1.0, 16: 4.0}, 2: {1: 1.3, 16: 2.2}}
    assert (choose_threads(step_s, 16), choose_threads(step_s, 1)) == (2, 1)
    assert choose_threads({1: {1: 1.0}, 2: {1: 1.0}}, 1) == 2  # a tie takes more threads


def test_row_split_linear_is_mkl_for_one_row_and_onednn_for_more_and_shares_the_weight():
    torch.manual_seed(0)
    linear = nn.Linear(64, 300, bias=True)
    split, onednn = RowSplitLinear(linear), OneDNNLinear(linear)
    assert split.weight is linear.weight  # a tied embedding keeps one dense copy
    with torch.inference_mode():
        one, many = torch.randn(1, 1, 64), torch.randn(1, 5, 64)
        assert torch.equal(split(one), linear(one))
        assert torch.equal(split(many), onednn(many))
        torch.testing.assert_close(split(many), linear(many), rtol=1e-5, atol=1e-5)


@pytest.fixture
def tiny(tiny_model_dir):
    from kositp.serve.backends.transformers import load_for_serving

    return lambda: load_for_serving(str(tiny_model_dir), "float32")


def test_pinned_or_switched_off_calibration_measures_nothing(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("KOSITP_HOME", str(tmp_path))
    monkeypatch.setattr(calibration, "measure", lambda *a, **k: pytest.fail("nothing may be measured"))
    model, _, _ = tiny()
    s = resolve_settings(model, "dense", threads=1, max_batch_size=4)
    assert (s.source, s.threads, s.max_batch_size) == ("pinned", 1, 4)
    assert set(s.kernels.values()) == {"dense"} and s.layers["onednn"] == s.layers["split"] == 0
    model, _, _ = tiny()
    s = resolve_settings(model, calibrate=False)
    assert s.source == "defaults" and set(s.kernels.values()) == {"onednn"} and s.max_batch_size == 16
    assert sum(isinstance(m, OneDNNLinear) for m in model.modules()) == s.layers["onednn"] > 0
    monkeypatch.setenv("KOSITP_SERVE_CALIBRATION", "off")
    model, _, _ = tiny()
    assert resolve_settings(model).source == "defaults"
    assert not (tmp_path / calibration.CACHE_FILE).exists()


def test_measured_settings_are_cached_per_cpu_and_keep_greedy_output(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("KOSITP_HOME", str(tmp_path))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # pins the thread count: only kernels and batch size are timed
    monkeypatch.setattr(calibration, "load_average", lambda: [0.5, 0.5, 0.5])  # a busy test run must not re-measure
    plain, tokenizer, _ = tiny()
    model, _, _ = tiny()
    lines: list[str] = []
    s = resolve_settings(model, log=lines.append)
    assert s.source == "measured" and s.threads == 1 and 16 <= s.max_batch_size <= calibration.MAX_BATCH
    assert set(s.kernels.values()) <= {"dense", "onednn", "split"} and sum(s.layers.values()) > 0
    assert any("tokens/s by decode batch" in line for line in lines)
    cache = json.loads((tmp_path / calibration.CACHE_FILE).read_text(encoding="utf-8"))
    (key, entry), = cache.items()
    assert key.startswith("serve | ") and "torch " in key and "threads 1" in key and entry["kernels"] == s.kernels

    again, _, _ = tiny()
    s2 = resolve_settings(again, log=lambda line: pytest.fail(f"measured again: {line}"))
    assert s2.source == "cached" and (s2.kernels, s2.threads, s2.max_batch_size) == (
        s.kernels, s.threads, s.max_batch_size)
    ids = torch.tensor([tokenizer("안녕하세요, 오늘 날씨는", add_special_tokens=False)["input_ids"]])
    with torch.inference_mode():
        expected = plain.generate(ids, max_new_tokens=12, do_sample=False)
        assert torch.equal(again.generate(ids, max_new_tokens=12, do_sample=False), expected)


def test_settings_cached_on_a_busy_machine_are_measured_again_once_it_is_quiet(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("KOSITP_HOME", str(tmp_path))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    model, _, _ = tiny()
    monkeypatch.setattr(calibration, "load_average", lambda: [99.0, 50.0, 20.0])
    assert resolve_settings(model, log=lambda line: None).source == "measured"
    (entry,) = json.loads((tmp_path / calibration.CACHE_FILE).read_text(encoding="utf-8")).values()
    assert entry["load_average"] == [99.0, 50.0, 20.0]
    # still busy: the busy entry is used as it is
    assert resolve_settings(tiny()[0], log=lambda line: pytest.fail(line)).source == "cached"
    # quiet now: measured again, and the new entry replaces the busy one
    monkeypatch.setattr(calibration, "load_average", lambda: [0.5, 0.5, 0.5])
    lines: list[str] = []
    assert resolve_settings(tiny()[0], log=lines.append).source == "measured"
    assert any("measured on a busy machine" in line for line in lines)
    (entry,) = json.loads((tmp_path / calibration.CACHE_FILE).read_text(encoding="utf-8")).values()
    assert entry["load_average"] == [0.5, 0.5, 0.5]
    assert resolve_settings(tiny()[0], log=lambda line: pytest.fail(line)).source == "cached"


def test_an_entry_without_its_load_is_measured_again_on_a_quiet_machine(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("KOSITP_HOME", str(tmp_path))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setattr(calibration, "load_average", lambda: [0.5, 0.5, 0.5])
    assert resolve_settings(tiny()[0], log=lambda line: None).source == "measured"
    path = tmp_path / calibration.CACHE_FILE
    cache = json.loads(path.read_text(encoding="utf-8"))
    for entry in cache.values():
        del entry["load_average"]  # what an entry written without it looks like
    path.write_text(json.dumps(cache), encoding="utf-8")
    lines: list[str] = []
    assert resolve_settings(tiny()[0], log=lines.append).source == "measured"
    assert any("measured on a busy machine" in line for line in lines)
