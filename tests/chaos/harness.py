"""One chaos case from start to audit, and the size every case runs at.

``CHAOS_MESSAGES`` sets how many messages each case sends: a few hundred by default, so the
suite runs within ``make test``; ``make chaos`` runs a few thousand. A case builds its system,
breaks something while a load runs through it, then ``finish`` waits for the system to settle,
audits it and fails unless nothing was lost, duplicated or sent without its attempt row. The
audits of the run are printed as a table at the end of the session.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis import Redis

from tests.chaos.audit import Audit, audit_case
from tests.chaos.servers import OwnPostgres, OwnRedis
from tests.chaos.system import ChaosSystem, Load
from tests.fixtures.databases import empty_ledger_tables
from worker.simulator.server import SimulatorServer

SIZE = int(os.environ.get("CHAOS_MESSAGES", "200"))
# Every answer takes about this long, as a real gateway's would: a kill or a cut then catches
# requests in the air.
GATEWAY_LATENCY_MS = 25.0
# The audits of this session, in the order the cases ran.
AUDITS: list[Audit] = []


def scaled(small: float, full: float, *, full_size: int = 3000) -> float:
    """A duration between ``small`` (at 200 messages or fewer) and ``full`` (at ``full_size``)."""
    share = min(1.0, max(0.0, (SIZE - 200) / (full_size - 200)))
    return small + (full - small) * share


def case_timeout(seconds: float) -> float:
    """A case's time limit: its fixed waits plus the time its messages may take at worst."""
    return seconds + SIZE * 0.15


@dataclass
class Servers:
    """What every case runs on; only the simulator is in this process."""

    redis: OwnRedis
    postgres: OwnPostgres
    simulator: SimulatorServer
    database_url: str


class ChaosRun:
    """One case: starts from empty servers, builds its systems and loads, audits, cleans up."""

    def __init__(self, case: str, servers: Servers, folder: Path) -> None:
        self.case = case
        self.servers = servers
        self.folder = folder
        self.systems: list[ChaosSystem] = []
        self.loads: list[Load] = []
        self.started: float | None = None
        self._reset()

    def _reset(self) -> None:
        """An empty ledger, an empty Redis, a simulator as configured, on the real clock."""
        empty_ledger_tables(self.servers.database_url)
        client = Redis.from_url(self.servers.redis.url)
        try:
            client.flushall()
        finally:
            client.close()
        self.servers.simulator.control.reset()
        self.servers.simulator.control.set_faults(latency_ms=GATEWAY_LATENCY_MS)

    def system(self, *, gateway_url: str | None = None, **options: Any) -> ChaosSystem:
        """A system for this case (not started); ``gateway_url``: a proxy, if not the simulator."""
        system = ChaosSystem(
            self.folder / f"system-{len(self.systems) + 1}",
            database_url=self.servers.database_url,
            broker_url=self.servers.redis.url,
            gateway_url=gateway_url or self.servers.simulator.url,
            control=self.servers.simulator.control,
            **options,
        )
        self.systems.append(system)
        return system

    def mark_start(self) -> None:
        """The case's clock starts: the first message is about to be accepted."""
        if self.started is None:
            self.started = time.monotonic()

    def load(self, system: ChaosSystem, numbers: list[str], *, seconds: float) -> Load:
        """Start enqueueing ``numbers`` in waves (of 25 at least) spread over ``seconds``."""
        self.mark_start()
        waves = max(4, min(60, len(numbers) // 25))
        load = Load(system.producer, numbers, waves=waves, seconds=seconds)
        self.loads.append(load)
        return load.start()

    def finish(self, system: ChaosSystem, expected: int, *, timeout: float) -> Audit:
        """Settle, audit, record; fail unless nothing was lost, duplicated or unrecorded."""
        system.settle(expected, timeout=timeout)
        seconds = time.monotonic() - (self.started or time.monotonic())
        audit = audit_case(self.case, system.sessions, system.control, seconds)
        AUDITS.append(audit)
        print(audit.line())
        assert audit.messages == expected, f"the ledger holds {audit.messages} of {expected}"
        assert audit.clean, f"{audit.explain()}\n{system.logs()}"
        return audit

    def close(self) -> None:
        for load in self.loads:
            load.stop()
        for system in self.systems:
            system.close()
