"""Marketing batches end to end: a real Celery worker, Redis, PostgreSQL and the simulator.

Beat's dispatcher ticks in this process (``dispatch_due_batches`` with the worker's clock); its
chunk tasks go through Redis to the worker, which sends them to the simulator. The worker and the
simulator run on a simulated clock (``SMS_CLOCK_OFFSET_SECONDS`` and ``set_clock``), so marketing
hours are what a test says they are, whatever the time of day the suite runs.
"""

from __future__ import annotations

import secrets
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from tests.fixtures.pipeline import Pipeline, Pipelines
from tests.fixtures.simulator import SIGN
from worker.api.batches import Batches
from worker.celery.routing import (
    BEAT_SCHEDULE,
    DISPATCH_EVERY_SECONDS,
    QUEUE_MAINTENANCE,
    TASK_DISPATCH_BATCHES,
)
from worker.celery.tasks import make_chunk_publisher
from worker.ledger.messages import count_by_status
from worker.ledger.schema import SmsAttempt, SmsMessage
from worker.ledger.status import CANCELLED, FAILED, QUEUED, SENDING, SENT, UNKNOWN, BatchStatus
from worker.services.dispatch import Dispatcher, DispatchReport, dispatch_due_batches
from worker.services.sending.waits import BEIJING, seconds_until_beijing_hour
from worker.simulator.control import SimulatorControl

TEMPLATE = 100002  # a marketing template of the simulator: {1} and {2}
PARAMS = ["张女士", "8"]
TICK_SECONDS = 0.1
CLOCK = "SMS_CLOCK_OFFSET_SECONDS"
# Numbers of this run: +86136, a run prefix, a counter (other tests use +86139...).
_PREFIX = secrets.randbelow(1000)
_counter = iter(range(100_000))


def new_mobiles(count: int) -> list[str]:
    return [f"136{_PREFIX:03d}{next(_counter):05d}" for _ in range(count)]


def offset_to(hour: int, minute: int = 0) -> float:
    """Seconds from now to the next ``hour:minute`` Beijing time."""
    now = datetime.now(UTC)
    return seconds_until_beijing_hour(now, hour) + minute * 60.0


def set_worker_clock(pipeline: Pipeline, offset: float | None) -> None:
    """Restart the worker so that its clock runs ``offset`` seconds ahead (None: real time)."""
    environment = pipeline.worker.environment
    if environment.get(CLOCK) == (None if offset is None else str(offset)):
        return
    pipeline.worker.stop()
    if offset is None:
        environment.pop(CLOCK, None)
        return  # the next test's reset starts it again
    environment[CLOCK] = str(offset)
    pipeline.worker.start()


@pytest.fixture(scope="module")
def daytime(pipelines: Pipelines) -> Iterator[float]:
    """The worker of this module runs at about 10:00 Beijing time; real time again afterwards."""
    pipeline = pipelines.get("postgresql")
    offset = offset_to(10)
    set_worker_clock(pipeline, offset)
    yield offset
    set_worker_clock(pipeline, None)


