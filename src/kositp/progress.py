"""Progress of long stages, readable on a terminal and in a log file alike.

On a terminal: a rich progress bar (or a spinner for a stage that reports steps, not counts).
Written to a file or a pipe, a bar shows nothing until it ends, so instead each counted task
prints a plain timestamped line every `every_n` items or `every_s` seconds (whichever comes
first) and when it finishes, and each status step that lasts a moment prints one line:

    [14:03:12] SFT: 12/40 (30%), 0:02:41 elapsed, loss 1.8123
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

LINE_EVERY_S = 30.0


def _stamp() -> str:
    return time.strftime("%H:%M:%S")


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


@dataclass
class _Task:
    description: str
    total: int | None
    completed: int = 0
    info: str = ""
    started: float = 0.0
    printed_at: float = 0.0
    printed_count: int = -1


class StageProgress:
    """Counted progress of one or more tasks: `add_task`, then `advance` or `update`; `print` for a line.

    Use as a context manager (or `start()` ... `stop()`). `console` defaults to stderr; `every_n` (items) and `every_s`
    (seconds) set how often a line is printed when the console is not a terminal.
    """

    def __init__(self, console=None, every_s: float = LINE_EVERY_S, every_n: int | None = None,
                 transient: bool = False):
        from rich.console import Console

        self.console = console or Console(stderr=True)
        self.every_s, self.every_n = every_s, every_n
        self.tasks: list[_Task] = []
        self.bar = None
        if self.console.is_terminal:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                                console=self.console, transient=transient)

    def __enter__(self) -> StageProgress:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> StageProgress:
        if self.bar is not None:
            self.bar.start()
        return self

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            return
        for task in self.tasks:  # the last state of each task, unless already printed
            if task.printed_count != task.completed:
                self._line(task, time.monotonic())

    def add_task(self, description: str, total: int | None = None, completed: int = 0) -> int:
        now = time.monotonic()
        self.tasks.append(_Task(description, total, completed, started=now, printed_at=now))
        if self.bar is not None:
            return self.bar.add_task(description, total=total, completed=completed, info="")
        return len(self.tasks) - 1

    def advance(self, task_id: int, n: int = 1, info: str | None = None) -> None:
        self.update(task_id, completed=self.tasks[task_id].completed + n, info=info)

    def update(self, task_id: int, completed: int | None = None, description: str | None = None,
               info: str | None = None, total: int | None = None) -> None:
        task = self.tasks[task_id]
        task.completed = task.completed if completed is None else completed
        task.description = description or task.description
        task.info = task.info if info is None else info
        task.total = task.total if total is None else total
        if self.bar is not None:
            self.bar.update(task_id, completed=task.completed, description=task.description, info=task.info,
                            total=task.total)
            return
        now = time.monotonic()
        done = task.total is not None and task.completed >= task.total
        due = (now - task.printed_at >= self.every_s
               or (self.every_n is not None and task.completed - max(task.printed_count, 0) >= self.every_n))
        if task.completed != task.printed_count and (done or due):
            self._line(task, now)

    def print(self, line: str) -> None:
        """A timestamped line (above the bar on a terminal)."""
        self.console.print(f"[{_stamp()}] {line}", markup=False, highlight=False, soft_wrap=True)

    def _line(self, task: _Task, now: float) -> None:
        count = f"{task.completed}/{task.total} ({task.completed / task.total:.0%})" if task.total else \
            f"{task.completed}"
        info = f", {task.info}" if task.info else ""
        self.print(f"{task.description}: {count}, {_clock(now - task.started)} elapsed{info}")
        task.printed_at, task.printed_count = now, task.completed


class StageStatus:
    """A stage that reports steps (messages), not counts: a spinner on a terminal, lines elsewhere.

    Off a terminal, a step gets its timestamped line once it has lasted `settle_s` seconds (or at
    once when no line was printed for `every_s`), so quick steps, and a bad input that fails in its
    first moments, leave no lines before the one-line error. Use as a context manager;
    `update(message)` is the callback the stage entry points take.
    """

    def __init__(self, first: str, console=None, settle_s: float = 2.0, every_s: float = LINE_EVERY_S):
        from rich.console import Console

        self.console = console or Console(stderr=True)
        self.first, self.settle_s, self.every_s = first, settle_s, every_s
        self.spinner = self.console.status(first) if self.console.is_terminal else None
        self._pending: threading.Timer | None = None
        self._printed_at = time.monotonic()

    def __enter__(self) -> StageStatus:
        if self.spinner is not None:
            self.spinner.start()
        else:
            self.update(self.first)
        return self

    def __exit__(self, *exc) -> None:
        if self.spinner is not None:
            self.spinner.stop()
        elif self._pending is not None:
            self._pending.cancel()

    def update(self, message: str) -> None:
        if self.spinner is not None:
            self.spinner.update(message)
            return
        if self._pending is not None:
            self._pending.cancel()
        if time.monotonic() - self._printed_at >= self.every_s:
            self._print(message)
        else:
            self._pending = threading.Timer(self.settle_s, self._print, (message,))
            self._pending.daemon = True
            self._pending.start()

    def _print(self, message: str) -> None:
        self._printed_at = time.monotonic()
        self.console.print(f"[{_stamp()}] {message}", markup=False, highlight=False, soft_wrap=True)
