"""Run the gateway with uvicorn, with a drain on SIGTERM/SIGINT.

`run(cfg)` blocks (the CLI) and returns the exit code. `ServerThread(cfg)` runs it in a background
thread of the current process for tests and notebooks, and reports the bound port.

The drain: on the first signal the server keeps listening, but every new generation gets 503 with
Retry-After and /ready turns 503 (so a load balancer moves traffic away), while the requests in
flight finish. After `drain_timeout_s` the ones still running are cut (`ServeState.drain`), then
uvicorn closes the sockets and the backend stops. The exit code is 0 when every request finished
by itself and `DRAIN_INCOMPLETE` when some had to be cut. A second signal stops at once.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import threading
import time

import uvicorn

from kositp.serve.app import create_app
from kositp.serve.config import ServeConfig

log = logging.getLogger("kositp.serve")

DRAIN_INCOMPLETE = 3  # exit code: the drain timeout expired and requests in flight were cut
CLOSE_TIMEOUT_S = 5  # after the drain, how long uvicorn waits for connections to close


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app) -> None:
        super().__init__(config)
        self.app_state = app.state.serve
        self.drain_timeout_s = app.state.cfg.drain_timeout_s
        self.drain_completed = True
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_task: asyncio.Task | None = None

    async def serve(self, sockets=None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig, frame) -> None:
        if self._loop is None or not self.started or self.app_state.draining or self.should_exit:
            # still starting, or a second signal: stop now (streams in flight end without a final chunk)
            if self.app_state.draining or self.should_exit:
                log.warning("signal %s during the drain: stopping now", sig)
                self.force_exit = True
            self.should_exit = True
            return
        # Not uvicorn's handle_exit: it would close the listening socket (new clients would be refused
        # instead of told 503) and re-raise the signal after shutdown (the exit code would not say
        # whether the drain completed).
        self.begin_drain()

    def begin_drain(self) -> None:
        """Start the drain from any thread (a signal handler, a test)."""
        assert self._loop is not None
        self.app_state.draining = True
        log.info("draining: new requests get 503; in-flight requests may finish for up to %ss", self.drain_timeout_s)
        self._loop.call_soon_threadsafe(self._start_drain_task)

    def _start_drain_task(self) -> None:
        if self._drain_task is None:
            self._drain_task = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        self.drain_completed = await self.app_state.drain(self.drain_timeout_s)
        self.should_exit = True

    @property
    def exit_code(self) -> int:
        return 0 if self.drain_completed else DRAIN_INCOMPLETE


def _uvicorn_config(cfg: ServeConfig, app) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=cfg.host,
        port=cfg.port,
        log_level="info",
        access_log=False,  # access lines carry no prompt, but they are noise at load; metrics count requests
        timeout_graceful_shutdown=CLOSE_TIMEOUT_S,
        timeout_keep_alive=5,
    )


def run(cfg: ServeConfig) -> int:
    """Serve until a signal; returns the process exit code (0, or DRAIN_INCOMPLETE)."""
    app = create_app(cfg)
    server = DrainingServer(_uvicorn_config(cfg, app), app)
    server.run()
    if not server.drain_completed:
        log.warning("exiting with code %d: the drain did not complete", DRAIN_INCOMPLETE)
    return server.exit_code


class ServerThread:
    """The gateway on a free loopback port in a background thread: `with ServerThread(cfg) as url: ...`."""

    def __init__(self, cfg: ServeConfig, backend=None, startup_timeout_s: float = 300.0) -> None:
        self.app = create_app(cfg, backend)
        self.cfg = cfg
        self.startup_timeout_s = startup_timeout_s
        self.server: DrainingServer | None = None
        self.thread: threading.Thread | None = None

    def __enter__(self) -> str:
        sock = socket.socket()
        sock.bind((self.cfg.host, self.cfg.port))
        port = sock.getsockname()[1]
        config = _uvicorn_config(self.cfg, self.app)
        self.server = DrainingServer(config, self.app)
        self.server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # not the main thread
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + self.startup_timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.05)
        return f"http://{self.cfg.host}:{port}"

    def drain(self) -> None:
        """What SIGTERM does to `kositp serve`: start the drain (returns at once)."""
        assert self.server is not None
        self.server.handle_exit(signal.SIGTERM, None)

    def __exit__(self, *exc) -> None:
        assert self.server is not None and self.thread is not None
        self.server.should_exit = True
        self.thread.join(timeout=60)
