"""Crashes and a lost broker in the middle of a run: the ledger recovers everything.

A worker killed with SIGKILL, or Redis emptied with FLUSHDB, while a few hundred messages are
on their way. The sweeper (run here in-process, the way beat would) publishes again what the
broker lost; every message ends settled, and what the ledger says is checked against what the
simulator actually received.
"""

from __future__ import annotations

import signal
import uuid
from collections import Counter
from collections.abc import Collection

import pytest
from redis import Redis
from sqlalchemy import func, select

from tests.fixtures.pipeline import Pipeline
from tests.fixtures.redis import OWNER_KEY
from tests.fixtures.simulator import LONG_PARAMS, SIGN, TPL_LONG
from worker.ledger.models import SmsMessage
from worker.ledger.status import CLAIMABLE, SENT

# Slow enough answers that the run is still going when it is interrupted.
LATENCY_MS = 20


def enqueue_run(pipeline: Pipeline, count: int) -> list[uuid.UUID]:
    """``count`` notifications, one per number (their ambiguous attempts are sent again)."""
    pipeline.simulator.control.set_faults(latency_ms=LATENCY_MS)
    phones = [pipeline.new_phone().e164 for _ in range(count)]
    enqueued = pipeline.producer.enqueue_many(
        phones, template=TPL_LONG, params=LONG_PARAMS, sign=SIGN
    )
    return [message.id for message in enqueued]


def settled_count(pipeline: Pipeline, ids: Collection[uuid.UUID]) -> int:
    statement = select(func.count()).where(
        SmsMessage.id.in_(ids), SmsMessage.status.not_in(CLAIMABLE)
    )
    with pipeline.sessions() as session:
        return session.scalar(statement) or 0


def assert_accounted_for(
    pipeline: Pipeline, ids: Collection[uuid.UUID], *, ambiguous_allowed: bool
) -> None:
    """Every message sent; the ledger's attempts and the gateway's requests agree one to one.

    A message whose attempts were all answered is in the inbox exactly once. One with an
    ambiguous attempt (its worker died with the request in the air) may have gone out twice,
    which is the kind's policy; the ledger shows it.
    """
    messages = pipeline.wait_settled(ids, timeout=60, sweep_every=1.0)
    assert Counter(m.status for m in messages.values()) == {SENT: len(ids)}

    attempts = [a for a in pipeline.attempts() if a.message_id in messages]
    requests = pipeline.simulator.control.requests()
    attempts_by_random = Counter(a.random for a in attempts)
    requests_by_random = Counter(int(r.random) for r in requests)
    # Every request the gateway received has exactly one attempt row...
    assert {random: attempts_by_random[random] for random in requests_by_random} == dict.fromkeys(
        requests_by_random, 1
    )
    assert all(count == 1 for count in requests_by_random.values())
    # ...and every answered attempt is one of those requests; only an ambiguous one may have
    # left no trace at the gateway (the worker died before the request went out).
    assert all(a.outcome != "in_flight" for a in attempts)
    answered = [a for a in attempts if a.outcome != "ambiguous"]
    assert all(requests_by_random[a.random] == 1 for a in answered)
    if not ambiguous_allowed:
        assert len(answered) == len(attempts)

    inbox = Counter(m.mobile for m in pipeline.simulator.control.inbox())
    ambiguous = {a.message_id for a in attempts if a.outcome == "ambiguous"}
    for message in messages.values():
        tries = [a for a in attempts if a.message_id == message.id]
        if message.id in ambiguous:
            assert 1 <= inbox[message.mobile] <= len(tries), message
        else:
            assert inbox[message.mobile] == 1, message
            assert [a.outcome for a in tries] == ["ok"], message
    assert sum(inbox.values()) == sum(1 for r in requests if r.result == 0)
    # The broker had lost tasks: only the sweeper could have brought those messages back.
    assert pipeline.republished > 0


@pytest.mark.slow
def test_a_worker_killed_mid_run_loses_and_duplicates_nothing(pipeline: Pipeline) -> None:
    ids = enqueue_run(pipeline, 300)
    pipeline.wait_until(lambda: settled_count(pipeline, ids) >= 60, what="60 sent", timeout=30)

    pipeline.worker.kill(signal.SIGKILL)
    interrupted = settled_count(pipeline, ids)
    assert interrupted < len(ids), "the run finished before the kill; nothing was interrupted"
    pipeline.worker.start()

    assert_accounted_for(pipeline, ids, ambiguous_allowed=True)


@pytest.mark.slow
def test_redis_flushed_mid_run_loses_and_duplicates_nothing(
    pipeline: Pipeline, redis_url: str, redis_owner: str
) -> None:
    ids = enqueue_run(pipeline, 200)
    pipeline.wait_until(lambda: settled_count(pipeline, ids) >= 40, what="40 sent", timeout=30)

    broker = Redis.from_url(redis_url)
    try:
        with broker.pipeline(transaction=True) as flush:
            flush.flushdb()
            flush.set(OWNER_KEY, redis_owner)  # keep this run's claim on the database
            flush.execute()
    finally:
        broker.close()
    assert settled_count(pipeline, ids) < len(ids), "the run finished before the flush"

    assert_accounted_for(pipeline, ids, ambiguous_allowed=False)
