"""The real system of one chaos case: Celery workers and beat as processes, a producer in the test.

- ``ChaosSystem``: the ``SMS_*`` environment of the case (its own PostgreSQL, Redis, and the
  simulator or the proxy in front of it), real ``celery worker`` and ``celery beat`` processes
  (started side by side, stopped or killed by their pids), and in this process a producer and
  the ledger's sessions.
- ``Load``: notifications enqueued in waves by a thread of its own, as producers keep producing
  while the system is in trouble; a wave that fails is tried again under the same idempotency
  key, so a retried wave never doubles a message.

The settings keep production's proportions at a smaller scale: a lease (10 s) longer than the
longest a send task works on a message (three tries with a 2 s read timeout and their backoff,
under 8 s), so a lease only runs out when its worker is gone.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from celery import Celery
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.fixtures.pipeline import (
    CeleryWorker,
    child_environment,
    pipeline_environment,
    settings_under,
)
from tests.fixtures.simulator import LONG_PARAMS, SIGN, TPL_LONG
from worker.api.producer import Producer
from worker.celery.application import make_app
from worker.celery.tasks import make_publisher
from worker.config import Settings
from worker.ledger.db import make_engine, session_factory
from worker.ledger.schema import SmsMessage
from worker.ledger.status import CLAIMABLE, SENDING
from worker.runners.processes import ManagedProcess, celery_beat
from worker.simulator.control import SimulatorControl

CHAOS_SETTINGS = {
    "SMS_LEASE_SECONDS": "10",
    "SMS_SWEEP_AFTER_SECONDS": "2",
    "SMS_CONNECT_TIMEOUT": "1",
    "SMS_READ_TIMEOUT": "2",
}
# Fast enough that the account's rate never holds notifications back (batches set their own).
NOTIFICATION_RATE = 500.0
WORKER_THREADS = 8
POLL_SECONDS = 0.2
BUSY_POLL_SECONDS = 0.02
QUIET_SECONDS = 1.0  # the gateway's log unchanged this long: nothing is in the air any more
SUPERVISE_EVERY_SECONDS = 0.5
SUPERVISE_JOIN_SECONDS = 90.0  # a restart in progress finishes first
WAVE_RETRY_SECONDS = 0.5
WAVE_TRIES = 240
LOAD_STOP_SECONDS = 30.0  # a wave in progress finishes first


class ChaosSystem:
    """Workers and beats of one configuration; the test process produces and audits."""

    def __init__(
        self,
        folder: Path,
        *,
        database_url: str,
        broker_url: str,
        gateway_url: str,
        control: SimulatorControl,
        send_rate: float = NOTIFICATION_RATE,
        clock_offset: float = 0.0,
        workers: int = 2,
        beats: int = 1,
    ) -> None:
        self.folder = folder
        self.control = control
        self.environment = {
            **pipeline_environment(database_url, broker_url, gateway_url),
            **CHAOS_SETTINGS,
            "SMS_SEND_RATE": str(send_rate),
            "SMS_CLOCK_OFFSET_SECONDS": str(clock_offset),
        }
        self.settings: Settings = settings_under(self.environment)
        self.engine: Engine = make_engine(self.settings.database_url)
        self.sessions: sessionmaker[Session] = session_factory(self.engine)
        self.celery_app: Celery = make_app(self.settings)
        self.producer = Producer(self.settings, self.sessions, make_publisher(self.celery_app))
        self.workers = [
            CeleryWorker(
                self.environment, self._subfolder(f"worker-{n}"), concurrency=WORKER_THREADS
            )
            for n in range(1, workers + 1)
        ]
        self.beats = [self._beat(n) for n in range(1, beats + 1)]
        self.start_seconds = 0.0  # how long the last start took
        self.supervisor: Supervisor | None = None

    def supervise(self) -> Supervisor:
        """From now on, start again any worker or beat that exits, as a process manager would."""
        assert self.supervisor is None, "already supervised"
        self.supervisor = Supervisor(self.workers, self.beats)
        return self.supervisor

    def _subfolder(self, name: str) -> Path:
        path = self.folder / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _beat(self, n: int) -> ManagedProcess:
        folder = self._subfolder(f"beat-{n}")
        environment = child_environment(self.environment)
        beat = celery_beat(environment, folder / "beat.log", folder / "schedule")
        beat.cwd = folder  # a folder without a .env: the process sees only this environment
        return beat

    # --- processes -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start every worker and beat not running, side by side; wait until all are ready."""
        starting: list[Callable[[], object]] = [w.start for w in self.workers if not w.running]
        starting += [b.start for b in self.beats if not b.running]
        began = time.monotonic()
        with ThreadPoolExecutor(max_workers=max(1, len(starting))) as pool:
            for started in [pool.submit(start) for start in starting]:
                started.result()
        self.start_seconds = time.monotonic() - began

    def stop(self) -> None:
        """Stop every process (warm shutdown, KILL after a bounded wait), side by side."""
        stopping = [w.stop for w in self.workers] + [b.stop for b in self.beats]
        with ThreadPoolExecutor(max_workers=len(stopping)) as pool:
            for stopped in [pool.submit(stop) for stop in stopping]:
                stopped.result()

    def restart_workers(self, **environment: str) -> None:
        """Stop the workers, change their environment, start them again."""
        with ThreadPoolExecutor(max_workers=len(self.workers)) as pool:
            for stopped in [pool.submit(w.stop) for w in self.workers]:
                stopped.result()
        for worker in self.workers:
            worker.environment.update(environment)
        self.start()

    def pids(self) -> list[int | None]:
        """The pid of every worker and beat, None for one not running."""
        processes = [w.process for w in self.workers] + list(self.beats)
        return [p.pid if p is not None and p.running else None for p in processes]

    def close(self) -> None:
        if self.supervisor is not None:
            self.supervisor.stop()
        self.stop()
        self.celery_app.close()
        self.engine.dispose()

    def logs(self, lines: int = 25) -> str:
        parts = [f"--- worker {n}:\n{w.log_tail(lines)}" for n, w in enumerate(self.workers, 1)]
        for n, beat in enumerate(self.beats, 1):
            text = beat.log_path.read_text(errors="replace") if beat.log_path.exists() else ""
            parts.append(f"--- beat {n}:\n" + "\n".join(text.splitlines()[-lines:]))
        return "\n".join(parts)

    # --- the ledger ----------------------------------------------------------------------------

    def statuses(self) -> dict[str, int]:
        statement = select(SmsMessage.status, func.count()).group_by(SmsMessage.status)
        with self.sessions() as session:
            return {status: count for status, count in session.execute(statement).all()}

    def held_by(self, pid: int) -> int:
        """Messages the worker process ``pid`` holds the lease of (sending)."""
        owner = f"{socket.gethostname()}:{pid}:%"
        statement = select(func.count()).where(
            SmsMessage.status == SENDING, SmsMessage.lease_owner.like(owner)
        )
        with self.sessions() as session:
            return session.scalar(statement) or 0

    def when_busy(self, pid: int, *, timeout: float) -> int:
        """Wait (bounded) until the worker ``pid`` holds a message; how many it holds (0: none
        came within ``timeout``)."""
        deadline = time.monotonic() + timeout
        for _ in range(int(timeout / BUSY_POLL_SECONDS) + 1):
            held = self.held_by(pid)
            if held or time.monotonic() >= deadline:
                return held
            time.sleep(BUSY_POLL_SECONDS)
        return 0

    def when_backlogged(self, minimum: int, *, timeout: float) -> int:
        """Wait (bounded) until ``minimum`` messages are queued or sending; how many are."""
        deadline = time.monotonic() + timeout
        for _ in range(int(timeout / BUSY_POLL_SECONDS) + 1):
            backlog = self.unsettled()
            if backlog >= minimum or time.monotonic() >= deadline:
                return backlog
            time.sleep(BUSY_POLL_SECONDS)
        return 0

    def unsettled(self) -> int:
        """Messages still queued or sending."""
        return sum(n for status, n in self.statuses().items() if status in CLAIMABLE)

    def wait_until(self, condition: Callable[[], bool], *, timeout: float, what: str) -> None:
        """Poll ``condition`` until it holds; fail after ``timeout`` with states and logs."""
        deadline = time.monotonic() + timeout
        for _ in range(int(timeout / POLL_SECONDS) + 1):
            if condition():
                return
            if time.monotonic() >= deadline:
                break
            time.sleep(POLL_SECONDS)
        raise AssertionError(
            f"no {what} after {timeout:g} s; ledger {self.statuses()}\n{self.logs()}"
        )

    def settle(self, expected: int, *, timeout: float) -> None:
        """Wait until the ledger holds ``expected`` messages, none queued or sending, and the
        gateway's log has stopped growing (no request is in the air any more)."""

        def all_final() -> bool:
            statuses = self.statuses()
            counted = sum(statuses.values())
            return counted >= expected and not any(s in CLAIMABLE for s in statuses)

        self.wait_until(all_final, timeout=timeout, what=f"{expected} messages final")
        seen = -1
        deadline = time.monotonic() + timeout
        for _ in range(int(timeout / QUIET_SECONDS) + 1):
            current = int(self.control.stats()["log_size"])
            if current == seen or time.monotonic() >= deadline:
                return
            seen = current
            time.sleep(QUIET_SECONDS)


