"""Pause, cancel, opt-outs and quiet hours are checked when each message of a batch is sent.

In-process sends against the simulator on both ledgers (the send's ``sleep`` between two tries
is where a person pauses, cancels, or the clock passes 22:00), and the ``sms-worker batch``
commands in a subprocess on PostgreSQL, where a pause waits for a write-ahead in progress.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from tests.fixtures.databases import empty_ledger_tables
from tests.fixtures.pipeline import child_environment, settings_under
from tests.fixtures.simulator import APPKEY, SDKAPPID, SIGN
from worker.api.batches import Batches
from worker.celery.routing import DISPATCH_EVERY_SECONDS
from worker.config import Settings
from worker.ledger import attempts
from worker.ledger import batches as ledger_batches
from worker.ledger.db import make_engine, session_factory
from worker.ledger.optouts import add_opt_out
from worker.ledger.schema import SmsAttempt, SmsMessage
from worker.ledger.status import CANCELLED, QUEUED, SENT, SUPPRESSED, BatchStatus
from worker.services.dispatch import Dispatcher, dispatch_due_batches
from worker.services.sending.context import SendContext
from worker.services.sending.group import send_chunk
from worker.services.sending.single import send_message
from worker.services.sending.waits import BEIJING, seconds_until_beijing_hour
from worker.simulator.server import SimulatorServer
from worker.tencent import SmsClient

TEMPLATE = 100002
PARAMS = ["张女士", "8"]
SMS_WORKER = str(Path(sys.executable).with_name("sms-worker"))
WAIT_SECONDS = 60.0  # generous: only ever the bound of a condition-based wait


def next_beijing(hour: int, minute: int = 0) -> datetime:
    now = datetime.now(UTC)
    return now + timedelta(seconds=seconds_until_beijing_hour(now, hour) + minute * 60)


def mobiles(count: int, start: int = 0) -> list[str]:
    return [f"138{n:08d}" for n in range(start, start + count)]


class Run:
    """A ledger, the simulator, a dispatcher recording what it hands out, the worker's clock."""

    def __init__(self, settings: Settings, simulator: SimulatorServer) -> None:
        self.settings = settings
        self.simulator = simulator
        self.engine = make_engine(settings.database_url)
        self.sessions: sessionmaker[Session] = session_factory(self.engine)
        self.batches = Batches(settings, self.sessions)
        self.folder = Path.cwd()
        self.now = next_beijing(21, 58)  # two minutes before quiet hours
        self.client = SmsClient(SDKAPPID, APPKEY, simulator.url, clock=lambda: self.now.timestamp())
        simulator.control.set_clock(now=self.now.timestamp())

    def create(self, numbers: Sequence[str], *, shared: bool) -> uuid.UUID:
        if shared:
            rows = ["mobile", *(f"+86{m}" for m in numbers)]
        else:  # each row its own params: each number goes as a single send
            rows = [
                "mobile,param1,param2",
                *(f"+86{m},客户{i},{i % 9 + 1}" for i, m in enumerate(numbers)),
            ]
        report = self.batches.create(
            rows, template=TEMPLATE, sign=SIGN, params=PARAMS if shared else None,
            start_at=self.now - timedelta(minutes=1), window_end_at=self.now + timedelta(days=2),
        )  # fmt: skip
        assert report.rejected == 0, report.first_rejections
        return report.batch_id

    def hand_out(self) -> tuple[list[tuple[list[uuid.UUID], str]], list[uuid.UUID]]:
        """One dispatcher tick: the chunks and the single sends it published."""
        chunks: list[tuple[list[uuid.UUID], str]] = []
        singles: list[uuid.UUID] = []
        dispatcher = Dispatcher(
            self.sessions, self.settings, lambda ids, owner: chunks.append((list(ids), owner)),
            lambda message_id, kind: singles.append(message_id), "test", DISPATCH_EVERY_SECONDS,
        )  # fmt: skip
        dispatch_due_batches(dispatcher, self.now)
        return chunks, singles

    def context(self, between_tries: Callable[[], None] = lambda: None) -> SendContext:
        return SendContext(
            self.sessions, self.settings, lambda account: self.client, None, "test",
            now=lambda: self.now, sleep=lambda seconds: between_tries(),
        )  # fmt: skip

    def send_all(
        self, between_tries: Callable[[], None] = lambda: None, *, last: uuid.UUID | None = None
    ) -> None:
        """Hand out what is due and send it, alone or in groups, as the workers would; the
        single send of ``last`` after the others."""
        chunks, singles = self.hand_out()
        for ids, owner in chunks:
            send_chunk(ids, owner, self.context(between_tries))
        for message_id in sorted(singles, key=lambda message_id: message_id == last):
            send_message(message_id, self.context(between_tries))

    def messages(self, batch_id: uuid.UUID) -> dict[str, SmsMessage]:
        with self.sessions() as session:
            found = session.scalars(select(SmsMessage).where(SmsMessage.batch_id == batch_id))
            return {message.mobile: message for message in found}

    def requested(self) -> list[str]:
        """Every number the gateway was asked for, in order, once per request."""
        return [n for r in self.simulator.control.requests() for n in r.numbers]


