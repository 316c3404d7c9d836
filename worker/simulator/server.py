"""Run the simulator: in a background thread for tests and demos, or in the foreground for the CLI.

with SimulatorServer() as sim:                   # 127.0.0.1, a free port
    requests.post(f"{sim.url}/v5/tlssmssvr/sendsms?sdkappid=...&random=...", ...)
    sim.control.inbox()
"""

from __future__ import annotations

import importlib.util
import logging
import signal
import threading
from collections.abc import Callable, Iterable
from dataclasses import replace
from types import TracebackType

import uvicorn

from worker.simulator.app import SimulatorApp
from worker.simulator.config import SimulatorConfig, default_config
from worker.simulator.control import SimulatorControl

log = logging.getLogger(__name__)

STARTUP_TIMEOUT_SECONDS = 15.0
SHUTDOWN_TIMEOUT_SECONDS = 10.0


class SimulatorServerError(RuntimeError):
    pass


class SimulatorServer:
    """uvicorn serving a ``SimulatorApp`` on its own thread and event loop."""

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        log_level: str = "warning",
        blacklist: Iterable[str] = (),
    ) -> None:
        """``blacklist`` adds numbers (national or E.164) that answer 1015, handy in a demo."""
        config = config or default_config()
        if blacklist:
            blacklisted = config.limits.blacklist | frozenset(blacklist)
            limits = replace(config.limits, blacklist=blacklisted)
            config = replace(config, limits=limits)
        self.app = SimulatorApp(config)
        self.host = host
        self._uvicorn = uvicorn.Server(
            uvicorn.Config(
                self.app,
                host=host,
                port=port,
                loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
                http="httptools" if importlib.util.find_spec("httptools") else "h11",
                lifespan="on",
                access_log=False,
                log_level=log_level,
                # Answers held back by the `slow` fault must not hold up a shutdown.
                timeout_graceful_shutdown=1,
            )
        )
        self._thread: threading.Thread | None = None
        self.port = port
        self._control: SimulatorControl | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def control(self) -> SimulatorControl:
        if self._control is None:
            self._control = SimulatorControl(self.url)
        return self._control

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> SimulatorServer:
        if self._thread is not None:
            raise SimulatorServerError("already started")
        self._thread = threading.Thread(target=self._serve, name="sms-simulator", daemon=True)
        self._thread.start()
        stop_waiting = threading.Event()
        for _ in range(int(STARTUP_TIMEOUT_SECONDS / 0.01)):
            if self._uvicorn.started or not self._thread.is_alive():
                break
            stop_waiting.wait(0.01)
        if not self._uvicorn.started:
            self.stop()
            raise SimulatorServerError(f"the simulator did not start on {self.host}:{self.port}")
        # Port 0 asked the OS for a free port: read back the one it gave.
        sockets = [sock for server in self._uvicorn.servers for sock in server.sockets]
        self.port = int(sockets[0].getsockname()[1])
        return self

    def _serve(self) -> None:
        try:
            self._uvicorn.run()
        except SystemExit:
            # uvicorn exits when it cannot bind; start() reports that as SimulatorServerError.
            log.debug("the simulator's server exited during startup")

    def stop(self) -> None:
        self._uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join(SHUTDOWN_TIMEOUT_SECONDS)
        if self._control is not None:
            self._control.close()

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def run_forever(
    config: SimulatorConfig | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    log_level: str = "info",
    on_started: Callable[[SimulatorServer], None] | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM; ``on_started`` learns the URL once the port is bound."""
    stopping = threading.Event()
    previous = {
        signum: signal.signal(signum, lambda *_: stopping.set())
        for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        with SimulatorServer(config, host=host, port=port, log_level=log_level) as server:
            if on_started is not None:
                on_started(server)
            while not stopping.wait(0.5):
                if not server.running:
                    raise SimulatorServerError("the server stopped on its own")
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
