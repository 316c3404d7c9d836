"""Sending a batch chunk in-process against the simulator: per-number answers and send-time checks.

Real databases (PostgreSQL and SQLite) and the simulator over loopback; the dispatcher's tasks
are recorded and run here, with the worker's clock chosen, so every case is exact.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.fixtures.pipeline import settings_under
from tests.fixtures.simulator import APPKEY, SDKAPPID, SIGN
from worker.api.batches import Batches
from worker.celery.routing import DISPATCH_EVERY_SECONDS
from worker.config import Settings
from worker.ledger import attempts
from worker.ledger.db import make_engine, session_factory
from worker.ledger.optouts import add_opt_out
from worker.ledger.schema import SmsAttempt, SmsMessage
from worker.ledger.status import CANCELLED, FAILED, QUEUED, SENT, SUPPRESSED, UNKNOWN
from worker.services.dispatch import Dispatcher, dispatch_due_batches
from worker.services.sending.context import SendContext
from worker.services.sending.group import send_chunk
from worker.services.sending.waits import BEIJING, seconds_until_beijing_hour
from worker.simulator.server import SimulatorServer
from worker.tencent import SmsClient

TEMPLATE = 100002
PARAMS = ["张女士", "8"]


class Run:
    """A ledger, the simulator, a dispatcher recording its chunks, and a worker's clock."""

    def __init__(self, settings: Settings, simulator: SimulatorServer) -> None:
        self.settings = settings
        self.simulator = simulator
        self.engine = make_engine(settings.database_url)
        self.sessions: sessionmaker[Session] = session_factory(engine=self.engine)
        self.batches = Batches(settings, self.sessions)
        self.chunks: list[tuple[list[uuid.UUID], str]] = []
        self.now = next_beijing(10)
        self.client = SmsClient(SDKAPPID, APPKEY, simulator.url, clock=lambda: self.now.timestamp())

    def set_clocks(self, worker: datetime, gateway: datetime | None = None) -> None:
        self.now = worker
        self.simulator.control.set_clock(now=(gateway or worker).timestamp())

    def create(self, mobiles: Sequence[str]) -> uuid.UUID:
        report = self.batches.create(
            ["mobile", *mobiles], template=TEMPLATE, sign=SIGN, params=PARAMS,
            start_at=self.now - timedelta(minutes=1), window_end_at=self.now + timedelta(days=2),
        )  # fmt: skip
        return report.batch_id

    def tick(self) -> list[tuple[list[uuid.UUID], str]]:
        self.chunks = []
        dispatcher = Dispatcher(
            self.sessions, self.settings, lambda ids, owner: self.chunks.append((list(ids), owner)),
            lambda message_id, kind: None, "test", DISPATCH_EVERY_SECONDS,
        )  # fmt: skip
        dispatch_due_batches(dispatcher, self.now)
        return self.chunks

    def send(self, chunk: tuple[list[uuid.UUID], str]) -> dict[str, int]:
        context = SendContext(
            self.sessions, self.settings, lambda account: self.client, None, "test",
            now=lambda: self.now, sleep=lambda seconds: None,
        )  # fmt: skip
        return send_chunk(chunk[0], chunk[1], context).moved

    def messages(self, batch_id: uuid.UUID) -> dict[str, SmsMessage]:
        with self.sessions() as session:
            found = session.scalars(select(SmsMessage).where(SmsMessage.batch_id == batch_id))
            return {message.mobile: message for message in found}

    def batch_of(self, chunk: tuple[list[uuid.UUID], str]) -> uuid.UUID:
        with self.sessions() as session:
            found = session.get(SmsMessage, chunk[0][0])
            assert found is not None and found.batch_id is not None
            return found.batch_id

    def attempts(self, message_id: uuid.UUID) -> list[SmsAttempt]:
        with self.sessions() as session:
            return attempts.attempts_for(session, message_id)


def next_beijing(hour: int, minute: int = 0) -> datetime:
    now = datetime.now(UTC)
    return now + timedelta(seconds=seconds_until_beijing_hour(now, hour) + minute * 60)


def mobiles(count: int, start: int = 0) -> list[str]:
    return [f"137{n:08d}" for n in range(start, start + count)]


