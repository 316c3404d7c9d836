"""Crashes and a lost broker in the middle of a run: the ledger recovers everything.

A worker killed with SIGKILL, or Redis emptied with FLUSHDB, while a few hundred messages are
on their way. The sweeper (run here in-process, the way beat would) publishes again what the
broker lost; every message ends settled, and what the ledger says is checked against what the
simulator actually received.
"""

from __future__ import annotations

import signal

import pytest
from redis import Redis

from tests.fixtures.pipeline import Pipeline
from tests.fixtures.redis import OWNER_KEY
from tests.pipeline.interrupted_run import assert_accounted_for, enqueue_run, settled_count


@pytest.mark.slow
def test_a_worker_killed_mid_run_loses_and_duplicates_nothing(pipeline: Pipeline) -> None:
    ids = enqueue_run(pipeline, 300)
    pipeline.wait_until(lambda: settled_count(pipeline, ids) >= 60, what="60 sent", timeout=120)

    pipeline.worker.kill(signal.SIGKILL)
    interrupted = settled_count(pipeline, ids)
    assert interrupted < len(ids), "the run finished before the kill; nothing was interrupted"
    pipeline.worker.start()

    assert_accounted_for(pipeline, ids, ambiguous_allowed=True)
    # Redis keeps the dead worker's unacked tasks until the visibility timeout: only the sweeper
    # could have brought those messages back.
    assert pipeline.republished > 0


@pytest.mark.slow
def test_redis_flushed_mid_run_loses_and_duplicates_nothing(
    pipeline: Pipeline, redis_url: str, redis_owner: str
) -> None:
    ids = enqueue_run(pipeline, 200)
    pipeline.wait_until(lambda: settled_count(pipeline, ids) >= 40, what="40 sent", timeout=120)

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
    # The broker had lost tasks: only the sweeper could have brought those messages back.
    assert pipeline.republished > 0