@pytest.fixture
def run(ledger_url: str, simulator: SimulatorServer) -> Iterator[Run]:
    settings = settings_under(
        {"SMS_DATABASE_URL": ledger_url, "SMS_SDKAPPID": SDKAPPID, "SMS_APPKEY": APPKEY,
         "SMS_GATEWAY_URL": simulator.url}
    )  # fmt: skip
    current = Run(settings, simulator)
    yield current
    current.client.close()
    current.engine.dispose()


@pytest.mark.parametrize("shared", [True, False], ids=["group", "single"])
@pytest.mark.parametrize("event", ["pause", "cancel", "opt-out", "22:00"])
def test_what_happens_between_two_tries_is_checked_before_the_second_request(
    run: Run, shared: bool, event: str
) -> None:
    numbers = mobiles(3, 100 if shared else 200)
    retried = numbers[1]
    run.simulator.control.script(retried, [1008])  # transient: the task tries it again
    batch_id = run.create(numbers, shared=shared)

    def between_tries() -> None:
        if event == "pause":
            assert run.batches.pause(batch_id)
        elif event == "cancel":
            assert run.batches.cancel(batch_id) == 0  # nothing queued: all were handed out
        elif event == "opt-out":
            with run.sessions() as session:
                add_opt_out(session, "86", retried, source="reply", reason="TD")
                session.commit()
        else:
            run.now += timedelta(minutes=2, seconds=30)  # 22:00:30 Beijing time

    run.send_all(between_tries, last=run.messages(batch_id)[retried].id)

    # The retried number was asked for once, before the event; never after it.
    assert sorted(run.requested()) == sorted(f"+86{m}" for m in numbers)
    message = run.messages(batch_id)[retried]
    expected = {"pause": QUEUED, "cancel": CANCELLED, "opt-out": SUPPRESSED, "22:00": QUEUED}
    assert message.status == expected[event]
    if event == "22:00":  # it waits for 08:00 Beijing time, the next morning
        assert message.not_before is not None
        opens = message.not_before.astimezone(BEIJING)
        assert (opens.hour, opens.minute, opens.second) == (8, 0, 0)
        assert timedelta(hours=9) < message.not_before - run.now < timedelta(hours=10)
    else:  # no wait of its own
        assert message.not_before is None or message.not_before <= run.now
    assert (message.lease_owner, message.lease_until) == (None, None)
    assert [a.outcome for a in attempts_of(run, message.id)] == ["transient"]

    if event == "pause":  # resume: it goes out once, and nothing else goes again
        assert run.batches.resume(batch_id)
        run.send_all()
        assert sorted(run.requested()) == sorted([*(f"+86{m}" for m in numbers), f"+86{retried}"])
        assert {m.status for m in run.messages(batch_id).values()} == {SENT}
        inbox = sorted(m.mobile for m in run.simulator.control.inbox())
        assert inbox == sorted(numbers)


def attempts_of(run: Run, message_id: uuid.UUID) -> list[SmsAttempt]:
    with run.sessions() as session:
        return attempts.attempts_for(session, message_id)


@pytest.mark.parametrize("stop", ["pause", "cancel"])
def test_single_sends_handed_out_before_a_pause_or_cancel_make_no_request(
    run: Run, stop: str
) -> None:
    batch_id = run.create(mobiles(4, 300), shared=False)
    chunks, singles = run.hand_out()
    assert (chunks, len(singles)) == ([], 4)
    if stop == "pause":
        assert run.batches.pause(batch_id)
    else:
        assert run.batches.cancel(batch_id) is not None
    for message_id in singles:  # their tasks run after the command returned
        send_message(message_id, run.context())
    assert run.requested() == []
    states = {m.status for m in run.messages(batch_id).values()}
    assert states == ({QUEUED} if stop == "pause" else {CANCELLED})
    if stop == "pause":
        assert run.batches.resume(batch_id)
        run.send_all()
        assert sorted(run.requested()) == sorted(f"+86{m}" for m in mobiles(4, 300))


# --- the commands, in a subprocess, on PostgreSQL ---------------------------------------------


@pytest.fixture
def pg(ledger_postgresql_url: str, simulator: SimulatorServer, tmp_path: Path) -> Iterator[Run]:
    empty_ledger_tables(ledger_postgresql_url)
    settings = settings_under(
        {"SMS_DATABASE_URL": ledger_postgresql_url, "SMS_SDKAPPID": SDKAPPID,
         "SMS_APPKEY": APPKEY, "SMS_GATEWAY_URL": simulator.url}
    )  # fmt: skip
    current = Run(settings, simulator)
    current.folder = tmp_path  # the commands' working folder: no .env there
    yield current
    current.client.close()
    current.engine.dispose()


