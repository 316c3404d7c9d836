"""The batch dispatcher on real databases (PostgreSQL and SQLite), its tasks recorded, not run.

Beat's ticks are called in-process with chosen times, so quiet hours and leases are exact.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from worker.api.batches import Batches
from worker.celery.routing import DISPATCH_EVERY_SECONDS
from worker.config import Settings
from worker.ledger.schema import SmsMessage
from worker.ledger.status import CANCELLED, EXPIRED, QUEUED, BatchStatus
from worker.services.dispatch import Dispatcher, dispatch_due_batches
from worker.services.sending.waits import seconds_until_beijing_hour
from worker.tencent.types import MAX_GROUP_SIZE

TEMPLATE = 100002
RATE = 50.0  # the default SMS_SEND_RATE: 250 messages a 5 s tick


@dataclass
class Published:
    """What a dispatcher handed out: chunk tasks and single-send tasks."""

    chunks: list[tuple[list[uuid.UUID], str]] = field(default_factory=list)
    singles: list[uuid.UUID] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def chunk(self, ids: Sequence[uuid.UUID], owner: str) -> None:
        with self.lock:
            self.chunks.append((list(ids), owner))

    def single(self, message_id: uuid.UUID, kind: str) -> None:
        with self.lock:
            self.singles.append(message_id)

    @property
    def ids(self) -> list[uuid.UUID]:
        return [i for ids, _ in self.chunks for i in ids] + self.singles


def at_beijing_hour(hour: int) -> datetime:
    """The next ``hour``:00 Beijing time (a batch created now is running by then)."""
    now = datetime.now(UTC)
    return now + timedelta(seconds=seconds_until_beijing_hour(now, hour))


def dispatcher(
    settings: Settings,
    sessions: sessionmaker[Session],
    published: Published,
    every_seconds: float = DISPATCH_EVERY_SECONDS,
) -> Dispatcher:
    return Dispatcher(sessions, settings, published.chunk, published.single, "test", every_seconds)


def numbers(count: int, start: int = 0) -> list[str]:
    return [f"+86137{n:08d}" for n in range(start, start + count)]


def statuses(sessions: sessionmaker[Session], batch_id: uuid.UUID) -> Counter[str]:
    with sessions() as session:
        rows = session.scalars(select(SmsMessage.status).where(SmsMessage.batch_id == batch_id))
        return Counter(rows)


def test_two_dispatchers_ticking_at_once_hand_out_each_message_once(
    settings: Settings, sessions: sessionmaker[Session], batches: Batches
) -> None:
    created = []
    for index in range(3):
        lines = ["mobile,param1,param2", *(f"{n},张,{index}" for n in numbers(300, index * 300))]
        created.append(batches.create(lines, template=TEMPLATE).batch_id)
    # Per-recipient params of its own for each number: single sends.
    unique = ["mobile,param1,param2", *(f"{n},李,{i}" for i, n in enumerate(numbers(40, 900)))]
    created.append(batches.create(unique, template=TEMPLATE).batch_id)

    now = at_beijing_hour(10)
    records = [Published(), Published()]
    barrier = threading.Barrier(2)
    failures: list[BaseException] = []

    def tick(published: Published) -> None:
        try:
            barrier.wait(timeout=10)
            # A long tick: the rate allows every message at once.
            dispatch_due_batches(dispatcher(settings, sessions, published, every_seconds=60), now)
        except BaseException as failure:
            failures.append(failure)

    threads = [threading.Thread(target=tick, args=(published,)) for published in records]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures and not any(thread.is_alive() for thread in threads)

    handed_out = records[0].ids + records[1].ids
    assert len(handed_out) == len(set(handed_out)) == 940
    assert len(records[0].singles) + len(records[1].singles) == 40
    again = Published()
    dispatch_due_batches(dispatcher(settings, sessions, again, every_seconds=60), now)
    assert again.ids == []  # everything is in flight under a lease


def test_a_tick_hands_out_what_the_rate_sends_until_the_next_and_lost_chunks_go_again(
    settings: Settings, sessions: sessionmaker[Session], batches: Batches
) -> None:
    batch_id = batches.create(
        ["mobile", *numbers(700)], template=TEMPLATE, params=["a", "8"]
    ).batch_id
    now = at_beijing_hour(10)
    first = Published()
    report = dispatch_due_batches(dispatcher(settings, sessions, first), now)
    assert report.messages == len(first.ids) == RATE * 5
    assert [len(ids) for ids, _ in first.chunks] == [MAX_GROUP_SIZE, 50]
    assert len({owner for _, owner in first.chunks}) == 2
    assert batches.status(batch_id).batch.status == BatchStatus.SENDING

    # Still in flight: the next tick adds nothing.
    second = Published()
    dispatch_due_batches(dispatcher(settings, sessions, second), now + timedelta(seconds=5))
    assert second.ids == []

    # Their task never ran (a lost publish, a dead worker): once the lease has run out they go
    # again, under new owners, before anything new.
    later = now + timedelta(seconds=settings.lease_seconds + 1)
    third = Published()
    dispatch_due_batches(dispatcher(settings, sessions, third), later)
    assert sorted(third.ids) == sorted(first.ids)
    assert not {owner for _, owner in third.chunks} & {owner for _, owner in first.chunks}


def test_equal_params_share_a_group_and_numbers_abroad_go_apart(
    settings: Settings, sessions: sessionmaker[Session], batches: Batches
) -> None:
    rows = [
        *(f"{n},张,1" for n in numbers(5)),
        *(f"{n},王,2" for n in numbers(3, 5)),
        "+447911123456,张,1",
        "+447911123457,张,1",
        "+8613800000001,赵,3",
        "+8613800000002,钱,4",
    ]
    batch_id = batches.create(["mobile,param1,param2", *rows], template=TEMPLATE).batch_id
    published = Published()
    dispatch_due_batches(dispatcher(settings, sessions, published), at_beijing_hour(10))

    with sessions() as session:
        found = session.scalars(select(SmsMessage).where(SmsMessage.batch_id == batch_id))
        by_id = {m.id: m for m in found}
    groups = sorted(
        sorted((by_id[i].nationcode, *by_id[i].params) for i in ids) for ids, _ in published.chunks
    )
    assert groups == [
        [("44", "张", "1")] * 2,
        [("86", "张", "1")] * 5,
        [("86", "王", "2")] * 3,
    ]
    assert sorted(by_id[i].mobile for i in published.singles) == ["13800000001", "13800000002"]
    # Chunks are claimed (sending, under their lease); singles stay queued for their task.
    assert statuses(sessions, batch_id) == {"sending": 10, QUEUED: 2}


def test_quiet_hours_pause_resume_cancel_and_the_end_of_the_window(
    settings: Settings, sessions: sessionmaker[Session], batches: Batches
) -> None:
    start = datetime.now(UTC)
    ends = at_beijing_hour(12) + timedelta(days=1)
    batch_id = batches.create(
        ["mobile", *numbers(300)], template=TEMPLATE, params=["a", "8"], start_at=start,
        window_end_at=ends,
    ).batch_id  # fmt: skip
    later = batches.create(
        ["mobile", *numbers(10, 300)], template=TEMPLATE, params=["a", "8"],
        start_at=ends - timedelta(hours=1), window_end_at=ends,
    ).batch_id  # fmt: skip

    def tick(now: datetime) -> Published:
        published = Published()
        dispatch_due_batches(dispatcher(settings, sessions, published), now)
        return published

    assert tick(at_beijing_hour(23)).ids == []  # quiet hours
    assert tick(at_beijing_hour(7) + timedelta(minutes=59)).ids == []
    assert batches.pause(batch_id)
    assert tick(at_beijing_hour(10)).ids == []  # paused
    assert batches.status(batch_id).batch.status == "paused"
    assert batches.resume(batch_id)
    assert batches.status(batch_id).batch.status == BatchStatus.SCHEDULED  # nothing went out before
    opened = at_beijing_hour(8)
    handed_out = tick(opened).ids
    assert len(handed_out) == 250  # the later batch has not started yet
    assert batches.status(later).batch.status == BatchStatus.SCHEDULED

    # Cancelled: its queued messages at once; the 250 claimed are their chunks' business.
    assert batches.cancel(batch_id) == 50
    assert statuses(sessions, batch_id) == {"sending": 250, CANCELLED: 50}
    assert batches.cancel(batch_id) is None
    assert not batches.pause(batch_id) and not batches.resume(batch_id)

    # Past its window a batch's queued messages expire, and it is done.
    past_window = ends + timedelta(minutes=1)
    report = dispatch_due_batches(dispatcher(settings, sessions, Published()), past_window)
    assert report.finished == [later]
    assert statuses(sessions, later) == {EXPIRED: 10}
    assert batches.status(later).batch.status == BatchStatus.DONE
