"""Paused accounts on PostgreSQL and SQLite: pause and resume, and their messages staying queued."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, inspect
from sqlalchemy.orm import Session

from worker.ledger import accounts, messages, moves, status
from worker.ledger.db import make_engine, session_factory
from worker.ledger.migrate import current, downgrade, upgrade
from worker.ledger.schema import SmsMessage

NOW = datetime(2024, 11, 24, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(hours=3)


def add(session: Session, **overrides: Any) -> SmsMessage:
    fields = {
        "account": "shop",
        "kind": status.NOTIFICATION,
        "nationcode": "86",
        "mobile": "13788888888",
        "tpl_id": 7839,
        "params": ["1234"],
        **overrides,
    }
    message, created = messages.insert_message(session, **fields)
    assert created
    session.commit()
    return message


def pause(
    session: Session,
    name: str = "shop",
    *,
    code: int | None = 1031,
    reason: str = "prepaid package exhausted",
    now: datetime = NOW,
) -> bool:
    paused = accounts.pause_account(session, name, code=code, reason=reason, now=now)
    session.commit()
    return paused


def resume(session: Session, name: str = "shop", now: datetime = LATER) -> bool:
    resumed = accounts.resume_account(session, name, now)
    session.commit()
    return resumed


class TestPauseAndResume:
    def test_pause_records_why_and_since_when(self, ledger_session: Session) -> None:
        assert not accounts.is_paused(ledger_session, "shop")
        assert accounts.paused_accounts(ledger_session) == {}
        assert pause(ledger_session, code=1031, reason="prepaid package exhausted")
        ledger_session.expire_all()
        assert accounts.is_paused(ledger_session, "shop")
        assert not accounts.is_paused(ledger_session, "bank")
        paused = accounts.paused_accounts(ledger_session)
        assert list(paused) == ["shop"]
        shop = paused["shop"]
        assert (shop.paused_code, shop.paused_reason) == (1031, "prepaid package exhausted")
        assert shop.paused_at == NOW and shop.paused_at.tzinfo is UTC
        assert shop.resumed_at is None

    def test_a_second_pause_keeps_the_first(self, ledger_session: Session) -> None:
        assert pause(ledger_session, code=1031, reason="package")
        assert not pause(ledger_session, code=1033, reason="arrears", now=LATER)
        ledger_session.expire_all()
        shop = accounts.paused_accounts(ledger_session)["shop"]
        assert (shop.paused_code, shop.paused_reason, shop.paused_at) == (1031, "package", NOW)

    def test_resume_and_pause_again(self, ledger_session: Session) -> None:
        assert not resume(ledger_session)  # never paused
        assert pause(ledger_session)
        assert resume(ledger_session)
        assert not resume(ledger_session)  # already resumed
        ledger_session.expire_all()
        assert not accounts.is_paused(ledger_session, "shop")
        assert accounts.paused_accounts(ledger_session) == {}
        assert pause(ledger_session, code=None, reason="by hand", now=LATER + timedelta(hours=1))
        ledger_session.expire_all()
        shop = accounts.paused_accounts(ledger_session)["shop"]
        assert (shop.paused_code, shop.paused_reason) == (None, "by hand")
        assert shop.paused_at == LATER + timedelta(hours=1)
        assert shop.resumed_at == LATER

    def test_nothing_is_committed_by_the_caller_s_rollback(self, ledger_session: Session) -> None:
        assert accounts.pause_account(ledger_session, "shop", code=1033, reason="x", now=NOW)
        ledger_session.rollback()
        assert not accounts.is_paused(ledger_session, "shop")

    def test_many_workers_pausing_at_once_record_one_pause(self, ledger_engine: Engine) -> None:
        count = 6
        barrier = threading.Barrier(count, timeout=30)
        results: list[bool] = []
        errors: list[BaseException] = []

        def run(index: int) -> None:
            with session_factory(ledger_engine)() as session:
                try:
                    barrier.wait()
                    results.append(pause(session, code=1031, reason=f"worker {index}"))
                except BaseException as error:
                    errors.append(error)

        threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in threads)
        assert not errors, errors
        assert sorted(results) == [False] * (count - 1) + [True]


class TestPausedMessagesWait:
    def test_a_paused_account_s_messages_are_not_claimed(self, ledger_session: Session) -> None:
        waiting = add(ledger_session)
        other = add(ledger_session, account="bank")
        assert pause(ledger_session)
        assert moves.claim_message(ledger_session, waiting.id, "w1", 60, NOW) is None
        assert moves.claim_message(ledger_session, other.id, "w1", 60, NOW) is not None
        ledger_session.expire_all()
        stored = messages.get_message(ledger_session, waiting.id)
        assert stored is not None
        assert (stored.status, stored.delivery_count) == (status.QUEUED, 0)

        assert resume(ledger_session)
        claimed = moves.claim_message(ledger_session, waiting.id, "w1", 60, LATER)
        assert claimed is not None and claimed.status == status.SENDING

    def test_an_expired_lease_is_not_taken_over_while_paused(self, ledger_session: Session) -> None:
        message = add(ledger_session)
        assert moves.claim_message(ledger_session, message.id, "w1", 60, NOW)
        assert pause(ledger_session)
        assert moves.claim_message(ledger_session, message.id, "w2", 60, LATER) is None
        assert resume(ledger_session)
        taken = moves.claim_message(ledger_session, message.id, "w2", 60, LATER)
        assert taken is not None and taken.lease_owner == "w2"

    def test_the_sweeper_passes_them_by_until_resumed(self, ledger_session: Session) -> None:
        now = datetime.now(UTC)
        old = now - timedelta(minutes=5)
        queued = add(ledger_session, updated_at=old)
        lost = add(ledger_session)
        elsewhere = add(ledger_session, account="bank", updated_at=old)
        assert moves.claim_message(ledger_session, lost.id, "w1", 60, now - timedelta(hours=1))
        threshold = now - timedelta(minutes=1)
        everything = {queued.id, lost.id, elsewhere.id}
        assert set(messages.messages_to_sweep(ledger_session, now, threshold, 100)) == everything

        assert pause(ledger_session, now=now)
        swept = messages.messages_to_sweep(ledger_session, now, threshold, 100)
        assert swept == [elsewhere.id]
        assert pause(ledger_session, name="bank", now=now)
        assert messages.messages_to_sweep(ledger_session, now, threshold, 100) == []

        assert resume(ledger_session, now=now)
        swept = messages.messages_to_sweep(ledger_session, now, threshold, 100)
        assert set(swept) == {queued.id, lost.id}


def test_the_migration_adds_and_drops_only_sms_accounts(empty_database_url: str) -> None:
    upgrade(empty_database_url, "0001")
    engine = make_engine(empty_database_url)
    try:
        before = set(inspect(engine).get_table_names())
        upgrade(empty_database_url, "0002")
        assert current(empty_database_url) == "0002"
        assert set(inspect(engine).get_table_names()) - before == {"sms_accounts"}
        downgrade(empty_database_url, "0001")
        assert set(inspect(engine).get_table_names()) == before
    finally:
        engine.dispose()
    assert current(empty_database_url) == "0001"
