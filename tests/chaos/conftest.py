"""Fixtures of the chaos suite: servers of its own, started once, and a fresh run per case.

The suite never uses the machine's shared Redis or PostgreSQL: it kills and restarts its own
(``tests.chaos.servers``). The simulator runs in this process with a request log and inbox large
enough for a full-size case.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.audit import table
from tests.chaos.harness import AUDITS, SIZE, ChaosRun, Servers
from tests.chaos.servers import OwnPostgres, OwnRedis, server_folder
from worker.ledger.migrate import upgrade
from worker.simulator.config import config_from_mapping
from worker.simulator.server import SimulatorServer

# Every request and delivery of the largest case, with room to spare.
SIMULATOR_LOG_LIMIT = 1_000_000


@pytest.fixture(scope="session")
def chaos_redis() -> Iterator[OwnRedis]:
    folder = server_folder("sms-chaos-redis-")
    redis = OwnRedis(folder)
    try:
        redis.start()
        yield redis
    finally:
        redis.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def chaos_postgres() -> Iterator[OwnPostgres]:
    folder = server_folder("sms-chaos-postgres-")
    postgres = OwnPostgres(folder)
    try:
        postgres.init()
        postgres.start()
        upgrade(postgres.url)
        yield postgres
    finally:
        postgres.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def chaos_servers(chaos_redis: OwnRedis, chaos_postgres: OwnPostgres) -> Iterator[Servers]:
    config = config_from_mapping({"log_limit": SIMULATOR_LOG_LIMIT})
    with SimulatorServer(config) as simulator:
        yield Servers(chaos_redis, chaos_postgres, simulator, chaos_postgres.url)


@pytest.fixture
def chaos(
    request: pytest.FixtureRequest, chaos_servers: Servers, tmp_path: Path
) -> Iterator[ChaosRun]:
    """A run for this case: everything emptied; its processes stopped afterwards."""
    run = ChaosRun(request.node.name.removeprefix("test_"), chaos_servers, tmp_path)
    try:
        yield run
    finally:
        run.close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if AUDITS:
        terminalreporter.section(f"chaos audit (CHAOS_MESSAGES={SIZE})")
        terminalreporter.write_line(table(AUDITS))