class BatchRun:
    """One test's view: the pipeline, beat's dispatcher in this process, both clocks."""

    def __init__(self, pipeline: Pipeline, offset: float) -> None:
        self.pipeline = pipeline
        self.batches = Batches(pipeline.settings, pipeline.sessions)
        self.dispatcher = Dispatcher(
            pipeline.sessions, pipeline.settings, make_chunk_publisher(pipeline.celery_app),
            pipeline.producer.publish, "test-beat", DISPATCH_EVERY_SECONDS,
        )  # fmt: skip
        self.offset = 0.0
        self.set_clocks(offset)

    @property
    def control(self) -> SimulatorControl:
        return self.pipeline.simulator.control

    def set_clocks(self, offset: float) -> None:
        """The worker (restarted if needed), the simulator and the dispatcher ``offset`` ahead."""
        set_worker_clock(self.pipeline, offset)
        self.control.set_clock(offset=offset)
        self.offset = offset

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.offset)

    def create(self, rows: Sequence[str], *, shared: bool = True) -> uuid.UUID:
        header = "mobile" if shared else "mobile,param1,param2"
        now = self.now()
        report = self.batches.create(
            [header, *rows], template=TEMPLATE, sign=SIGN, params=PARAMS if shared else None,
            start_at=now - timedelta(minutes=1), window_end_at=now + timedelta(days=2),
        )  # fmt: skip
        assert report.rejected == 0, report.first_rejections
        return report.batch_id

    def tick(self, at: datetime | None = None) -> DispatchReport:
        return dispatch_due_batches(self.dispatcher, at or self.now())

    def counts(self, batch_id: uuid.UUID) -> dict[str, int]:
        with self.pipeline.sessions() as session:
            return count_by_status(session, batch_id=batch_id)

    def drive(
        self, batch_id: uuid.UUID, until: Callable[[dict[str, int]], bool], timeout: float = 180
    ) -> dict[str, int]:
        """Tick as beat would (faster) until ``until(counts)``; fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        counts: dict[str, int] = {}
        for _ in range(int(timeout / TICK_SECONDS) + 1):
            self.tick()
            counts = self.counts(batch_id)
            if until(counts):
                return counts
            if time.monotonic() >= deadline:
                break
            time.sleep(TICK_SECONDS)
        raise AssertionError(
            f"batch {batch_id} at {counts} after {timeout:g} s; worker log:\n"
            f"{self.pipeline.worker.log_tail()}"
        )

    def settle(self, batch_id: uuid.UUID, timeout: float = 120) -> dict[str, int]:
        """Wait, without ticking, until nothing of the batch is in a worker's hands."""
        deadline = time.monotonic() + timeout
        counts: dict[str, int] = {}
        for _ in range(int(timeout / TICK_SECONDS) + 1):
            counts = self.counts(batch_id)
            with self.pipeline.sessions() as session:
                handed = session.scalar(
                    select(SmsMessage.id)
                    .where(SmsMessage.batch_id == batch_id, SmsMessage.lease_until.is_not(None))
                    .limit(1)
                )
            if not counts.get(SENDING) and handed is None:
                return counts
            if time.monotonic() >= deadline:
                break
            time.sleep(TICK_SECONDS)
        raise AssertionError(f"batch {batch_id} still busy at {counts}")

    def done(self, batch_id: uuid.UUID, timeout: float = 180) -> dict[str, int]:
        counts = self.drive(batch_id, lambda c: not c.get(QUEUED) and not c.get(SENDING), timeout)
        self.tick()
        assert self.batches.status(batch_id).batch.status == BatchStatus.DONE
        return counts

    def messages(self, batch_id: uuid.UUID) -> dict[str, SmsMessage]:
        with self.pipeline.sessions() as session:
            found = session.scalars(select(SmsMessage).where(SmsMessage.batch_id == batch_id))
            return {message.mobile: message for message in found}

    def attempts(self, ids: Sequence[uuid.UUID]) -> list[SmsAttempt]:
        with self.pipeline.sessions() as session:
            statement = select(SmsAttempt).where(SmsAttempt.message_id.in_(ids))
            return list(session.scalars(statement))


@pytest.fixture
def run(pipeline: Pipeline, daytime: float) -> Iterator[BatchRun]:
    current = BatchRun(pipeline, daytime)
    yield current
    set_worker_clock(pipeline, daytime)


