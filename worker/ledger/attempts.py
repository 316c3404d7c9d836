"""Queries on ``sms_attempts``, the append-only audit of every HTTP attempt.

An attempt row is written ``in_flight`` and committed BEFORE its request goes out, and finished
exactly once after the answer. A row still ``in_flight`` long after it started is a request whose
fate nobody recorded: it may have been delivered. Nothing here deletes or rewrites a finished row.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypedDict, Unpack, cast

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.orm import Session

from worker.ledger import moves
from worker.ledger.schema import SmsAttempt
from worker.ledger.status import IN_FLIGHT

# The statements of every send are built once, with bound parameters: building and caching a
# statement costs more than running it.
_ATTEMPTS = cast(Table, SmsAttempt.__table__)
_BEGIN = insert(_ATTEMPTS).returning(_ATTEMPTS.c.id, _ATTEMPTS.c.message_id, _ATTEMPTS.c.attempt_no)
_ANSWER = ("finished_at", "http_status", "result", "errmsg", "sid", "fee", "outcome", "latency_ms")
_FINISH_MANY = (
    update(_ATTEMPTS)
    .where(_ATTEMPTS.c.id == bindparam("attempt_id"), _ATTEMPTS.c.outcome == IN_FLIGHT)
    .values({name: bindparam(f"new_{name}") for name in _ANSWER})
)
_FINISH = _FINISH_MANY.returning(_ATTEMPTS.c.id)


class AttemptRequest(TypedDict):
    """The request an attempt is about: what the audit matches it on at the gateway."""

    request_id: uuid.UUID
    api: str
    random: int
    signed_time: int
    worker: str
    started_at: datetime


class AttemptAnswer(TypedDict):
    """What finishes an attempt: the columns of ``_ANSWER``."""

    finished_at: datetime
    http_status: int | None
    result: int | None
    errmsg: str | None
    sid: str | None
    fee: int | None
    outcome: str
    latency_ms: int | None


def begin_attempt(
    session: Session,
    *,
    message_id: uuid.UUID,
    attempt_no: int,
    owner: str | None = None,
    **request: Unpack[AttemptRequest],
) -> int:
    """Record an attempt as ``in_flight`` and count it on its message; the attempt's id.

    The caller commits BEFORE the HTTP call. A second attempt with the same ``attempt_no`` for
    the message violates a unique index (IntegrityError): two workers believe they own it. With
    ``owner``, see ``begin_attempts``. Locks: the new row and the message row until the caller
    commits. Does not commit.
    """
    (attempt_id,) = begin_attempts(
        session,
        attempts=[(message_id, attempt_no)],
        owner=owner,
        **request,
    )
    return attempt_id


def begin_attempts(
    session: Session,
    *,
    attempts: Sequence[tuple[uuid.UUID, int]],
    owner: str | None = None,
    **request: Unpack[AttemptRequest],
) -> list[int]:
    """Record one group request: an ``in_flight`` row per ``(message_id, attempt_no)``, all
    sharing ``request_id``; their ids in the order given.

    Each message's ``attempt_count`` goes up by one and its ``request_id`` is set. With
    ``owner``, only while that worker still holds every one of the messages (``sending``, its
    lease): otherwise ``moves.LeaseLost``, and the caller rolls back, so a worker whose lease
    ran out mid-task cannot send beside the one that took the message over. Locks: the new rows
    and the message rows until the caller commits. Does not commit.
    """
    if not attempts:
        return []
    rows = [
        {"message_id": message_id, "attempt_no": attempt_no, "outcome": IN_FLIGHT, **request}
        for message_id, attempt_no in attempts
    ]
    ids = {(message_id, no): id_ for id_, message_id, no in session.execute(_BEGIN, rows)}
    message_ids = [message_id for message_id, _ in attempts]
    moves.count_attempts(session, message_ids, request["request_id"], owner)
    return [ids[key] for key in attempts]


def finish_attempt(session: Session, attempt_id: int, **answer: Unpack[AttemptAnswer]) -> bool:
    """Record the answer of an ``in_flight`` attempt; False if it was already finished.

    The UPDATE only touches a row still ``in_flight``, so an attempt is finished once and never
    rewritten (a late duplicate cannot change the audit). Locks: the row until the caller
    commits. Does not commit.
    """
    return session.execute(_FINISH, _finish_params(attempt_id, answer)).one_or_none() is not None


def finish_attempts(session: Session, answers: Sequence[tuple[int, AttemptAnswer]]) -> None:
    """Record the answers of many ``in_flight`` attempts (``(attempt_id, answer)``) at once.

    As ``finish_attempt``, in one executemany: the answers of a group request are written in
    one round trip instead of one per number. Locks: the rows until the caller commits. Does
    not commit.
    """
    if answers:
        params = [_finish_params(attempt_id, answer) for attempt_id, answer in answers]
        session.execute(_FINISH_MANY, params)


def _finish_params(attempt_id: int, answer: AttemptAnswer) -> dict[str, Any]:
    if answer["outcome"] == IN_FLIGHT:
        raise ValueError("an attempt is finished with its outcome, not in_flight")
    params: dict[str, Any] = {f"new_{name}": value for name, value in answer.items()}
    params["attempt_id"] = attempt_id
    return params


def attempts_for(session: Session, message_id: uuid.UUID) -> list[SmsAttempt]:
    """Every attempt of the message, oldest first. Locks: none."""
    statement = (
        select(SmsAttempt)
        .where(SmsAttempt.message_id == message_id)
        .order_by(SmsAttempt.attempt_no)
    )
    return list(session.scalars(statement))


def stale_in_flight_attempts(
    session: Session, older_than: datetime, *, limit: int | None = None
) -> list[SmsAttempt]:
    """Attempts still ``in_flight`` that started before ``older_than``, oldest first.

    Their worker died between sending and recording: the SMS may have gone out, so these are
    ambiguous, not failed. Locks: none.
    """
    statement = (
        select(SmsAttempt)
        .where(SmsAttempt.outcome == IN_FLIGHT, SmsAttempt.started_at < older_than)
        .order_by(SmsAttempt.started_at)
        .limit(limit)
    )
    return list(session.scalars(statement))
