"""Pulling reports and replies (``pullstatus``) from the simulator after real sends.

The simulator queues every report for ``pullstatus`` and, when a callback is set, pushes the
same report too: so one run of sends feeds both paths, and their ledgers must agree.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from tests.fixtures.databases import fresh_sqlite_database
from tests.fixtures.receiver import (
    Receiver,
    gateway_sends,
    new_mobiles,
    record_answer,
    record_sending,
    record_sent,
    report_rows,
)
from tests.fixtures.simulator import APPKEY, SDKAPPID
from worker.config import ConfigError
from worker.ledger.db import make_engine, session_factory
from worker.ledger.migrate import upgrade
from worker.ledger.optouts import is_opted_out
from worker.ledger.schema import SmsMessage
from worker.ledger.status import DELIVERED, SENDING
from worker.services.pull import PULL_PAGE, Puller, drain_pull, pull_accounts
from worker.services.reports import ingest_reports
from worker.simulator.server import SimulatorServer
from worker.tencent import DeliveryReport, PullResult, SmsClient


class Recording:
    """A real client that keeps what it pulled, to feed the same items in again."""

    def __init__(self, client: Puller) -> None:
        self.client = client
        self.reports: list[DeliveryReport] = []

    def pull_status(self, *, replies: bool = False, max_items: int = PULL_PAGE) -> PullResult:
        result = self.client.pull_status(replies=replies, max_items=max_items)
        self.reports += result.reports
        return result


@pytest.fixture
def client(simulator: SimulatorServer) -> Iterator[SmsClient]:
    with SmsClient(SDKAPPID, APPKEY, simulator.url) as client:
        yield client


@pytest.fixture
def other_ledger(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    """A second ledger (SQLite), for the same sends seen through the other path."""
    url = fresh_sqlite_database(tmp_path)
    upgrade(url)
    engine = make_engine(url)
    yield session_factory(engine)
    engine.dispose()


def ledger_state(sessions: sessionmaker[Session]) -> tuple[dict[str, str], set[tuple[object, ...]]]:
    """Each message's state by sid, and the reports by their identifying key and owner's sid."""
    with sessions() as session:
        states = {m.sid or "": m.status for m in session.scalars(select(SmsMessage))}
        owners = {m.id: m.sid for m in session.scalars(select(SmsMessage))}
    reports = {
        (r.sid, r.report_status, r.errmsg, r.user_receive_time, owners.get(r.message_id))
        for r in report_rows(sessions)
    }
    return states, reports


def test_callback_and_pull_end_in_the_same_ledger_state(
    receiver: Receiver,
    other_ledger: sessionmaker[Session],
    simulator: SimulatorServer,
    client: SmsClient,
) -> None:
    # Reports are made (and their outcome drawn) at send time, released an hour later...
    simulator.control.set_reports(delay_seconds=3600, fail_ratio=0.5)
    sids = gateway_sends(simulator, new_mobiles(40))
    for mobile, sid in sids.items():
        record_sent(receiver.sessions, mobile, sid)
        record_sent(other_ledger, mobile, sid)
    # ... or now, once the sends are recorded: pushed to the receiver and queued for pulls.
    simulator.control.set_reports(receiver.callback_url, delay_seconds=0, fail_ratio=0.5)
    assert simulator.control.flush_reports()["pushed"] == 40

    puller = Recording(client)
    summary = drain_pull(other_ledger, puller)

    assert (summary.reports, summary.stored, summary.skipped) == (40, 40, 0)
    pushed, pulled = ledger_state(receiver.sessions), ledger_state(other_ledger)
    assert pushed == pulled
    assert set(pushed[0].values()) == {"delivered", "undelivered"}  # 2**-39 to fail by chance
    assert len(pushed[1]) == 40
    # What was pushed, pulled as well: stored once, nothing moves.
    again = ingest_reports(receiver.sessions, puller.reports, source="pull")
    assert (again.received, again.stored, again.delivered, again.undelivered) == (40, 0, 0, 0)
    assert ledger_state(receiver.sessions) == pushed


def test_pulling_goes_on_while_pages_are_full(
    ledger_engine: Engine, simulator: SimulatorServer, client: SmsClient
) -> None:
    sessions = session_factory(ledger_engine)
    sids = gateway_sends(simulator, new_mobiles(150))
    ids = [record_sent(sessions, mobile, sid) for mobile, sid in sids.items()]
    simulator.control.set_reports(delay_seconds=0)
    simulator.control.flush_reports()

    summary = drain_pull(sessions, client)

    assert (summary.reports, summary.stored, summary.replies) == (150, 150, 0)
    pulls = [r for r in simulator.control.requests() if r.api == "pullstatus"]
    assert len(pulls) == 3  # 100 reports, 50 reports, no replies
    with sessions() as session:
        found = session.scalars(select(SmsMessage.status).where(SmsMessage.id.in_(ids)))
        assert set(found) == {DELIVERED}
    assert drain_pull(sessions, client).reports == 0


def test_the_beat_pull_stores_orphans_and_matches_them_on_a_later_run(
    ledger_engine: Engine, simulator: SimulatorServer, client: SmsClient
) -> None:
    sessions = session_factory(ledger_engine)
    mobiles = new_mobiles(3)
    ids = {mobile: record_sending(sessions, mobile) for mobile in mobiles}
    sids = gateway_sends(simulator, mobiles)
    simulator.control.set_reports(delay_seconds=0)
    simulator.control.flush_reports()
    simulator.control.reply(mobiles[0], "STOP")

    def client_for(account: str) -> Puller:
        if account == "broken":
            raise ConfigError("SMS_CONFIG: accounts.broken has no appkey")
        return client

    first = pull_accounts(sessions, client_for, ["broken", "default"])

    assert list(first) == ["default"]  # the broken account is logged and skipped
    assert (first["default"].reports, first["default"].opted_out) == (3, 1)
    assert {r.message_id for r in report_rows(sessions)} == {None}
    with sessions() as session:
        assert is_opted_out(session, "86", mobiles[0])
        assert set(session.scalars(select(SmsMessage.status))) == {SENDING}
    for mobile, message_id in ids.items():
        record_answer(sessions, message_id, sids[mobile])

    second = pull_accounts(sessions, client_for, ["default"])

    assert second["default"].reports == 0
    assert {r.message_id for r in report_rows(sessions)} == set(ids.values())
    with sessions() as session:
        assert set(session.scalars(select(SmsMessage.status))) == {DELIVERED}