def test_a_shared_params_batch_goes_out_200_numbers_a_request_each_ledgered_alone(
    run: BatchRun,
) -> None:
    mobiles = new_mobiles(2400)
    refused, invalid, blacklisted = mobiles[10], mobiles[1234], mobiles[2399]
    run.control.script(refused, [1015])
    run.control.script(invalid, [1016])
    run.control.set_limits(blacklist=[blacklisted])
    batch_id = run.create([f"+86{m}" for m in mobiles])

    assert run.done(batch_id) == {SENT: 2397, FAILED: 3}

    requests = run.control.requests()
    assert {r.api for r in requests} == {"sendmultisms2"}
    assert max(len(r.numbers) for r in requests) == 200
    asked = sorted(n for r in requests for n in r.numbers)
    assert asked == sorted(f"+86{m}" for m in mobiles)  # each number asked for once
    detail = {n.mobile: (r.random, n) for r in requests for n in r.results}
    messages = run.messages(batch_id)
    attempts = {a.message_id: a for a in run.attempts([m.id for m in messages.values()])}
    assert len(attempts) == len(messages) == 2400
    for mobile, message in messages.items():
        random, answer = detail[mobile]
        attempt = attempts[message.id]
        assert (str(attempt.random), attempt.result) == (random, answer.result)
        if mobile in (refused, invalid, blacklisted):
            assert (message.status, message.result, message.sid) == (FAILED, answer.result, None)
            continue
        # Its own entry of the detail: sid and fee, on the message and on its attempt.
        assert message.status == SENT and answer.result == 0
        assert (message.sid, message.fee) == (attempt.sid, attempt.fee) == (answer.sid, answer.fee)
    assert {(refused, 1015), (invalid, 1016), (blacklisted, 1015)} == {
        (m, messages[m].result) for m in (refused, invalid, blacklisted)
    }
    # The numbers of one request share its request_id, and only they do.
    by_request = Counter(a.request_id for a in attempts.values())
    assert sorted(by_request.values()) == sorted(len(r.numbers) for r in requests)
    inbox = Counter(m.mobile for m in run.control.inbox())
    assert inbox == Counter({m: 1 for m, msg in messages.items() if msg.status == SENT})


def test_per_recipient_params_go_as_single_sends_and_equal_ones_as_a_group(
    run: BatchRun,
) -> None:
    grouped, single = new_mobiles(30), new_mobiles(20)
    rows = [f"+86{m},王先生,9" for m in grouped]
    rows += [f"+86{m},客户{i},{i % 9 + 1}" for i, m in enumerate(single)]
    batch_id = run.create(rows, shared=False)

    assert run.done(batch_id) == {SENT: 50}
    requests = run.control.requests()
    assert sorted((r.api, len(r.numbers)) for r in requests) == sorted(
        [("sendmultisms2", 30)] + [("sendsms", 1)] * 20
    )
    texts = {m.mobile: m.text for m in run.control.inbox()}
    assert (
        texts[single[3]]
        == "【腾讯云】亲爱的客户3，您的会员积分即将到期，本周末全场4折，欢迎选购。拒收请回复R"
    )
    assert all("王先生" in texts[m] for m in grouped)


def test_a_batch_reaching_22_waits_for_8_and_finishes_by_itself(run: BatchRun) -> None:
    run.set_clocks(offset_to(21, 59))
    evening = run.now()
    batch_id = run.create([f"+86{m}" for m in new_mobiles(600)])

    assert run.tick().messages == 250  # what the account's rate sends until the next tick
    assert run.settle(batch_id) == {SENT: 250, QUEUED: 350}

    # The gateway's clock passes 22:00 first: what the worker sends now is refused with 1029
    # (or, once its own clock has passed 22:00 too, not sent at all); either way it waits.
    run.control.set_clock(offset=run.offset + 90)
    assert run.tick(evening + timedelta(seconds=30)).messages == 250
    assert run.settle(batch_id) == {SENT: 250, QUEUED: 350}
    opens = (evening + timedelta(hours=11)).astimezone(BEIJING)
    opens = opens.replace(minute=0, second=0, microsecond=0)
    waiting = [
        m for m in run.messages(batch_id).values() if m.not_before and m.not_before > evening
    ]
    assert len(waiting) == 250
    assert all(abs((m.not_before - opens).total_seconds()) < 2 for m in waiting if m.not_before)

    # All night long nothing is handed out.
    for night in (
        evening + timedelta(minutes=2),
        opens - timedelta(hours=5),
        opens - timedelta(minutes=1),
    ):
        assert run.tick(night).messages == 0

    run.set_clocks((opens + timedelta(seconds=30) - datetime.now(UTC)).total_seconds())
    assert run.done(batch_id) == {SENT: 600}
    beijing_hours = Counter(
        datetime.fromtimestamp(m.time, BEIJING).hour for m in run.control.inbox()
    )
    assert beijing_hours == {21: 250, 8: 350}
    assert len({m.mobile for m in run.control.inbox()}) == 600


