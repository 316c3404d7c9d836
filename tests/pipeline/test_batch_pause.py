"""``sms-worker batch pause`` while a batch is going out: a real Celery worker, Redis,
PostgreSQL and the simulator.

The gateway answers slowly (a latency of several seconds), so that when the pause is given
(right after the gateway has seen the batch's first request) requests are in the air, single
sends and chunks wait in the broker, and numbers of a group are due to be tried again. After the
command has returned, the only requests of the batch the gateway may still receive are those
whose attempt was written ahead before: the set of requests the gateway saw is compared with the
attempts the ledger held when the command returned. Then ``batch resume`` sends the rest, each
number once.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.fixtures.pipeline import Pipeline, Pipelines, child_environment
from tests.pipeline.test_batches import CLOCK, BatchRun, new_mobiles, offset_to
from worker.celery.tasks import make_chunk_publisher
from worker.ledger.schema import SmsAttempt, SmsMessage
from worker.ledger.status import QUEUED, SENT, BatchStatus
from worker.services.dispatch import Dispatcher, dispatch_due_batches

SMS_WORKER = str(Path(sys.executable).with_name("sms-worker"))
# Every answer of the gateway waits this long: the command (a few seconds to start on a busy
# machine) returns while the first requests are still in the air.
LATENCY_MS = 15000
# The worker of this module waits long enough for such answers and keeps its leases meanwhile.
SLOW_GATEWAY = {"SMS_READ_TIMEOUT": "60", "SMS_LEASE_SECONDS": "120"}
WAIT_SECONDS = 180.0  # only ever the bound of a condition-based wait


def restart_worker(pipeline: Pipeline, settings: dict[str, str | None]) -> None:
    """Restart the worker with these variables set (None: removed)."""
    pipeline.worker.stop()
    for name, value in settings.items():
        if value is None:
            pipeline.worker.environment.pop(name, None)
        else:
            pipeline.worker.environment[name] = value
    pipeline.worker.start()


@pytest.fixture(scope="module")
def slow_daytime(pipelines: Pipelines) -> Iterator[float]:
    """This module's worker: at about 10:00 Beijing time, patient with a slow gateway."""
    pipeline = pipelines.get("postgresql")
    offset = offset_to(10)
    restart_worker(pipeline, {CLOCK: str(offset), **SLOW_GATEWAY})
    yield offset
    pipeline.worker.stop()  # the next test's reset starts it again, as it was
    for name in (CLOCK, *SLOW_GATEWAY):
        pipeline.worker.environment.pop(name, None)


@pytest.fixture
def run(pipeline: Pipeline, slow_daytime: float) -> Iterator[BatchRun]:
    current = BatchRun(pipeline, slow_daytime)
    yield current
    current.control.set_faults()


def sms_worker(run: BatchRun, folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SMS_WORKER, "batch", *args], env=child_environment(run.pipeline.environment),
        cwd=folder, capture_output=True, text=True, timeout=WAIT_SECONDS, check=False,
    )  # fmt: skip


def first_request_seen(run: BatchRun, numbers: set[str]) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if any(numbers.intersection(r.numbers) for r in run.control.requests()):
            return
        time.sleep(0.05)
    log = run.pipeline.worker.log_tail()
    raise AssertionError(f"the gateway saw no request of the batch; worker log:\n{log}")


def requested(run: BatchRun, numbers: set[str]) -> Counter[str]:
    """The requests of the batch the gateway received, by their ``random``."""
    return Counter(r.random for r in run.control.requests() if numbers.intersection(r.numbers))


def written_ahead(run: BatchRun, batch_id: uuid.UUID) -> dict[str, SmsAttempt]:
    """Every attempt of the batch the ledger holds, by its request's ``random``."""
    statement = (
        select(SmsAttempt)
        .join(SmsMessage, SmsMessage.id == SmsAttempt.message_id)
        .where(SmsMessage.batch_id == batch_id)
    )
    with run.pipeline.sessions() as session:
        return {str(attempt.random): attempt for attempt in session.scalars(statement)}


