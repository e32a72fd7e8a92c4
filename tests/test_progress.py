"""Progress of long stages (kositp/progress.py): a bar on a terminal, timestamped lines in a log file."""

from __future__ import annotations

import io
import re
import subprocess
import sys

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


def test_status_steps_are_lines_in_a_log_file():
    console, buffer = _console(terminal=False)
    with StageStatus("building", console) as status:
        status.update("reading seed (package:samples/seed.jsonl)")
    lines = buffer.getvalue().splitlines()
    assert [line.split("] ", 1)[1] for line in lines] == ["building", "reading seed (package:samples/seed.jsonl)"]
    assert all(LINE.match(line) for line in lines)


def test_data_build_writes_its_steps_to_a_redirected_stderr(tmp_path):
    seed = tmp_path / "seed.jsonl"
    seed.write_text('{"input": "한국의 수도는?", "output": "서울", "Task_name": "Closed_Book_QA"}\n', encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "kositp.cli", "data", "build", "--source", f"kositp:{seed}",
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    steps = [line for line in proc.stderr.splitlines() if LINE.match(line)]
    assert any(f"({seed})" in line for line in steps), proc.stderr