def test_pause_resume_and_cancel_mid_batch(run: BatchRun) -> None:
    batch_id = run.create([f"+86{m}" for m in new_mobiles(1000)])
    assert run.tick().messages == 250
    assert run.settle(batch_id) == {SENT: 250, QUEUED: 750}
    assert run.batches.pause(batch_id)
    assert sum(run.tick().messages for _ in range(3)) == 0
    assert run.counts(batch_id) == {SENT: 250, QUEUED: 750}

    assert run.batches.resume(batch_id)
    run.drive(batch_id, lambda counts: counts.get(SENT, 0) >= 500)
    cancelled = run.batches.cancel(batch_id)  # the queued ones at once
    assert cancelled is not None and cancelled > 0
    counts = run.settle(batch_id)  # chunks handed out before finish (or cancel at send time)
    assert counts[CANCELLED] >= cancelled
    assert sum(run.tick().messages for _ in range(3)) == 0
    assert set(counts) == {SENT, CANCELLED} and counts[SENT] + counts[CANCELLED] == 1000
    assert run.batches.status(batch_id).batch.status == BatchStatus.CANCELLED

    messages = run.messages(batch_id)
    inbox = Counter(m.mobile for m in run.control.inbox())
    assert inbox == Counter({m: 1 for m, msg in messages.items() if msg.status == SENT})


def test_a_worker_killed_mid_batch_resumes_and_sends_no_number_twice(run: BatchRun) -> None:
    run.control.set_faults(latency_ms=40)  # slow enough that the kill catches requests
    batch_id = run.create([f"+86{m}" for m in new_mobiles(1500)])
    run.drive(batch_id, lambda counts: counts.get(SENT, 0) >= 400, timeout=120)

    run.pipeline.worker.kill(signal.SIGKILL)
    interrupted = run.counts(batch_id)
    assert interrupted.get(SENT, 0) < 1500, "the batch finished before the kill"
    run.pipeline.worker.start()

    counts = run.done(batch_id, timeout=180)
    # At most one tick's worth (250) was in the worker's hands when it died.
    assert set(counts) <= {SENT, UNKNOWN} and counts.get(UNKNOWN, 0) <= 250
    messages = run.messages(batch_id)
    inbox = Counter(m.mobile for m in run.control.inbox())
    assert max(inbox.values()) == 1  # nobody got it twice
    attempts = run.attempts([m.id for m in messages.values()])
    assert all(a.outcome != "in_flight" for a in attempts)
    for mobile, message in messages.items():
        if message.status == SENT:
            assert inbox[mobile] == 1
        else:  # its chunk was in the air when the worker died: not resent, by policy
            assert [a.outcome for a in attempts if a.message_id == message.id] == ["ambiguous"]


def test_beats_own_task_dispatches_a_batch(run: BatchRun) -> None:
    batch_id = run.create([f"+86{m}" for m in new_mobiles(300)])
    deadline = time.monotonic() + 180  # generous: a loaded machine may be slow to dispatch
    for _ in range(900):  # the beat entry's task, as beat would publish it, in the worker
        run.pipeline.celery_app.send_task(TASK_DISPATCH_BATCHES, queue=QUEUE_MAINTENANCE)
        time.sleep(0.2)
        if (
            run.batches.status(batch_id).batch.status == BatchStatus.DONE
            or time.monotonic() > deadline
        ):
            break
    assert run.batches.status(batch_id).batch.status == BatchStatus.DONE
    assert run.counts(batch_id) == {SENT: 300}
    assert BEAT_SCHEDULE["dispatch-marketing-batches"]["task"] == TASK_DISPATCH_BATCHES
