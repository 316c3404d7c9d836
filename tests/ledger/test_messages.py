"""sms_messages on PostgreSQL and SQLite: idempotent inserts, exclusive claims, safe moves."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TypeVar

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from worker.ledger import messages, moves, status
from worker.ledger.db import session_factory
from worker.ledger.schema import SmsMessage

T = TypeVar("T")
NOW = datetime(2024, 11, 24, 12, 0, tzinfo=UTC)
BEIJING = timezone(timedelta(hours=8))


def fields(**overrides: Any) -> dict[str, Any]:
    return {
        "account": "default",
        "kind": status.VERIFICATION,
        "nationcode": "86",
        "mobile": "13788888888",
        "tpl_id": 7839,
        "params": ["1234", "5"],
        "sign": "腾讯云",
        **overrides,
    }


def add(session: Session, **overrides: Any) -> SmsMessage:
    message, created = messages.insert_message(session, **fields(**overrides))
    assert created
    session.commit()
    return message


def in_threads(engine: Engine, work: Callable[[Session], T], count: int) -> list[T]:
    """Run ``work`` in ``count`` threads at once, each with its own session; their results."""
    barrier = threading.Barrier(count, timeout=30)
    results: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        with session_factory(engine)() as session:
            try:
                barrier.wait()
                results.append(work(session))
                session.commit()
            except BaseException as error:
                errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a thread is stuck"
    assert not errors, errors
    return results


def test_insert_fills_the_defaults(ledger_session: Session) -> None:
    message = add(ledger_session)
    ledger_session.expire_all()
    stored = messages.get_message(ledger_session, message.id)
    assert stored is not None
    assert (stored.status, stored.attempt_count, stored.delivery_count) == (status.QUEUED, 0, 0)
    assert stored.params == ["1234", "5"]
    assert stored.sign == "腾讯云"
    assert stored.created_at.tzinfo is UTC
    assert stored.created_at <= datetime.now(UTC)
    assert messages.get_message(ledger_session, uuid.uuid4()) is None


def test_idempotency_key_returns_the_first_message(ledger_session: Session) -> None:
    first = add(ledger_session, idempotency_key="order-1")
    again, created = messages.insert_message(
        ledger_session, **fields(idempotency_key="order-1", mobile="13700000000")
    )
    assert not created
    assert (again.id, again.mobile) == (first.id, "13788888888")
    # The key is unique per account only, and messages without a key never collide.
    _, other_account = messages.insert_message(
        ledger_session, **fields(idempotency_key="order-1", account="shop")
    )
    _, no_key_1 = messages.insert_message(ledger_session, **fields())
    _, no_key_2 = messages.insert_message(ledger_session, **fields())
    ledger_session.commit()
    assert other_account and no_key_1 and no_key_2
    assert messages.count_by_status(ledger_session) == {status.QUEUED: 4}


def test_the_same_id_twice_is_one_message(ledger_session: Session) -> None:
    first = add(ledger_session)
    again, created = messages.insert_message(ledger_session, **fields(id=first.id))
    assert (again.id, created) == (first.id, False)


def test_idempotency_key_race_leaves_one_row(ledger_engine: Engine) -> None:
    def insert(session: Session) -> tuple[uuid.UUID, bool]:
        message, created = messages.insert_message(session, **fields(idempotency_key="signup-42"))
        return message.id, created

    results = in_threads(ledger_engine, insert, 4)
    assert sorted(created for _, created in results) == [False, False, False, True]
    assert len({message_id for message_id, _ in results}) == 1
    with session_factory(ledger_engine)() as session:
        assert messages.count_by_status(session) == {status.QUEUED: 1}


def test_insert_messages_skips_used_keys(ledger_session: Session) -> None:
    existing = add(ledger_session, idempotency_key="k2")
    rows = [fields(idempotency_key=f"k{n}", mobile=f"1370000000{n}") for n in range(1, 5)]
    created = messages.insert_messages(ledger_session, rows)
    ledger_session.commit()
    assert len(created) == 3
    stored = {
        m.idempotency_key: m.id
        for m in ledger_session.scalars(select(SmsMessage).where(SmsMessage.id.in_(created)))
    }
    assert [stored[f"k{n}"] for n in (1, 3, 4)] == created
    assert existing.id not in created
    assert messages.insert_messages(ledger_session, []) == []


def test_claim_sets_the_lease_and_counts_the_delivery(ledger_session: Session) -> None:
    message = add(ledger_session)
    claimed = moves.claim_message(ledger_session, message.id, "w1", 60, NOW)
    assert claimed is not None
    assert (claimed.status, claimed.lease_owner, claimed.delivery_count) == (
        status.SENDING,
        "w1",
        1,
    )
    assert claimed.lease_until == NOW + timedelta(seconds=60)


def test_claim_is_exclusive(ledger_engine: Engine, ledger_session: Session) -> None:
    message = add(ledger_session)
    owners = iter(range(6))
    lock = threading.Lock()

    def claim(session: Session) -> str | None:
        with lock:
            owner = f"worker-{next(owners)}"
        claimed = moves.claim_message(session, message.id, owner, 60, NOW)
        return claimed.lease_owner if claimed else None

    winners = [owner for owner in in_threads(ledger_engine, claim, 6) if owner is not None]
    assert len(winners) == 1
    ledger_session.expire_all()
    stored = messages.get_message(ledger_session, message.id)
    assert stored is not None
    assert (stored.lease_owner, stored.delivery_count) == (winners[0], 1)


def test_an_expired_lease_can_be_reclaimed(ledger_session: Session) -> None:
    message = add(ledger_session)
    assert moves.claim_message(ledger_session, message.id, "w1", 60, NOW)
    assert (
        moves.claim_message(ledger_session, message.id, "w2", 60, NOW + timedelta(seconds=59))
        is None
    )
    later = NOW + timedelta(seconds=61)
    reclaimed = moves.claim_message(ledger_session, message.id, "w2", 60, later)
    assert reclaimed is not None
    assert (reclaimed.lease_owner, reclaimed.delivery_count) == ("w2", 2)
    # The first worker lost the lease: it can no longer record a result.
    assert not moves.transition(
        ledger_session, message.id, status.SENT, from_statuses={status.SENDING}, owner="w1"
    )
    assert moves.transition(
        ledger_session, message.id, status.SENT, from_statuses={status.SENDING}, owner="w2"
    )


def test_not_before_in_the_future_is_not_claimable(ledger_session: Session) -> None:
    # Aware times in any zone compare as instants: 20:00 in Beijing is 12:00 UTC.
    message = add(ledger_session, not_before=datetime(2024, 11, 24, 20, 30, tzinfo=BEIJING))
    assert moves.claim_message(ledger_session, message.id, "w1", 60, NOW) is None
    assert moves.claim_message(ledger_session, message.id, "w1", 60, NOW + timedelta(minutes=30))


def test_a_finished_message_is_not_claimable(ledger_session: Session) -> None:
    message = add(ledger_session)
    assert moves.transition(
        ledger_session, message.id, status.CANCELLED, from_statuses={status.QUEUED}
    )
    ledger_session.commit()
    assert moves.claim_message(ledger_session, message.id, "w1", 60, NOW) is None


def test_transition_from_a_wrong_state_does_nothing(ledger_session: Session) -> None:
    message = add(ledger_session)
    assert not moves.transition(
        ledger_session, message.id, status.SENT, from_statuses={status.SENDING}, sid="s1"
    )
    ledger_session.commit()
    ledger_session.expire_all()
    stored = messages.get_message(ledger_session, message.id)
    assert stored is not None
    assert (stored.status, stored.sid) == (status.QUEUED, None)


def test_transition_records_fields_and_clears_the_lease(ledger_session: Session) -> None:
    message = add(ledger_session)
    assert moves.claim_message(ledger_session, message.id, "w1", 60, NOW)
    sent_at = NOW + timedelta(seconds=1)
    assert moves.transition(
        ledger_session,
        message.id,
        status.SENT,
        from_statuses={status.SENDING},
        owner="w1",
        sid="2:670479-0268698729-028972-001510040",
        fee=2,
        result=0,
        errmsg="OK",
        sent_at=sent_at,
    )
    ledger_session.commit()
    ledger_session.expire_all()
    stored = messages.get_message(ledger_session, message.id)
    assert stored is not None
    assert (stored.status, stored.fee, stored.result, stored.sent_at) == (
        status.SENT,
        2,
        0,
        sent_at,
    )
    assert (stored.lease_owner, stored.lease_until) == (None, None)
    assert stored.updated_at > stored.created_at
    # A duplicate report or task arriving later is a no-op.
    assert not moves.transition(
        ledger_session, message.id, status.SENT, from_statuses={status.SENDING}
    )


def test_transition_many_moves_only_what_the_owner_holds(ledger_session: Session) -> None:
    held, taken_over, unclaimed = (add(ledger_session, mobile=f"1378888888{n}") for n in (1, 2, 3))
    for message, owner in ((held, "w1"), (taken_over, "w2")):
        assert moves.claim_message(ledger_session, message.id, owner, 60, NOW)
    answers = {
        message.id: {"sid": f"sid-{n}", "fee": n, "result": 0, "sent_at": NOW}
        for n, message in enumerate((held, taken_over, unclaimed), start=1)
    }
    moved = moves.transition_many(
        ledger_session, answers, status.SENT, from_statuses={status.SENDING}, owner="w1"
    )
    ledger_session.commit()
    ledger_session.expire_all()
    assert moved == [held.id]
    stored = {m.id: m for m in ledger_session.scalars(select(SmsMessage))}
    assert (stored[held.id].status, stored[held.id].sid, stored[held.id].fee) == (
        status.SENT,
        "sid-1",
        1,
    )
    assert (stored[held.id].lease_owner, stored[held.id].lease_until) == (None, None)
    assert (stored[taken_over.id].status, stored[taken_over.id].sid) == (status.SENDING, None)
    assert (stored[unclaimed.id].status, stored[unclaimed.id].sid) == (status.QUEUED, None)
    assert (
        moves.transition_many(ledger_session, {}, status.SENT, from_statuses={status.SENDING}) == []
    )
    with pytest.raises(ValueError, match="no transition to 'delivered'"):
        moves.transition_many(
            ledger_session, answers, status.DELIVERED, from_statuses={status.QUEUED}
        )


def test_transition_refuses_moves_the_state_machine_forbids(ledger_session: Session) -> None:
    message = add(ledger_session)
    with pytest.raises(ValueError, match="no transition to 'delivered'"):
        moves.transition(
            ledger_session, message.id, status.DELIVERED, from_statuses={status.QUEUED}
        )
    with pytest.raises(ValueError):
        moves.transition(ledger_session, message.id, status.SENT, from_statuses=())


def test_requeue_waits_for_not_before(ledger_session: Session) -> None:
    message = add(ledger_session)
    assert moves.claim_message(ledger_session, message.id, "w1", 60, NOW)
    tomorrow = NOW + timedelta(days=1)
    assert not moves.requeue(ledger_session, message.id, "w2", tomorrow, "not mine")
    assert moves.requeue(ledger_session, message.id, "w1", tomorrow, "1025: daily limit")
    ledger_session.commit()
    ledger_session.expire_all()
    stored = messages.get_message(ledger_session, message.id)
    assert stored is not None
    assert (stored.status, stored.not_before, stored.lease_owner) == (status.QUEUED, tomorrow, None)
    assert stored.reason == "1025: daily limit"
    assert (
        moves.claim_message(ledger_session, message.id, "w3", 60, NOW + timedelta(hours=1)) is None
    )
    assert moves.claim_message(ledger_session, message.id, "w3", 60, tomorrow)


def test_messages_to_sweep(ledger_session: Session) -> None:
    now = datetime.now(UTC)
    old = now - timedelta(minutes=5)
    lost_task = add(ledger_session, updated_at=old)
    fresh = add(ledger_session)
    waiting = add(ledger_session, updated_at=old, not_before=now + timedelta(hours=1))
    due = add(ledger_session, updated_at=old, not_before=now - timedelta(seconds=1))
    dead_worker = add(ledger_session)
    live_worker = add(ledger_session)
    done = add(ledger_session, updated_at=old)
    assert moves.claim_message(ledger_session, dead_worker.id, "w1", 60, now - timedelta(minutes=2))
    assert moves.claim_message(ledger_session, live_worker.id, "w2", 60, now)
    assert moves.transition(
        ledger_session, done.id, status.CANCELLED, from_statuses={status.QUEUED}
    )
    ledger_session.commit()

    threshold = now - timedelta(minutes=1)
    swept = messages.messages_to_sweep(ledger_session, now, threshold, limit=100)
    assert sorted(swept) == sorted([lost_task.id, due.id, dead_worker.id])
    assert fresh.id not in swept and waiting.id not in swept
    assert messages.messages_to_sweep(ledger_session, now, threshold, limit=1) == [dead_worker.id]
    assert len(messages.messages_to_sweep(ledger_session, now, threshold, limit=2)) == 2


def test_count_by_status_filters(ledger_session: Session) -> None:
    batch = uuid.uuid4()
    first = add(ledger_session, batch_id=batch, kind=status.MARKETING)
    add(ledger_session, batch_id=batch, kind=status.MARKETING, mobile="13788888889")
    add(ledger_session, account="shop")
    moves.transition(ledger_session, first.id, status.SUPPRESSED, from_statuses={status.QUEUED})
    ledger_session.commit()
    assert messages.count_by_status(ledger_session, batch_id=batch) == {
        status.QUEUED: 1,
        status.SUPPRESSED: 1,
    }
    assert messages.count_by_status(ledger_session, account="shop") == {status.QUEUED: 1}
    assert messages.count_by_status(ledger_session) == {status.QUEUED: 2, status.SUPPRESSED: 1}


def test_datetimes_come_back_aware_utc(ledger_session: Session) -> None:
    expires = datetime(2024, 11, 25, 8, 0, 0, 123456, tzinfo=BEIJING)
    message = add(ledger_session, expires_at=expires)
    ledger_session.expire_all()
    stored = messages.get_message(ledger_session, message.id)
    assert stored is not None
    assert stored.expires_at == expires
    assert stored.expires_at is not None and stored.expires_at.tzinfo is UTC
    assert stored.expires_at.hour == 0 and stored.expires_at.microsecond == 123456


def test_naive_datetimes_are_refused(ledger_session: Session) -> None:
    with pytest.raises(Exception, match="naive datetime"):
        messages.insert_message(ledger_session, **fields(not_before=datetime(2024, 1, 1)))
