"""`resume=true`: an interrupted evaluation reuses the suites it finished, and only under the same settings and model."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

FIXTURE = Path(__file__).parent / "fixtures" / "eval"


def _cfg(out, benchmarks_dir, **kw):
    from kositp.eval.run import EvalConfig

    base = {"model": "tiny", "suites": ["tasks", "seed4"], "data": FIXTURE, "benchmarks": benchmarks_dir,
            "limit": 2, "max_new_tokens": 12, "label_max_new_tokens": 4, "out": out}
    return EvalConfig(**(base | kw))


@pytest.fixture
def suites_run(monkeypatch):
    """Record which suites really run (rather than being taken from suites/)."""
    import kositp.eval.run as run

    ran: list[str] = []
    real = run._run_suite

    def recording(suite, *args, **kwargs):
        ran.append(suite)
        return real(suite, *args, **kwargs)

    monkeypatch.setattr(run, "_run_suite", recording)
    return ran


def test_an_interrupted_run_continues_and_writes_the_same_report(tmp_path, benchmarks_dir, suites_run, capsys):
    from kositp.eval.run import evaluate

    out = tmp_path / "r"
    evaluate(_cfg(out, benchmarks_dir), show_progress=False)
    assert suites_run == ["tasks", "seed4"]
    assert sorted(p.name for p in (out / "suites").iterdir()) == ["seed4.json", "tasks.json"]
    full_report = (out / "report.json").read_bytes()
    full_predictions = (out / "predictions.jsonl").read_bytes()

    # interrupted during seed4: only the tasks suite had finished, no report was written
    (out / "suites" / "seed4.json").unlink()
    # ... by a version whose summary had no record mean: the reused suite is aggregated again from its examples
    saved = json.loads((out / "suites" / "tasks.json").read_text(encoding="utf-8"))
    del saved["result"]["metrics"]["summary"]["record_mean_primary"]
    (out / "suites" / "tasks.json").write_text(json.dumps(saved, ensure_ascii=False), encoding="utf-8")
    (out / "report.json").unlink()
    suites_run.clear()
    evaluate(_cfg(out, benchmarks_dir, resume=True), show_progress=False)
    assert suites_run == ["seed4"]
    assert "tasks: reused" in capsys.readouterr().err
    assert (out / "report.json").read_bytes() == full_report
    assert (out / "predictions.jsonl").read_bytes() == full_predictions
    info = json.loads((out / "run_info.json").read_text(encoding="utf-8"))
    assert info["reused_suites"] == ["tasks"] and info["timings"]["tasks_s"] > 0


def test_other_settings_or_no_resume_run_everything_again(tmp_path, benchmarks_dir, suites_run, capsys):
    from kositp.eval.run import evaluate

    out = tmp_path / "r"
    evaluate(_cfg(out, benchmarks_dir, suites=["tasks"]), show_progress=False)
    evaluate(_cfg(out, benchmarks_dir, suites=["tasks"]), show_progress=False)  # resume is off by default
    evaluate(_cfg(out, benchmarks_dir, suites=["tasks"], max_new_tokens=8, resume=True), show_progress=False)
    assert suites_run == ["tasks", "tasks", "tasks"]
    assert "made with other settings or model files" in capsys.readouterr().err
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["decoding"]["max_new_tokens"] == 8  # the report is the new run's, not the checkpoint's

    (out / "suites" / "tasks.json").write_text("{not json", encoding="utf-8")  # a damaged checkpoint is re-run
    evaluate(_cfg(out, benchmarks_dir, suites=["tasks"], max_new_tokens=8, resume=True), show_progress=False)
    assert suites_run[-1] == "tasks" and len(suites_run) == 4
    assert "unreadable" in capsys.readouterr().err


def test_the_key_follows_the_model_files(tmp_path):
    from kositp.eval.checkpoints import resume_key

    model = tmp_path / "run"
    (model / "adapter").mkdir(parents=True)
    weights = model / "adapter" / "adapter_model.safetensors"
    weights.write_bytes(b"0" * 8)
    (model / "run.json").write_text("{}", encoding="utf-8")
    settings = {"limit": 2}
    first = resume_key(settings, {"backend": "transformers"}, str(model))
    assert resume_key(settings, {"backend": "transformers"}, str(model)) == first
    os.utime(weights, ns=(1, 1))  # a retrained adapter: same name, new file
    assert resume_key(settings, {"backend": "transformers"}, str(model)) != first
    assert resume_key({"limit": 3}, {"backend": "transformers"}, "default") != resume_key(
        settings, {"backend": "transformers"}, "default")


def test_cli_resume_flag(tmp_path, benchmarks_dir):
    import subprocess
    import sys

    out = tmp_path / "r"
    cmd = [sys.executable, "-m", "kositp.cli", "eval", "--model", "tiny", "--suite", "tasks", "--data", str(FIXTURE),
           "--limit", "1", "--max-new-tokens", "4", "--out", str(out), "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    assert re.search(r"^tasks: \d+ examples in \d+ s$", first.stderr, re.M), first.stderr  # --quiet: a line a suite
    again = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "tasks: reused" in again.stderr
