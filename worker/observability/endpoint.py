"""Where Prometheus reads a Celery worker's metrics: a port of its own (``SMS_METRICS_PORT``).

A Celery worker with ``SMS_METRICS_PORT`` set serves one endpoint from its main process, in
prometheus-client's multiprocess mode. Why that and not a port per pool process: the prefork
pool's children come and go (``max_tasks_per_child``, a crash, autoscaling), so ports per child
would appear and vanish under Prometheus, and a child's counts would die with it. In
multiprocess mode each child writes its samples to files in ``PROMETHEUS_MULTIPROC_DIR`` and
the main process adds them up at scrape time, dead children's counts included. One port per
worker, however many processes, and the same code serves the threads and solo pools.

The endpoint also serves the gauges read from the ledger and the broker
(``worker.observability.gauges``). The receiver serves its own counters on its ``/metrics`` route.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server, values
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy.engine import Engine

from worker.config import Settings
from worker.ledger.db import make_engine, session_factory
from worker.observability.gauges import LedgerCollector
from worker.observability.metrics import METRICS_PATH, MULTIPROCESS_FOLDER

log = logging.getLogger(__name__)


@dataclass
class MetricsEndpoint:
    """A running worker endpoint; ``close`` stops it and removes a folder it made."""

    server: WSGIServer
    thread: threading.Thread
    folder: Path
    owns_folder: bool
    engine: Engine

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.engine.dispose()
        if self.owns_folder:
            shutil.rmtree(self.folder, ignore_errors=True)


def samples_folder() -> tuple[Path, bool]:
    """The folder of multiprocess samples, and whether it was made here (removed at shutdown).

    ``PROMETHEUS_MULTIPROC_DIR`` when set, emptied of an earlier run's files (so give each
    worker a folder of its own); else a new temporary folder.
    """
    given = os.environ.get(MULTIPROCESS_FOLDER)
    if not given:
        return Path(tempfile.mkdtemp(prefix="sms-metrics-")), True
    folder = Path(given)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()
    return folder, False


def record_into(folder: Path) -> None:
    """Make this process, and every process it forks from now on, record into ``folder``.

    Called before the pool starts and before anything is recorded: what was recorded before
    stays in this process's memory, where the endpoint does not look.
    """
    os.environ[MULTIPROCESS_FOLDER] = str(folder)
    # prometheus-client chose its value class when it was imported, before the variable was
    # set; choose again, the way it does, now that it is (children inherit the choice).
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]


def serve_worker_metrics(settings: Settings, queues: Sequence[str]) -> MetricsEndpoint | None:
    """Serve this worker's metrics (with the length of each broker queue in ``queues``) on
    ``SMS_METRICS_HOST:SMS_METRICS_PORT``; None when unset,
    or when the port cannot be had (logged: the worker goes on sending without metrics)."""
    if settings.metrics_port is None:
        return None
    folder, owns_folder = samples_folder()
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(folder))  # type: ignore[no-untyped-call]
    # A small pool of its own: scrapes are rare and must not take the tasks' connections.
    engine = make_engine(settings.database_url, pool_size=1, max_overflow=1)
    registry.register(
        LedgerCollector(
            session_factory(engine),
            settings.account_names,
            settings.now,
            broker_url=settings.broker_url,
            queues=queues,
        )
    )
    try:
        server, thread = start_http_server(
            settings.metrics_port, addr=settings.metrics_host, registry=registry
        )
    except OSError as error:
        engine.dispose()
        if owns_folder:
            shutil.rmtree(folder, ignore_errors=True)
        log.error(
            "metrics: cannot listen on %s:%d (%s); this worker serves no metrics",
            settings.metrics_host, settings.metrics_port, error.strerror or error,
        )  # fmt: skip
        return None
    # Only once the endpoint is up: until then every process keeps its counts in memory.
    record_into(folder)
    endpoint = MetricsEndpoint(server, thread, folder, owns_folder, engine)
    log.info(
        "metrics on http://%s:%d%s (samples in %s)",
        settings.metrics_host, endpoint.port, METRICS_PATH, folder,
    )  # fmt: skip
    return endpoint
