"""Run the gateway with uvicorn: SIGTERM/SIGINT drain in-flight requests, then the backend stops.

`run(cfg)` blocks (the CLI). `ServerThread(cfg)` runs it in a background thread of the current
process for tests and notebooks, and reports the bound port.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time

import uvicorn

from kositp.serve.app import create_app
from kositp.serve.config import ServeConfig

log = logging.getLogger("kositp.serve")


class _DrainingServer(uvicorn.Server):
    """Marks the app as draining on the first signal so /ready turns 503 and new generations get 503,
    while uvicorn finishes the requests (and streams) already in flight."""

    def __init__(self, config: uvicorn.Config, app) -> None:
        super().__init__(config)
        self._app = app

    def handle_exit(self, sig, frame) -> None:
        self._app.state.serve_state["draining"] = True
        if not self.should_exit:
            log.info("signal %s: draining in-flight requests (up to %ss)", sig, self.config.timeout_graceful_shutdown)
        super().handle_exit(sig, frame)
        if sig == signal.SIGTERM and sig in self._captured_signals:
            # uvicorn re-raises captured signals after shutdown (exit -15); a completed drain is a clean stop.
            self._captured_signals.remove(sig)


def _uvicorn_config(cfg: ServeConfig, app, sock: socket.socket | None = None) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=cfg.host,
        port=cfg.port,
        log_level="info",
        access_log=False,  # access lines carry no prompt, but they are noise at load; metrics count requests
        timeout_graceful_shutdown=int(cfg.drain_timeout_s) or None,
        timeout_keep_alive=5,
    )


def run(cfg: ServeConfig) -> None:
    app = create_app(cfg)
    server = _DrainingServer(_uvicorn_config(cfg, app), app)
    server.run()


class ServerThread:
    """The gateway on a free loopback port in a background thread: `with ServerThread(cfg) as url: ...`."""

    def __init__(self, cfg: ServeConfig, backend=None, startup_timeout_s: float = 300.0) -> None:
        self.app = create_app(cfg, backend)
        self.cfg = cfg
        self.startup_timeout_s = startup_timeout_s
        self.server: _DrainingServer | None = None
        self.thread: threading.Thread | None = None

    def __enter__(self) -> str:
        sock = socket.socket()
        sock.bind((self.cfg.host, self.cfg.port))
        port = sock.getsockname()[1]
        config = _uvicorn_config(self.cfg, self.app)
        self.server = _DrainingServer(config, self.app)
        self.server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # not the main thread
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + self.startup_timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.05)
        return f"http://{self.cfg.host}:{port}"

    def __exit__(self, *exc) -> None:
        assert self.server is not None and self.thread is not None
        self.server.should_exit = True
        self.thread.join(timeout=60)