def sms_worker(run: Run, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SMS_WORKER, "batch", *args], env=cli_environment(run), cwd=run.folder,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def cli_environment(run: Run) -> dict[str, str]:
    return child_environment(
        {"SMS_DATABASE_URL": run.settings.database_url, "SMS_SDKAPPID": SDKAPPID,
         "SMS_APPKEY": APPKEY}
    )  # fmt: skip


def test_pausing_or_cancelling_twice_is_not_an_error(pg: Run) -> None:
    batch_id = str(pg.create(mobiles(3, 400), shared=True))

    first, second = sms_worker(pg, "pause", batch_id), sms_worker(pg, "pause", batch_id[:8])
    assert (first.returncode, second.returncode) == (0, 0), first.stderr + second.stderr
    assert f"paused batch {batch_id}" in first.stdout
    assert f"batch {batch_id} was already paused" in second.stdout
    assert pg.batches.find(batch_id).status == BatchStatus.PAUSED

    resumed, again = sms_worker(pg, "resume", batch_id), sms_worker(pg, "resume", batch_id)
    assert (resumed.returncode, again.returncode) == (0, 0), resumed.stderr + again.stderr
    assert "not paused" in again.stdout

    first, second = sms_worker(pg, "cancel", batch_id), sms_worker(pg, "cancel", batch_id)
    assert (first.returncode, second.returncode) == (0, 0), first.stderr + second.stderr
    assert f"cancelled batch {batch_id}: 3 queued message(s)" in first.stdout
    assert f"batch {batch_id} was already cancelled" in second.stdout

    # A cancelled batch neither pauses nor resumes: said plainly, exit status 2.
    for command in ("pause", "resume"):
        refused = sms_worker(pg, command, batch_id)
        assert refused.returncode == 2, refused.stdout
        assert f"batch {batch_id} is cancelled" in refused.stderr
        assert "Traceback" not in refused.stderr


def test_a_done_batch_is_not_paused_nor_cancelled(pg: Run) -> None:
    batch_id = pg.create(mobiles(2, 500), shared=True)
    pg.send_all()
    pg.hand_out()  # the tick after the last send marks the batch done
    assert pg.batches.find(str(batch_id)).status == BatchStatus.DONE
    for command in ("pause", "cancel"):
        refused = sms_worker(pg, command, str(batch_id))
        assert refused.returncode == 2, refused.stdout
        assert f"batch {batch_id} is done" in refused.stderr


def test_pause_help_states_the_guarantee(pg: Run) -> None:
    shown = sms_worker(pg, "pause", "--help")
    assert shown.returncode == 0, shown.stderr
    assert (
        " ".join(shown.stdout.split()).count(
            "after this returns, no further message of the batch is requested from the gateway; "
            "requests already in the air finish"
        )
        == 1
    )


@pytest.mark.parametrize(
    ("command", "state", "said", "then"),
    [
        ("pause", BatchStatus.PAUSED, "paused batch", QUEUED),
        ("cancel", BatchStatus.CANCELLED, "cancelled batch", CANCELLED),
    ],
)
def test_pause_and_cancel_return_only_after_a_write_ahead_in_progress_and_later_ones_see_it(
    pg: Run, command: str, state: str, said: str, then: str
) -> None:
    batch_id = pg.create(mobiles(2, 600), shared=True)
    ((ids, owner),) = pg.hand_out()[0]
    first, second = ids
    # A worker is writing the attempt of a request ahead: it has read the batch as sending.
    with pg.sessions() as writing:
        assert ledger_batches.state_for_sending(writing, batch_id) == BatchStatus.SENDING
        pausing = subprocess.Popen(
            [SMS_WORKER, "batch", command, str(batch_id)], env=cli_environment(pg), cwd=pg.folder,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            wait_for_lock_wait(pg, "UPDATE sms_batches")
            assert pausing.poll() is None, f"{command} returned while a write-ahead was in progress"
            attempts.begin_attempts(
                writing, attempts=[(first, 1)], request_id=uuid.uuid4(), api="sendmultisms2",
                random=1, signed_time=int(pg.now.timestamp()), worker="test", started_at=pg.now,
                owner=owner,
            )  # fmt: skip
            writing.commit()  # that request is "in the air": it was written before the command
            out, err = pausing.communicate(timeout=WAIT_SECONDS)
        finally:
            if pausing.poll() is None:
                pausing.kill()
                pausing.wait()
    assert pausing.returncode == 0, err
    assert said in out
    # The next write-ahead of the batch reads the new state.
    with pg.sessions() as later:
        assert ledger_batches.state_for_sending(later, batch_id) == state
    moved = send_chunk([second], owner, pg.context())
    assert moved.moved == {then: 1} and pg.requested() == []


def wait_for_lock_wait(run: Run, statement: str) -> None:
    """Until a backend of this database waits for a lock while running ``statement``."""
    query = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock' AND query LIKE :statement"
    )
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        with run.sessions() as session:
            if session.scalar(query, {"statement": f"{statement}%"}):
                return
        time.sleep(0.05)
    raise AssertionError(f"no backend waited on a lock running {statement!r}")
