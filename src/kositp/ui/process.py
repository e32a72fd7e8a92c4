"""Start `kositp ui` as a child process and wait until the page answers (tests, the demo).

    with UIProcess("http://127.0.0.1:8000/v1") as ui:
        browser.goto(ui.url)
"""

from __future__ import annotations

import tempfile

from kositp.serve.process import ChildServer


class UIProcess(ChildServer):
    """`kositp ui --api API ARGS` on a free loopback port, run from a fresh temporary working directory."""

    command = "ui"
    ready_path = "/"
    log_prefix = "kositp-ui-"
    stop_timeout_s = 30.0

    def __init__(self, api: str, args: list[str] | None = None, port: int | None = None,
                 env: dict[str, str] | None = None, startup_timeout_s: float = 120.0) -> None:
        # A fresh working directory: Chainlit must not find or write anything in the caller's.
        self._cwd = tempfile.TemporaryDirectory(prefix="kositp-ui-cwd-")
        super().__init__(["--api", api, *(args or [])], port, env, startup_timeout_s, cwd=self._cwd.name)

    def __exit__(self, *exc) -> None:
        super().__exit__(*exc)
        self._cwd.cleanup()
