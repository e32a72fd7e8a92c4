"""Progress of long stages (kositp/progress.py): a bar on a terminal, timestamped lines in a log file."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

from kositp.progress import StageProgress, StageStatus

LINE = re.compile(r"^\[\d\d:\d\d:\d\d\] ")


def _console(terminal: bool) -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=terminal, width=200), buffer


def test_not_a_terminal_prints_a_line_every_n_items_and_at_the_end():
    console, buffer = _console(terminal=False)
    with StageProgress(console, every_n=4, every_s=3600) as progress:
        task = progress.add_task("SFT", total=10)
        for step in range(10):
            progress.advance(task, info=f"loss {2.0 - step / 10:.4f}")
    lines = buffer.getvalue().splitlines()
    assert all(LINE.match(line) for line in lines), lines
    assert [line.split("] ", 1)[1].split(",")[0] for line in lines] == [
        "SFT: 4/10 (40%)", "SFT: 8/10 (80%)", "SFT: 10/10 (100%)"]
    assert lines[-1].endswith("elapsed, loss 1.1000")


def test_not_a_terminal_prints_after_every_s_seconds_and_the_last_state_on_exit():
    console, buffer = _console(terminal=False)
    with StageProgress(console, every_s=0.0) as progress:
        task = progress.add_task("eval tasks", total=None)
        progress.advance(task, 3)
        progress.advance(task, 2)
        progress.update(task, description="eval seed4")
    lines = buffer.getvalue().splitlines()
    assert [line.split("] ", 1)[1].split(",")[0] for line in lines] == ["eval tasks: 3", "eval tasks: 5"]

    console, buffer = _console(terminal=False)
    with StageProgress(console, every_s=3600) as progress:
        task = progress.add_task("pairs", total=40)
        progress.advance(task, 7)  # neither due nor done: shown only when the stage ends
        assert buffer.getvalue() == ""
    assert buffer.getvalue().split("] ", 1)[1].startswith("pairs: 7/40 (18%), 0:00:00 elapsed")


def test_a_terminal_gets_the_bar_not_the_lines():
    console, buffer = _console(terminal=True)
    with StageProgress(console, every_n=1, every_s=0.0) as progress:
        task = progress.add_task("SFT", total=3)
        for _ in range(3):
            progress.advance(task)
    assert "3/3" in buffer.getvalue() and not re.search(r"\[\d\d:\d\d:\d\d\] SFT", buffer.getvalue())


def test_status_steps_that_last_are_lines_in_a_log_file():
    console, buffer = _console(terminal=False)
    with StageStatus("building", console, settle_s=0.2) as status:
        status.update("reading kositp (quick.jsonl)")  # replaced before it settles: no line
        status.update("reading kositp (big.jsonl)")
        time.sleep(0.6)
        status.update("applying caps")  # the stage ends before this one settles
    time.sleep(0.4)
    lines = buffer.getvalue().splitlines()
    assert [line.split("] ", 1)[1] for line in lines] == ["reading kositp (big.jsonl)"]
    assert all(LINE.match(line) for line in lines)

    console, buffer = _console(terminal=False)
    with StageStatus("building", console, settle_s=3600, every_s=0.0) as status:
        status.update("reading kositp (a.jsonl)")  # nothing printed for every_s: a line at once
    assert [line.split("] ", 1)[1] for line in buffer.getvalue().splitlines()] == [
        "building", "reading kositp (a.jsonl)"]


def test_a_redirected_stage_logs_its_progress_and_bad_input_stays_one_line(tmp_path):
    fixtures = Path(__file__).parent / "fixtures" / "train" / "sft"
    proc = subprocess.run([sys.executable, "-m", "kositp.cli", "data", "pairs", "--data", str(fixtures), "--out",
                           str(tmp_path / "pairs"), "--model", "tiny", "--max-records", "4", "--max-new-tokens", "4"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    steps = [line.split("] ", 1)[1] for line in proc.stderr.splitlines() if LINE.match(line)]
    assert any(step.startswith("answering train with tiny: 4/4 (100%)") for step in steps), proc.stderr

    proc = subprocess.run([sys.executable, "-m", "kositp.cli", "data", "build", "--source", "kositp:/no/such.jsonl",
                           "--out", str(tmp_path / "bad")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == ["error: input not found: /no/such.jsonl"]