@pytest.fixture
def run(ledger_url: str, simulator: SimulatorServer) -> Iterator[Run]:
    settings = settings_under(
        {"SMS_DATABASE_URL": ledger_url, "SMS_SDKAPPID": SDKAPPID, "SMS_APPKEY": APPKEY,
         "SMS_GATEWAY_URL": simulator.url}
    )  # fmt: skip
    current = Run(settings, simulator)
    current.set_clocks(current.now)
    yield current
    current.client.close()
    current.engine.dispose()


def test_each_number_gets_its_own_answer_from_the_group_request(run: Run) -> None:
    numbers = mobiles(250)
    refused, invalid, retried, blacklisted = numbers[3], numbers[77], numbers[150], numbers[240]
    control = run.simulator.control
    control.script(refused, [1015])
    control.script(invalid, [1016])
    control.script(retried, [1008])  # transient: tried again in the task, then delivered
    control.set_limits(blacklist=[blacklisted])
    batch_id = run.create([f"+86{m}" for m in numbers])

    chunks = run.tick()
    assert [len(ids) for ids, _ in chunks] == [200, 50]
    moved = Counter[str]()
    for chunk in chunks:
        moved.update(run.send(chunk))
    assert moved == {SENT: 247, FAILED: 3}

    requests = control.requests()
    assert [(r.api, len(r.numbers)) for r in requests] == [
        ("sendmultisms2", 200), ("sendmultisms2", 1), ("sendmultisms2", 50),
    ]  # fmt: skip
    answers = {(r.random, n.mobile): n for r in requests for n in r.results}
    messages = run.messages(batch_id)
    failed = {m.mobile: m.result for m in messages.values() if m.status == FAILED}
    assert failed == {refused: 1015, invalid: 1016, blacklisted: 1015}
    request_ids: dict[int, set[uuid.UUID]] = {}
    for mobile, message in messages.items():
        tries = run.attempts(message.id)
        for attempt in tries:
            request_ids.setdefault(attempt.random, set()).add(attempt.request_id)
            answer = answers[str(attempt.random), mobile]
            assert (attempt.result, attempt.api) == (answer.result, "sendmultisms2")
        last = tries[-1]
        if message.status == SENT:
            # Its own detail entry: its own sid and fee, on the attempt and on the message.
            assert (message.sid, message.fee) == (last.sid, last.fee)
            assert answers[str(last.random), mobile].sid == message.sid != ""
            assert last.outcome == "ok" and message.fee == 1
        else:
            assert (last.outcome, last.sid, last.fee) == ("rejected", None, None)
        assert len(tries) == (2 if mobile == retried else 1)
    assert [a.outcome for a in run.attempts(messages[retried].id)] == ["transient", "ok"]
    # One request, one request_id shared by its numbers.
    assert all(len(ids) == 1 for ids in request_ids.values())
    assert len({i for ids in request_ids.values() for i in ids}) == 3
    assert sorted(m.mobile for m in control.inbox()) == sorted(
        m for m, message in messages.items() if message.status == SENT
    )


def test_cancel_pause_and_opt_outs_are_checked_again_at_send_time(run: Run) -> None:
    cancelled = run.create([f"+86{m}" for m in mobiles(5)])
    paused = run.create([f"+86{m}" for m in mobiles(5, 100)])
    opted = run.create([f"+86{m}" for m in mobiles(5, 200)])
    by_batch = {run.batch_of(chunk): chunk for chunk in run.tick()}
    assert sorted(by_batch) == sorted([cancelled, paused, opted])

    run.batches.cancel(cancelled)
    run.batches.pause(paused)
    with run.sessions() as session:
        add_opt_out(session, "86", mobiles(1, 202)[0], source="reply", reason="TD")
        session.commit()
    assert run.send(by_batch[cancelled]) == {CANCELLED: 5}
    assert run.send(by_batch[paused]) == {QUEUED: 5}
    assert run.send(by_batch[opted]) == {SUPPRESSED: 1, SENT: 4}
    assert [len(r.numbers) for r in run.simulator.control.requests()] == [4]

    assert Counter(m.status for m in run.messages(cancelled).values()) == {CANCELLED: 5}
    assert all(m.reason for m in run.messages(cancelled).values())
    assert run.messages(opted)[mobiles(1, 202)[0]].status == SUPPRESSED
    # The paused batch's messages are back in the queue, with their delivery handed back.
    assert all(
        (m.status, m.lease_owner, m.delivery_count) == (QUEUED, None, 0)
        for m in run.messages(paused).values()
    )
    run.batches.resume(paused)
    (again,) = run.tick()
    assert sorted(again[0]) == sorted(m.id for m in run.messages(paused).values())