class Supervisor:
    """Starts again a worker or beat that exited, like the restart policy of docker-compose.yml;
    counts how often it had to."""

    def __init__(self, workers: Sequence[CeleryWorker], beats: Sequence[ManagedProcess]) -> None:
        self.workers = workers
        self.beats = beats
        self.revived: list[str] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="chaos-supervisor", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        # Ends when stop() is called (the case's teardown at the latest).
        while not self._stopping.wait(SUPERVISE_EVERY_SECONDS):
            for n, worker in enumerate(self.workers, 1):
                if worker.process is not None and not worker.running:
                    self.revived.append(f"worker {n}")
                    worker.start()
            for n, beat in enumerate(self.beats, 1):
                if beat.process is not None and not beat.running:
                    self.revived.append(f"beat {n}")
                    beat.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(SUPERVISE_JOIN_SECONDS)


def mainland_numbers(series: int, count: int) -> list[str]:
    """``count`` distinct mainland numbers in E.164; ``series`` (0-99) keeps cases apart."""
    return [f"+86137{series:02d}{n:06d}" for n in range(count)]


class Load:
    """Notifications to ``numbers``, enqueued in ``waves`` spread over ``seconds``."""

    def __init__(
        self, producer: Producer, numbers: Sequence[str], *, waves: int, seconds: float
    ) -> None:
        self.producer = producer
        size = -(-len(numbers) // waves)
        self.waves = [list(numbers[i : i + size]) for i in range(0, len(numbers), size)]
        self.pause = seconds / max(1, len(self.waves) - 1)
        self.tag = uuid.uuid4().hex[:12]
        self.accepted: list[uuid.UUID] = []
        self.retries = 0  # waves tried again after a failure (the ledger or the broker was down)
        self.failures: list[str] = []
        self.done_waves = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-load", daemon=True)

    def start(self) -> Load:
        self._thread.start()
        return self

    def wait(self, timeout: float) -> list[uuid.UUID]:
        """Every message accepted, once every wave is."""
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the load is still enqueuing after {timeout:g} s"
        assert not self.failures, f"waves never accepted: {self.failures}"
        return self.accepted

    def stop(self) -> None:
        """Enqueue nothing more (a case that failed must not feed the next one)."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(LOAD_STOP_SECONDS)

    def _run(self) -> None:
        for number, wave in enumerate(self.waves):
            if self._stopping.is_set():
                return
            self._enqueue(number, wave)
            self.done_waves += 1
            if number < len(self.waves) - 1:
                self._stopping.wait(self.pause)

    def _enqueue(self, number: int, wave: list[str]) -> None:
        error: Exception | None = None
        for _ in range(WAVE_TRIES):
            if self._stopping.is_set():
                return
            try:
                enqueued = self.producer.enqueue_many(
                    wave, template=TPL_LONG, params=LONG_PARAMS, sign=SIGN,
                    idempotency_key=f"chaos-{self.tag}-{number}",
                )  # fmt: skip
            except Exception as failure:  # the ledger is down: a producer tries again
                error = failure
                self.retries += 1
                self._stopping.wait(WAVE_RETRY_SECONDS)
                continue
            self.accepted.extend(message.id for message in enqueued)
            return
        self.failures.append(f"wave {number}: {type(error).__name__}: {error}")