def pause_mid_way_then_resume(
    run: BatchRun, batch_id: uuid.UUID, numbers: set[str], folder: Path
) -> None:
    """Pause once the gateway has seen the batch's first request; check that nothing else of
    it was requested; resume; check that every number got its SMS once."""
    first_request_seen(run, numbers)
    paused = sms_worker(run, folder, "pause", str(batch_id))
    assert paused.returncode == 0, paused.stderr
    in_the_air = set(written_ahead(run, batch_id))  # written ahead before the pause returned

    counts = run.settle(batch_id, timeout=WAIT_SECONDS)  # nothing of it in a worker's hands
    # No attempt was written after the pause returned, so no request was made after it (each
    # leaves only after its attempt is written). The gateway saw those written before, once
    # each; one it did not see never reached it (no HTTP answer: a dropped connection).
    attempts = written_ahead(run, batch_id)
    assert set(attempts) == in_the_air
    seen = requested(run, numbers)
    assert set(seen) <= in_the_air and set(seen.values()) == {1}
    unseen = [attempts[random] for random in in_the_air - set(seen)]
    assert all(attempt.http_status is None for attempt in unseen), [
        (a.outcome, a.http_status, a.errmsg) for a in unseen
    ]
    assert counts.get(QUEUED, 0) > 0, f"the pause came after the whole batch: {counts}"
    assert set(counts) <= {SENT, QUEUED}, counts
    # Paused, nothing is handed out; what waits is queued, not failed.
    assert sum(run.tick().messages for _ in range(3)) == 0
    assert run.counts(batch_id) == counts
    assert run.batches.status(batch_id).batch.status == BatchStatus.PAUSED

    run.control.set_faults()  # the gateway answers at once again
    resumed = sms_worker(run, folder, "resume", str(batch_id))
    assert resumed.returncode == 0, resumed.stderr
    assert run.done(batch_id, timeout=WAIT_SECONDS) == {SENT: len(numbers)}
    inbox = Counter(f"+86{m.mobile}" for m in run.control.inbox() if f"+86{m.mobile}" in numbers)
    assert inbox == Counter(numbers)  # every number once


def test_a_batch_of_single_sends_paused_mid_way_requests_nothing_more(
    run: BatchRun, tmp_path: Path
) -> None:
    mobiles = new_mobiles(60)
    rows = [f"+86{m},客户{i},{i % 9 + 1}" for i, m in enumerate(mobiles)]  # params of its own
    run.control.set_faults(latency_ms=LATENCY_MS)
    batch_id = run.create(rows, shared=False)
    handed_out = run.tick()
    assert (handed_out.singles, handed_out.chunks) == (60, 0)

    pause_mid_way_then_resume(run, batch_id, {f"+86{m}" for m in mobiles}, tmp_path)
    assert {r.api for r in run.control.requests()} == {"sendsms"}


def test_a_group_batch_paused_mid_way_requests_nothing_more(run: BatchRun, tmp_path: Path) -> None:
    mobiles = new_mobiles(2400)
    for mobile in mobiles[::50]:  # a few numbers of every chunk are tried again in its task
        run.control.script(mobile, [1008])
    run.control.set_faults(latency_ms=LATENCY_MS)
    batch_id = run.create([f"+86{m}" for m in mobiles])
    # One tick hands out the whole batch: more chunks than the worker sends at once.
    everything = Dispatcher(
        run.pipeline.sessions, run.pipeline.settings,
        make_chunk_publisher(run.pipeline.celery_app), run.pipeline.producer.publish,
        "test-beat", every_seconds=60.0,
    )  # fmt: skip
    assert dispatch_due_batches(everything, run.now()).chunks == 12

    pause_mid_way_then_resume(run, batch_id, {f"+86{m}" for m in mobiles}, tmp_path)
    assert {r.api for r in run.control.requests()} == {"sendmultisms2"}
