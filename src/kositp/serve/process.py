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


class ServeProcess:
    """`python -m kositp.cli serve ARGS --port FREE` on loopback; stopped with SIGTERM on exit."""

    def __init__(self, args: list[str], port: int | None = None, env: dict[str, str] | None = None,
                 startup_timeout_s: float = 300.0) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [sys.executable, "-m", "kositp.cli", "serve", *args, "--host", "127.0.0.1",
                     "--port", str(self.port)]
        self.env = {**os.environ, **(env or {})}
        self.startup_timeout_s = startup_timeout_s
        self.proc: subprocess.Popen | None = None
        fd, name = tempfile.mkstemp(prefix="kositp-serve-", suffix=".log")
        self._log = os.fdopen(fd, "wb")  # closed in __exit__; the child writes its output here
        self.log_path = Path(name)

    def __enter__(self) -> ServeProcess:
        self.proc = subprocess.Popen(self.args, stdout=self._log, stderr=subprocess.STDOUT, env=self.env)
        try:
            wait_ready(self.url, self.startup_timeout_s, self.proc)
        except Exception as exc:
            self.stop()
            raise RuntimeError(f"{exc}; server log:\n{self.log()[-4000:]}") from None
        return self

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout_s: float = 60.0) -> int | None:
        if self.proc is None:
            return None
        self.terminate()
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
