"""Start `kositp ui` as a child process and wait until the page answers (tests, the demo).

    with UIProcess("http://127.0.0.1:8000/v1") as ui:
        browser.goto(ui.url)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from kositp.serve.process import free_port, wait_ready


class UIProcess:
    """`python -m kositp.cli ui --api API ARGS --port FREE` on loopback; stopped with SIGTERM on exit."""

    def __init__(self, api: str, args: list[str] | None = None, port: int | None = None,
                 env: dict[str, str] | None = None, startup_timeout_s: float = 120.0) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [sys.executable, "-m", "kositp.cli", "ui", "--api", api, *(args or []),
                     "--host", "127.0.0.1", "--port", str(self.port)]
        self.env = {**os.environ, **(env or {})}
        self.startup_timeout_s = startup_timeout_s
        self.proc: subprocess.Popen | None = None
        fd, name = tempfile.mkstemp(prefix="kositp-ui-", suffix=".log")
        self._log = os.fdopen(fd, "wb")
        self.log_path = Path(name)

    def __enter__(self) -> UIProcess:
        # A fresh working directory: Chainlit must not find or write anything in the caller's.
        self._cwd = tempfile.TemporaryDirectory(prefix="kositp-ui-cwd-")
        self.proc = subprocess.Popen(self.args, stdout=self._log, stderr=subprocess.STDOUT, env=self.env,
                                     cwd=self._cwd.name)
        try:
            wait_ready(self.url, self.startup_timeout_s, self.proc, path="/")
        except Exception as exc:
            self.stop()
            raise RuntimeError(f"{exc}; chat page log:\n{self.log()[-4000:]}") from None
        return self

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, timeout_s: float = 30.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.proc.returncode

    def __exit__(self, *exc) -> None:
        self.stop()
        self._log.close()
        self.log_path.unlink(missing_ok=True)
        self._cwd.cleanup()
