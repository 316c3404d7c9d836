"""Reconciliation's queries: the ledger's hourly send figures, and what needs a person's look.

How the gateway counts, for ``pullsendstatus`` (our model of it, which the simulator implements):
per number, ``request`` for every send it took: authenticated and processed, whatever the result,
so a 1008 or a 1016 counts and a signature refusal (1001) does not; ``success`` for result 0;
``bill_number`` for the fees of those. The ledger counts its attempts the same way: one row per
number per HTTP request. Periods are half-open ``[start, end)``; reads take no locks.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import Select, and_, exists, func, or_, select
from sqlalchemy.orm import Session

from worker.ledger.finance import count_where, fees_where, for_accounts
from worker.ledger.schema import SmsAttempt, SmsDeliveryReport, SmsMessage
from worker.ledger.status import IN_FLIGHT, SENT
from worker.tencent.codes import Outcome

# Answered before the gateway takes the request (parsing, authentication, clock, permission):
# not in its `request` figure.
UNCOUNTED_RESULTS = (1001, 1003, 1004, 1006, 1011, 1019, 1020, 1021)
# Attempts that may have reached the gateway without the ledger knowing what it answered.
UNSETTLED_OUTCOMES = (Outcome.AMBIGUOUS.value, IN_FLIGHT)

Row = TypeVar("Row")


@dataclass(frozen=True, slots=True)
class SendFigures:
    """``pullsendstatus``'s three figures, from either side."""

    requests: int = 0
    successes: int = 0
    billed: int = 0

    def __add__(self, other: SendFigures) -> SendFigures:
        return SendFigures(
            self.requests + other.requests,
            self.successes + other.successes,
            self.billed + other.billed,
        )

    def __sub__(self, other: SendFigures) -> SendFigures:
        return SendFigures(
            self.requests - other.requests,
            self.successes - other.successes,
            self.billed - other.billed,
        )


@dataclass(frozen=True, slots=True)
class LedgerHour:
    """The ledger's figures for the attempts started in one hour.

    ``late``: those answered within ``skew`` of the next hour or after it, and ``early``: those
    started within ``skew`` of this hour's start; the gateway, which counts at its own moment of
    receipt, may have put either in the neighbouring hour. ``unsettled``: ambiguous or in-flight
    attempts, which the gateway may have counted without the ledger knowing.
    """

    start: datetime
    figures: SendFigures
    late: SendFigures
    early: SendFigures
    unsettled: int


def ledger_hour(
    session: Session,
    start: datetime,
    *,
    accounts: Collection[str] | None = None,
    skew: timedelta = timedelta(0),
) -> LedgerHour:
    """Counted the way the gateway counts (see the module's docstring)."""
    end = start + timedelta(hours=1)
    counted = and_(SmsAttempt.result.is_not(None), SmsAttempt.result.not_in(UNCOUNTED_RESULTS))
    success = SmsAttempt.result == 0
    late = func.coalesce(SmsAttempt.finished_at, SmsAttempt.started_at) >= end - skew
    early = SmsAttempt.started_at < start + skew
    statement = for_accounts(
        select(
            *(
                column
                for where in (counted, and_(counted, late), and_(counted, early))
                for column in (
                    count_where(where),
                    count_where(and_(where, success)),
                    fees_where(and_(where, success)),
                )
            ),
            count_where(SmsAttempt.outcome.in_(UNSETTLED_OUTCOMES)),
        )
        .join(SmsMessage, SmsMessage.id == SmsAttempt.message_id)
        .where(SmsAttempt.started_at >= start, SmsAttempt.started_at < end),
        accounts,
    )
    row = session.execute(statement).one()
    return LedgerHour(
        start=start,
        figures=SendFigures(*row[0:3]),
        late=SendFigures(*row[3:6]),
        early=SendFigures(*row[6:9]),
        unsettled=row[9],
    )


class BilledAttempt(NamedTuple):
    """A successful attempt and what is needed to compute the segments it should have cost."""

    attempt_id: int
    message_id: uuid.UUID
    sid: str | None
    fee: int | None
    started_at: datetime
    account: str
    nationcode: str
    tpl_id: int | None
    params: list[str]
    content: str | None
    sign: str | None