def test_quiet_hours_and_1029_wait_for_eight_in_the_morning(run: Run) -> None:
    evening = next_beijing(21, 59)
    run.set_clocks(evening)
    early = run.create([f"+86{m}" for m in mobiles(3)])
    late = run.create([f"+86{m}" for m in mobiles(3, 100)])
    chunks = run.tick()  # 21:59: still within the hours
    assert len(chunks) == 2
    opens = (evening + timedelta(hours=11)).astimezone(BEIJING).replace(minute=0)
    assert opens.hour == 8

    # The worker's clock says 22:00:10 when the task runs: nothing is sent.
    first, second = sorted(chunks, key=lambda chunk: run.batch_of(chunk) != early)
    run.set_clocks(evening + timedelta(seconds=70))
    assert run.send(first) == {QUEUED: 3}
    assert run.simulator.control.requests() == []

    # The worker still thinks 21:59:50, the gateway already says 22:00:10: it answers 1029.
    run.set_clocks(evening + timedelta(seconds=50), gateway=evening + timedelta(seconds=70))
    assert run.send(second) == {QUEUED: 3}
    (request,) = run.simulator.control.requests()
    assert request.result == 1029 and run.simulator.control.inbox() == []

    for batch_id in (early, late):
        for message in run.messages(batch_id).values():
            assert message.status == QUEUED
            assert message.not_before is not None
            assert abs((message.not_before - opens).total_seconds()) < 1
    outcomes = [a.outcome for m in run.messages(late).values() for a in run.attempts(m.id)]
    assert outcomes == ["throttled"] * 3

    run.set_clocks(opens - timedelta(minutes=5))
    assert run.tick() == []
    run.set_clocks(opens + timedelta(seconds=5))
    moved = Counter[str]()
    for chunk in run.tick():
        moved.update(run.send(chunk))
    assert moved == {SENT: 6}


def test_a_chunk_whose_worker_died_mid_request_is_not_sent_again(run: Run) -> None:
    batch_id = run.create([f"+86{m}" for m in mobiles(4)])
    ((ids, owner),) = run.tick()
    # The worker wrote its attempts, sent the request, and died before recording the answer.
    with run.sessions() as session:
        attempts.begin_attempts(
            session, attempts=[(i, 1) for i in ids], request_id=uuid.uuid4(), api="sendmultisms2",
            random=1, signed_time=int(run.now.timestamp()), worker="dead", started_at=run.now,
        )  # fmt: skip
        session.commit()

    run.set_clocks(run.now + timedelta(seconds=run.settings.lease_seconds + 1))
    ((again, new_owner),) = run.tick()  # its lease ran out: handed out again
    assert sorted(again) == sorted(ids) and new_owner != owner
    assert run.send((ids, owner)) == {}  # the dead worker's task, delivered late: not its own
    assert run.send((again, new_owner)) == {UNKNOWN: 4}
    assert run.simulator.control.requests() == []
    for message in run.messages(batch_id).values():
        assert [a.outcome for a in run.attempts(message.id)] == ["ambiguous"]
    assert run.tick() == []
    assert run.batches.status(batch_id).batch.status == "done"


def test_a_cancelled_batch_settles_a_chunk_lost_in_a_crash(run: Run) -> None:
    batch_id = run.create([f"+86{m}" for m in mobiles(4)])
    ((ids, _owner),) = run.tick()
    # Two of its numbers were in a request when the worker died; then the batch was cancelled.
    with run.sessions() as session:
        attempts.begin_attempts(
            session, attempts=[(i, 1) for i in ids[:2]], request_id=uuid.uuid4(),
            api="sendmultisms2", random=1, signed_time=int(run.now.timestamp()), worker="dead",
            started_at=run.now,
        )  # fmt: skip
        session.commit()
    assert run.batches.cancel(batch_id) == 0  # nothing queued: all four are claimed

    run.set_clocks(run.now + timedelta(seconds=run.settings.lease_seconds + 1))
    (stranded,) = run.tick()
    assert sorted(stranded[0]) == sorted(ids)
    assert run.send(stranded) == {UNKNOWN: 2, CANCELLED: 2}
    assert run.simulator.control.requests() == []
    statuses = {m.id: m.status for m in run.messages(batch_id).values()}
    assert [statuses[i] for i in ids] == [UNKNOWN, UNKNOWN, CANCELLED, CANCELLED]
    assert run.tick() == []
