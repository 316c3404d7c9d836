"""Run the simulator: in a background thread for tests and demos, or in the foreground for the CLI.

with SimulatorServer() as sim:                   # 127.0.0.1, a free port
    requests.post(f"{sim.url}/v5/tlssmssvr/sendsms?sdkappid=...&random=...", ...)
    sim.control.inbox()

Beyond loopback (``host="0.0.0.0"``) it needs ``control_token``: see ``control_auth``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace

from worker.runners.asgi import AsgiServer, ServerError, serve_forever
from worker.runners.limits import ServerLimits
from worker.simulator.app import SimulatorApp
from worker.simulator.config import SimulatorConfig, default_config
from worker.simulator.control import SimulatorControl
from worker.simulator.control_auth import checked_control_token

# The simulator fails to start as every ASGI server of the package does.
SimulatorServerError = ServerError
# Benchmarks and demos open many pooled connections to the gateway; the read limits are the
# same as every server's.
SIMULATOR_LIMITS = ServerLimits(max_connections=1000)


class SimulatorServer(AsgiServer):
    """uvicorn serving a ``SimulatorApp`` on its own thread and event loop."""

    app: SimulatorApp

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        log_level: str = "warning",
        blacklist: Iterable[str] = (),
        control_token: str | None = None,
        limits: ServerLimits = SIMULATOR_LIMITS,
    ) -> None:
        """``blacklist`` adds numbers (national or E.164) that answer 1015, handy in a demo.

        ``control_token``: required by the control API; needed (ConfigError without it) when
        ``host`` is not a loopback address."""
        config = config or default_config()
        if blacklist:
            blacklisted = config.limits.blacklist | frozenset(blacklist)
            listed = replace(config.limits, blacklist=blacklisted)
            config = replace(config, limits=listed)
        self.control_token = checked_control_token(host, control_token)
        # Answers held back by the `slow` fault must not hold up a shutdown: 1 s of grace.
        super().__init__(
            SimulatorApp(config, control_token=self.control_token), host=host, port=port,
            log_level=log_level, lifespan="on", graceful_shutdown_seconds=1, name="simulator",
            limits=limits,
        )  # fmt: skip
        self._control: SimulatorControl | None = None

    @property
    def control(self) -> SimulatorControl:
        if self._control is None:
            self._control = SimulatorControl(self.url, token=self.control_token)
        return self._control

    def stop(self) -> None:
        super().stop()
        if self._control is not None:
            self._control.close()


def run_forever(
    config: SimulatorConfig | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    log_level: str = "info",
    on_started: Callable[[SimulatorServer], None] | None = None,
    control_token: str | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM; ``on_started`` learns the URL once the port is bound."""
    server = SimulatorServer(
        config, host=host, port=port, log_level=log_level, control_token=control_token
    )
    serve_forever(server, on_started=on_started)