def billed_attempts(
    session: Session,
    start: datetime,
    end: datetime,
    *,
    accounts: Collection[str] | None = None,
    batch: int = 1000,
) -> Iterator[BilledAttempt]:
    """Attempts started in ``[start, end)`` that the gateway answered with result 0, streamed."""
    statement = for_accounts(
        select(
            SmsAttempt.id,
            SmsAttempt.message_id,
            SmsAttempt.sid,
            SmsAttempt.fee,
            SmsAttempt.started_at,
            SmsMessage.account,
            SmsMessage.nationcode,
            SmsMessage.tpl_id,
            SmsMessage.params,
            SmsMessage.content,
            SmsMessage.sign,
        )
        .join(SmsMessage, SmsMessage.id == SmsAttempt.message_id)
        .where(SmsAttempt.started_at >= start, SmsAttempt.started_at < end, SmsAttempt.result == 0)
        .order_by(SmsAttempt.started_at, SmsAttempt.id),
        accounts,
    )
    for row in session.execute(statement.execution_options(yield_per=batch)):
        yield BilledAttempt(*row)


def sends_without_report(
    session: Session,
    start: datetime,
    end: datetime,
    *,
    accounts: Collection[str] | None = None,
    limit: int = 100,
) -> tuple[int, list[SmsMessage]]:
    """Messages still ``sent`` (no report moved them) with ``sent_at`` in ``[start, end)`` and no
    stored report, matched by message or by sid: how many, and the oldest ``limit``."""
    reported = exists().where(
        or_(
            SmsDeliveryReport.message_id == SmsMessage.id,
            SmsDeliveryReport.sid == SmsMessage.sid,
        )
    )
    where = (
        SmsMessage.status == SENT,
        SmsMessage.sent_at >= start,
        SmsMessage.sent_at < end,
        ~reported,
    )
    statement = for_accounts(select(SmsMessage).where(*where), accounts)
    return _counted(session, statement, SmsMessage.sent_at, limit)


def unsettled_attempts(
    session: Session,
    start: datetime,
    end: datetime,
    *,
    stale_before: datetime,
    accounts: Collection[str] | None = None,
    limit: int = 100,
) -> tuple[int, list[SmsAttempt]]:
    """Ambiguous attempts started in ``[start, end)``, and in-flight ones started before
    ``stale_before`` (their worker died holding the answer): how many, and the oldest ``limit``."""
    unsettled = or_(
        SmsAttempt.outcome == Outcome.AMBIGUOUS.value,
        and_(SmsAttempt.outcome == IN_FLIGHT, SmsAttempt.started_at < stale_before),
    )
    statement = for_accounts(
        select(SmsAttempt)
        .join(SmsMessage, SmsMessage.id == SmsAttempt.message_id)
        .where(SmsAttempt.started_at >= start, SmsAttempt.started_at < end, unsettled),
        accounts,
    )
    return _counted(session, statement, SmsAttempt.started_at, limit)


def orphan_reports(
    session: Session, start: datetime, end: datetime, *, limit: int = 100
) -> tuple[int, list[SmsDeliveryReport]]:
    """Reports received in ``[start, end)`` that no message claims: how many, the oldest ``limit``.

    The caller ends ``end`` a grace period before now: a report may overtake its send's record.
    """
    statement = select(SmsDeliveryReport).where(
        SmsDeliveryReport.message_id.is_(None),
        SmsDeliveryReport.received_at >= start,
        SmsDeliveryReport.received_at < end,
    )
    return _counted(session, statement, SmsDeliveryReport.received_at, limit)


def _counted(
    session: Session, statement: Select[Row], oldest_first: Any, limit: int
) -> tuple[int, list[Row]]:
    """How many rows ``statement`` selects, and the first ``limit`` of them, oldest first."""
    total = session.scalar(select(func.count()).select_from(statement.subquery())) or 0
    return total, list(session.scalars(statement.order_by(oldest_first).limit(limit)))
