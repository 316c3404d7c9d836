"""Gauges of the ledger and the broker, computed when Prometheus scrapes.

The database is the source of truth (docs/data-model.md, the ledger's guarantees), so how much work
waits, how old the oldest is, which accounts are paused and how far each batch has come are read
from it at scrape time rather than tracked by counters that a restart would lose. The queries,
bounded and indexed, are in ``worker.ledger.gauges``.

The gauges describe the shared ledger, so every worker serving them reports the same values:
aggregate them with ``max``, not ``sum``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime

import redis
from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from worker.ledger import gauges
from worker.ledger.accounts import paused_accounts
from worker.ledger.messages import count_by_status

log = logging.getLogger(__name__)

# Counting stops here, so a scrape stays quick whatever the backlog; a gauge at this value
# means "at least this many".
DEPTH_COUNT_LIMIT = 1_000_000
# The oldest waiting message without a not_before is looked for among this many; past that
# the age shown is a lower bound (the backlog is plainly large anyway).
OLDEST_SAMPLE = 10_000
# Batches whose progress is shown one by one: the active ones, earliest start first.
ACTIVE_BATCH_LIMIT = 20
BROKER_TIMEOUT_SECONDS = 2.0


class LedgerCollector:
    """A prometheus-client collector reading the ledger (and a Redis broker) on each scrape."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        accounts: Sequence[str],
        now: Callable[[], datetime],
        *,
        broker_url: str | None = None,
        queues: Sequence[str] = (),
    ) -> None:
        self.sessions = sessions
        self.queues = tuple(queues)  # the broker queues whose length is measured
        self.accounts = tuple(accounts)
        self.now = now
        self.broker_url = broker_url if broker_url and broker_url.startswith("redis") else None
        self._broker: redis.Redis | None = None
        self._lock = threading.Lock()

    def describe(self) -> list[Metric]:
        # Nothing: registering must not query the database.
        return []

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("sms_ledger_up", "1 when the ledger answered this scrape, else 0.")
        try:
            with self.sessions() as session:
                families = list(self._ledger_families(session, self.now()))
        except SQLAlchemyError as error:
            log.warning("metrics: the ledger did not answer: %s", type(error).__name__)
            families = []
        up.add_metric([], 1.0 if families else 0.0)
        yield up
        yield from families
        yield from self._broker_families()

    def _ledger_families(self, session: Session, now: datetime) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "sms_queue_depth",
            "Messages not sent yet: due (queued, may go now), scheduled (queued until a later "
            f"not_before) and sending (held by a worker). Counted up to {DEPTH_COUNT_LIMIT}.",
            labels=["state"],
        )
        for state, count in gauges.queue_depth(session, now, DEPTH_COUNT_LIMIT).items():
            depth.add_metric([state], float(count))
        yield depth

        oldest = gauges.oldest_due_since(session, now, OLDEST_SAMPLE)
        age = GaugeMetricFamily(
            "sms_queue_oldest_age_seconds",
            "How long the oldest due queued message has waited (since its not_before, or since "
            "it was created); 0 when none waits.",
        )
        age.add_metric([], max(0.0, (now - oldest).total_seconds()) if oldest else 0.0)
        yield age

        paused = GaugeMetricFamily(
            "sms_account_paused",
            "1 while the account is paused (its messages stay queued), else 0.",
            labels=["account"],
        )
        stopped = paused_accounts(session)
        for name in sorted({*self.accounts, *stopped}):
            paused.add_metric([name], 1.0 if name in stopped else 0.0)
        yield paused

        yield from _batch_families(session)

    def _broker_families(self) -> Iterator[Metric]:
        if self.broker_url is None:
            return
        length = GaugeMetricFamily(
            "sms_broker_queue_length",
            "Task messages waiting in the broker's queue (Redis LLEN); tasks a worker holds "
            "for a countdown are not counted.",
            labels=["queue"],
        )
        try:
            broker = self._redis()
            lengths = [(queue, int(broker.llen(queue))) for queue in self.queues]
        except redis.RedisError as error:
            log.warning("metrics: the broker did not answer: %s", type(error).__name__)
            return
        for queue, count in lengths:
            length.add_metric([queue], float(count))
        yield length

    def _redis(self) -> redis.Redis:
        with self._lock:
            if self._broker is None:
                assert self.broker_url is not None
                self._broker = redis.Redis.from_url(
                    self.broker_url,
                    socket_timeout=BROKER_TIMEOUT_SECONDS,
                    socket_connect_timeout=BROKER_TIMEOUT_SECONDS,
                )
            return self._broker


def _batch_families(session: Session) -> Iterator[Metric]:
    batches = GaugeMetricFamily(
        "sms_batches", "Marketing batches in each state.", labels=["status"]
    )
    for status, count in gauges.batches_by_status(session).items():
        batches.add_metric([status], float(count))
    yield batches

    messages = GaugeMetricFamily(
        "sms_batch_messages",
        f"Messages of each active batch (scheduled, sending, paused; at most "
        f"{ACTIVE_BATCH_LIMIT}) by message status. Progress: 1 - (queued + sending) / accepted.",
        labels=["batch_id", "account", "status"],
    )
    accepted = GaugeMetricFamily(
        "sms_batch_accepted",
        "Recipients each active batch accepted at import: its total.",
        labels=["batch_id", "account"],
    )
    for batch_id, account, total in gauges.active_batches(session, ACTIVE_BATCH_LIMIT):
        accepted.add_metric([str(batch_id), account], float(total))
        for status, count in sorted(count_by_status(session, batch_id=batch_id).items()):
            messages.add_metric([str(batch_id), account, status], float(count))
    yield messages
    yield accepted
