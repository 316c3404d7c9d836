"""Serve an ASGI app with uvicorn: on a background thread (tests, demos) or in the foreground.

The receiver and the simulator both run this way:

with AsgiServer(app) as server:          # 127.0.0.1, a free port
    requests.post(f"{server.url}/callbacks/{token}/status", json=[...])

The access log stays off: the receiver's paths carry its secret token, and at the simulator's
rates it would cost more than the answers. Every server runs under ``ServerLimits``
(``worker.runners.limits``): a bounded number of connections, and time limits on idle
connections and on reading a request, so that a slow client cannot hold it.
"""

from __future__ import annotations

import importlib.util
import logging
import signal
import threading
from collections.abc import Callable
from typing import Any, Literal, Self

import uvicorn

from worker.runners.limits import BodyDeadline, ServerLimits, protocol_class

log = logging.getLogger(__name__)

STARTUP_TIMEOUT_SECONDS = 15.0
SHUTDOWN_TIMEOUT_SECONDS = 10.0


class ServerError(RuntimeError):
    pass


class AsgiServer:
    """uvicorn serving ``app`` on its own thread and event loop."""

    def __init__(
        self,
        app: Any,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        log_level: str = "warning",
        lifespan: Literal["on", "off"] = "off",
        graceful_shutdown_seconds: int = 5,
        name: str = "asgi-server",
        limits: ServerLimits | None = None,
    ) -> None:
        """``lifespan="on"`` for an app with startup work; ``name`` names the thread;
        ``limits``: connections and read time (the defaults of ``ServerLimits`` when None)."""
        self.app = app
        self.host = host
        self.port = port
        self.limits = limits or ServerLimits()
        httptools = importlib.util.find_spec("httptools") is not None
        self._uvicorn = uvicorn.Server(
            uvicorn.Config(
                BodyDeadline(app, self.limits.read_timeout),
                host=host,
                port=port,
                loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
                http=protocol_class(self.limits, httptools=httptools),
                h11_max_incomplete_event_size=self.limits.max_header_bytes,
                lifespan=lifespan,
                access_log=False,
                # A process that set up its logging (the receiver command: redacted, perhaps
                # JSON) keeps uvicorn's lines in it; otherwise uvicorn sets up its own.
                log_config=None if logging.getLogger().handlers else uvicorn.config.LOGGING_CONFIG,
                log_level=log_level,
                timeout_graceful_shutdown=graceful_shutdown_seconds,
            )
        )
        self._name = name
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> Self:
        if self._thread is not None:
            raise ServerError("already started")
        self._thread = threading.Thread(target=self._serve, name=self._name, daemon=True)
        self._thread.start()
        waiting = threading.Event()
        for _ in range(int(STARTUP_TIMEOUT_SECONDS / 0.01)):
            if self._uvicorn.started or not self._thread.is_alive():
                break
            waiting.wait(0.01)
        if not self._uvicorn.started:
            self.stop()
            raise ServerError(f"the {self._name} did not start on {self.host}:{self.port}")
        # Port 0 asked the OS for a free port: read back the one it gave.
        sockets = [sock for server in self._uvicorn.servers for sock in server.sockets]
        self.port = int(sockets[0].getsockname()[1])
        return self

    def _serve(self) -> None:
        try:
            self._uvicorn.run()
        except SystemExit:
            # uvicorn exits when it cannot bind; start() reports that as ServerError.
            log.debug("the server exited during startup")

    def stop(self) -> None:
        self._uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join(SHUTDOWN_TIMEOUT_SECONDS)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def serve_forever(server: AsgiServer, *, on_started: Callable[[Any], None] | None = None) -> None:
    """Serve until SIGINT or SIGTERM; ``on_started`` learns the URL once the port is bound."""
    stopping = threading.Event()
    previous = {
        signum: signal.signal(signum, lambda *_: stopping.set())
        for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        with server:
            if on_started is not None:
                on_started(server)
            while not stopping.wait(0.5):
                if not server.running:
                    raise ServerError("the server stopped on its own")
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
