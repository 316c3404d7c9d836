"""sms_attempts on PostgreSQL and SQLite: written before the request, finished exactly once."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from worker.ledger import attempts, messages, moves, status
from worker.ledger.schema import SmsAttempt
from worker.tencent.codes import Outcome

STARTED = datetime(2024, 11, 24, 12, 0, tzinfo=UTC)


def new_message(session: Session, mobile: str = "13788888888") -> uuid.UUID:
    message, _ = messages.insert_message(
        session,
        account="default",
        kind=status.NOTIFICATION,
        nationcode="86",
        mobile=mobile,
        tpl_id=1,
        params=[],
    )
    session.commit()
    return message.id


def request(**overrides: Any) -> dict[str, Any]:
    return {
        "request_id": uuid.uuid4(),
        "api": "sendsms",
        "random": 7226249334,
        "signed_time": 1457336869,
        "worker": "host-1:4242",
        "started_at": STARTED,
        **overrides,
    }


def answer(**overrides: Any) -> Any:
    return {
        "finished_at": STARTED + timedelta(milliseconds=80),
        "http_status": 200,
        "result": 0,
        "errmsg": "OK",
        "sid": "8:Hn1h2sGbp2xWOrp2AlF20170804",
        "fee": 1,
        "outcome": Outcome.OK,
        "latency_ms": 80,
        **overrides,
    }


def finish(session: Session, attempt_id: int, **overrides: Any) -> bool:
    return attempts.finish_attempt(session, attempt_id, **answer(**overrides))


def test_begin_attempt_is_in_flight_and_counted(ledger_session: Session) -> None:
    message_id = new_message(ledger_session)
    details = request()
    attempt_id = attempts.begin_attempt(
        ledger_session, message_id=message_id, attempt_no=1, **details
    )
    ledger_session.commit()
    assert isinstance(attempt_id, int)
    ledger_session.expire_all()
    (attempt,) = attempts.attempts_for(ledger_session, message_id)
    assert (attempt.id, attempt.outcome, attempt.random) == (
        attempt_id,
        status.IN_FLIGHT,
        7226249334,
    )
    assert (attempt.started_at, attempt.finished_at) == (STARTED, None)
    message = messages.get_message(ledger_session, message_id)
    assert message is not None
    assert (message.attempt_count, message.request_id) == (1, details["request_id"])


def test_the_same_attempt_number_twice_is_refused(ledger_session: Session) -> None:
    message_id = new_message(ledger_session)
    attempts.begin_attempt(ledger_session, message_id=message_id, attempt_no=1, **request())
    ledger_session.commit()
    with pytest.raises(IntegrityError):
        attempts.begin_attempt(ledger_session, message_id=message_id, attempt_no=1, **request())
    ledger_session.rollback()


def test_a_group_request_gets_a_row_per_number(ledger_session: Session) -> None:
    first = new_message(ledger_session, "13788888888")
    second = new_message(ledger_session, "13788888889")
    attempts.begin_attempt(ledger_session, message_id=second, attempt_no=1, **request())
    group = request(api="sendmultisms2")
    ids = attempts.begin_attempts(ledger_session, attempts=[(second, 2), (first, 1)], **group)
    ledger_session.commit()
    rows = {row.id: row for row in ledger_session.scalars(select(SmsAttempt))}
    assert [(rows[i].message_id, rows[i].attempt_no) for i in ids] == [(second, 2), (first, 1)]
    assert {rows[i].request_id for i in ids} == {group["request_id"]}
    counts = [messages.get_message(ledger_session, m) for m in (first, second)]
    assert [m.attempt_count for m in counts if m is not None] == [1, 2]
    assert attempts.begin_attempts(ledger_session, attempts=[], **request()) == []


def test_an_attempt_for_a_named_owner_needs_its_lease(ledger_session: Session) -> None:
    message_id = new_message(ledger_session)
    assert moves.claim_message(ledger_session, message_id, "w1", 60, STARTED)
    with pytest.raises(moves.LeaseLost):
        attempts.begin_attempt(
            ledger_session, message_id=message_id, attempt_no=1, owner="w2", **request()
        )
    ledger_session.rollback()
    assert attempts.attempts_for(ledger_session, message_id) == []
    attempt_id = attempts.begin_attempt(
        ledger_session, message_id=message_id, attempt_no=1, owner="w1", **request()
    )
    ledger_session.commit()
    assert [attempt.id for attempt in attempts.attempts_for(ledger_session, message_id)] == [
        attempt_id
    ]


def test_finish_attempt_happens_once(ledger_session: Session) -> None:
    message_id = new_message(ledger_session)
    attempt_id = attempts.begin_attempt(
        ledger_session, message_id=message_id, attempt_no=1, **request()
    )
    ledger_session.commit()
    assert finish(ledger_session, attempt_id, outcome=Outcome.AMBIGUOUS, http_status=None)
    ledger_session.commit()
    assert not finish(ledger_session, attempt_id, outcome=Outcome.OK, result=1016, sid=None)
    ledger_session.commit()
    ledger_session.expire_all()
    (attempt,) = attempts.attempts_for(ledger_session, message_id)
    assert (attempt.outcome, attempt.http_status, attempt.result) == ("ambiguous", None, 0)
    assert attempt.sid == "8:Hn1h2sGbp2xWOrp2AlF20170804"
    assert attempt.finished_at == STARTED + timedelta(milliseconds=80)
    with pytest.raises(ValueError, match="in_flight"):
        finish(ledger_session, attempt_id, outcome=status.IN_FLIGHT)


def test_finish_attempts_records_each_answer_and_leaves_finished_rows_alone(
    ledger_session: Session,
) -> None:
    first, second = new_message(ledger_session, "13788888881"), new_message(ledger_session)
    ids = attempts.begin_attempts(ledger_session, attempts=[(first, 1), (second, 1)], **request())
    ledger_session.commit()
    assert finish(ledger_session, ids[1], outcome=Outcome.AMBIGUOUS, result=None, sid=None)
    ledger_session.commit()
    answers = [answer(sid="sid-first", fee=2, latency_ms=5), answer(sid="sid-second")]
    attempts.finish_attempts(ledger_session, list(zip(ids, answers, strict=True)))
    ledger_session.commit()
    ledger_session.expire_all()
    (one,) = attempts.attempts_for(ledger_session, first)
    (two,) = attempts.attempts_for(ledger_session, second)
    assert (one.outcome, one.sid, one.fee, one.latency_ms) == ("ok", "sid-first", 2, 5)
    assert (two.outcome, two.sid, two.fee) == ("ambiguous", None, 1)  # finished before
    attempts.finish_attempts(ledger_session, [])
    with pytest.raises(ValueError, match="in_flight"):
        attempts.finish_attempts(ledger_session, [(ids[0], answer(outcome=status.IN_FLIGHT))])


def test_attempts_for_is_in_order(ledger_session: Session) -> None:
    message_id = new_message(ledger_session)
    for number in (2, 1, 3):
        attempts.begin_attempt(
            ledger_session, message_id=message_id, attempt_no=number, **request()
        )
    ledger_session.commit()
    assert [a.attempt_no for a in attempts.attempts_for(ledger_session, message_id)] == [1, 2, 3]
    assert attempts.attempts_for(ledger_session, uuid.uuid4()) == []


def test_stale_in_flight_attempts(ledger_session: Session) -> None:
    message_id = new_message(ledger_session)
    hour = timedelta(hours=1)
    oldest = attempts.begin_attempt(
        ledger_session,
        message_id=message_id,
        attempt_no=1,
        **request(started_at=STARTED - 2 * hour),
    )
    old = attempts.begin_attempt(
        ledger_session, message_id=message_id, attempt_no=2, **request(started_at=STARTED - hour)
    )
    finished = attempts.begin_attempt(
        ledger_session, message_id=message_id, attempt_no=3, **request(started_at=STARTED - hour)
    )
    attempts.begin_attempt(ledger_session, message_id=message_id, attempt_no=4, **request())
    finish(ledger_session, finished)
    ledger_session.commit()
    stale = attempts.stale_in_flight_attempts(ledger_session, STARTED - timedelta(minutes=1))
    assert [a.id for a in stale] == [oldest, old]
    assert [a.id for a in attempts.stale_in_flight_attempts(ledger_session, STARTED, limit=1)] == [
        oldest
    ]
