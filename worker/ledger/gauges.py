"""Read-only queries behind the scrape-time gauges of ``worker.observability.endpoint``.

Each is bounded and rides an index: ``(status, not_before)`` of ``sms_messages`` for the queue,
``sms_accounts`` for pauses, ``(status, start_at)`` of ``sms_batches`` and the
``(batch_id, status, ...)`` index for the messages of the few active batches. Locks: none.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ColumnElement, and_, func, literal, or_, select
from sqlalchemy.orm import Session

from worker.ledger.schema import SmsBatch, SmsMessage
from worker.ledger.status import QUEUED, SENDING, BatchStatus

ACTIVE_BATCH_STATUSES = (BatchStatus.SCHEDULED, BatchStatus.SENDING, BatchStatus.PAUSED)

# The states of the queue depth.
DUE = "due"  # queued and due now: a worker could take it
SCHEDULED_LATER = "scheduled"  # queued with a not_before still to come (waits, batch starts)
CLAIMED = "sending"  # a worker holds it


def queue_depth(session: Session, now: datetime, limit: int) -> dict[str, int]:
    """Messages due, scheduled for later and held by a worker, each counted up to ``limit``."""
    status, not_before = SmsMessage.status, SmsMessage.not_before
    conditions: dict[str, ColumnElement[bool]] = {
        DUE: and_(status == QUEUED, or_(not_before.is_(None), not_before <= now)),
        SCHEDULED_LATER: and_(status == QUEUED, not_before > now),
        CLAIMED: status == SENDING,
    }
    return {state: _bounded_count(session, where, limit) for state, where in conditions.items()}


def _bounded_count(session: Session, condition: ColumnElement[bool], limit: int) -> int:
    rows = select(literal(1)).where(condition).limit(limit).subquery()
    return session.scalar(select(func.count()).select_from(rows)) or 0


def oldest_due_since(session: Session, now: datetime, sample: int) -> datetime | None:
    """Since when the longest-waiting due message has waited; a lower bound past ``sample``
    messages without a not_before."""
    status, not_before = SmsMessage.status, SmsMessage.not_before
    # A message given a not_before has waited since then: the index's own order finds it.
    since_not_before = session.scalar(
        select(func.min(not_before)).where(status == QUEUED, not_before <= now)
    )
    # One without has waited since it was created; created_at is not in the status index, so a
    # bounded sample is read.
    sampled = (
        select(SmsMessage.created_at)
        .where(status == QUEUED, not_before.is_(None))
        .limit(sample)
        .subquery()
    )
    since_created = session.scalar(select(func.min(sampled.c.created_at)))
    found = [moment for moment in (since_not_before, since_created) if moment is not None]
    return min(found) if found else None


def batches_by_status(session: Session) -> dict[str, int]:
    """How many batches are in each state."""
    counted = session.execute(select(SmsBatch.status, func.count()).group_by(SmsBatch.status))
    return {status: count for status, count in counted}


def active_batches(session: Session, limit: int) -> list[tuple[uuid.UUID, str, int]]:
    """``(id, account, accepted)`` of at most ``limit`` active batches, earliest start first."""
    statement = (
        select(SmsBatch.id, SmsBatch.account, SmsBatch.accepted)
        .where(SmsBatch.status.in_(ACTIVE_BATCH_STATUSES))
        .order_by(SmsBatch.start_at)
        .limit(limit)
    )
    return [(row.id, row.account, row.accepted) for row in session.execute(statement)]
