"""Start `kositp serve` as a child process and wait until it is ready (tests, benchmarks, the demo).

    with ServeProcess(["--model", "tiny"]) as proc:
        client = openai.OpenAI(base_url=proc.url + "/v1", api_key="none")
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_ready(url: str, timeout_s: float, proc: subprocess.Popen | None = None, path: str = "/ready") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before it was ready")
        try:
            if httpx.get(url + path, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url}{path} was not ready within {timeout_s:.0f}s")


class ChildServer:
    """`python -m kositp.cli COMMAND ARGS --host 127.0.0.1 --port FREE`, ready when `ready_path` answers 200.

    Output goes to a temporary log file (read with `log()`); SIGTERM on exit, then kill after `stop_timeout_s`.
    """

    command = ""
    ready_path = "/ready"
    log_prefix = "kositp-"
    stop_timeout_s = 60.0

    def __init__(self, args: list[str], port: int | None = None, env: dict[str, str] | None = None,
                 startup_timeout_s: float = 300.0, cwd: str | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [sys.executable, "-m", "kositp.cli", self.command, *args, "--host", "127.0.0.1",
                     "--port", str(self.port)]
        self.env = {**os.environ, **(env or {})}
        self.startup_timeout_s = startup_timeout_s
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None
        fd, name = tempfile.mkstemp(prefix=self.log_prefix, suffix=".log")
        self._log = os.fdopen(fd, "wb")  # closed in __exit__; the child writes its output here
        self.log_path = Path(name)

    def __enter__(self):
        self.proc = subprocess.Popen(self.args, stdout=self._log, stderr=subprocess.STDOUT, env=self.env,
                                     cwd=self.cwd)
        try:
            wait_ready(self.url, self.startup_timeout_s, self.proc, path=self.ready_path)
        except Exception as exc:
            self.stop()
            raise RuntimeError(f"{exc}; {self.command} log:\n{self.log()[-4000:]}") from None
        return self

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout_s: float | None = None) -> int | None:
        if self.proc is None:
            return None
        self.terminate()
        try:
            self.proc.wait(timeout=timeout_s or self.stop_timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.proc.returncode

    def __exit__(self, *exc) -> None:
        self.stop()
        self._log.close()
        self.log_path.unlink(missing_ok=True)


class ServeProcess(ChildServer):
    """`kositp serve ARGS` on a free loopback port, ready when /ready answers."""

    command = "serve"
    log_prefix = "kositp-serve-"
