"""Queries on ``sms_delivery_reports`` and ``sms_replies``: store as received, match by ``sid``.

A report is stored once (the unique key ``uq_sms_delivery_reports_report`` refuses the same
report pushed twice, or pushed and pulled) and attached to its message by ``sid``, now or later:
a report whose send is not recorded yet is an orphan (``message_id`` NULL) until the send is
recorded (``attach_reports``) or the beat's matcher finds it (``matchable_orphans``).
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from worker.ledger.db import dialect_insert
from worker.ledger.schema import SmsDeliveryReport, SmsMessage, SmsReply

# What identifies one report: the columns of uq_sms_delivery_reports_report.
REPORT_KEY = ("sid", "report_status", "errmsg", "user_receive_time")
REPLY_KEY = ("nationcode", "mobile", "time", "text")
# Looked up a chunk at a time so a large callback does not build one enormous IN list.
LOOKUP_CHUNK = 500


@dataclass(frozen=True, slots=True)
class StoredReport:
    """A report row just written (or just attached): what moving its message needs."""

    id: int
    message_id: uuid.UUID | None
    report_status: str
    errmsg: str


def message_ids_by_sid(session: Session, sids: Collection[str]) -> dict[str, uuid.UUID]:
    """The message carrying each of ``sids``, for those some message carries. Locks: none."""
    wanted = sorted(set(sids))
    found: dict[str, uuid.UUID] = {}
    for start in range(0, len(wanted), LOOKUP_CHUNK):
        chunk = wanted[start : start + LOOKUP_CHUNK]
        rows = session.execute(
            select(SmsMessage.sid, SmsMessage.id).where(SmsMessage.sid.in_(chunk))
        )
        found.update((sid, message_id) for sid, message_id in rows if sid is not None)
    return found


def insert_reports(session: Session, rows: Sequence[Mapping[str, Any]]) -> list[StoredReport]:
    """Insert the reports that are new; those, as stored. Rows already there are skipped.

    INSERT .. ON CONFLICT DO NOTHING on the report's key, so a duplicate, even one arriving
    concurrently, is refused by the unique index (the second transaction waits for the first).
    All rows must carry the same keys. Locks: the new rows (SQLite: the database) until the
    caller commits. Does not commit.
    """
    if not rows:
        return []
    table = SmsDeliveryReport.__table__
    statement = (
        dialect_insert(session)(table)
        .on_conflict_do_nothing(index_elements=list(REPORT_KEY))
        .returning(table.c.id, table.c.message_id, table.c.report_status, table.c.errmsg)
    )
    return [StoredReport(*row) for row in session.execute(statement, list(rows))]


def attach_reports(session: Session, sid: str, message_id: uuid.UUID) -> list[StoredReport]:
    """Attach the orphan reports of ``sid`` to its message; those attached.

    Cheap enough to run on every recorded send: one UPDATE through the index on ``sid``.
    Reports attached already (by a concurrent matcher) are left alone. Locks: those rows until
    the caller commits. Does not commit.
    """
    statement = (
        update(SmsDeliveryReport)
        .where(SmsDeliveryReport.sid == sid, SmsDeliveryReport.message_id.is_(None))
        .values(message_id=message_id)
        .returning(
            SmsDeliveryReport.id,
            SmsDeliveryReport.message_id,
            SmsDeliveryReport.report_status,
            SmsDeliveryReport.errmsg,
        )
        .execution_options(synchronize_session=False)
    )
    return [StoredReport(*row) for row in session.execute(statement)]


def orphan_sids(session: Session, sids: Collection[str]) -> set[str]:
    """Those of ``sids`` with a report waiting for its message: one indexed lookup for a whole
    group answer, which usually finds none. Locks: none."""
    statement = select(SmsDeliveryReport.sid).where(
        SmsDeliveryReport.sid.in_(list(sids)), SmsDeliveryReport.message_id.is_(None)
    )
    return set(session.scalars(statement)) if sids else set()


def matchable_orphans(
    session: Session, received_since: datetime, limit: int
) -> list[tuple[str, uuid.UUID]]:
    """``(sid, message_id)`` of orphan reports whose message is now recorded; at most ``limit``.

    Only orphans received since ``received_since``: older ones are left to reconciliation
    rather than scanned on every tick. Locks: none.
    """
    statement = (
        select(SmsDeliveryReport.sid, SmsMessage.id)
        .join(SmsMessage, SmsMessage.sid == SmsDeliveryReport.sid)
        .where(
            SmsDeliveryReport.message_id.is_(None),
            SmsDeliveryReport.received_at >= received_since,
        )
        .distinct()
        .limit(limit)
    )
    return [(sid, message_id) for sid, message_id in session.execute(statement)]


def count_orphans(session: Session, received_since: datetime | None = None) -> int:
    """How many reports have no message (since ``received_since``, if given). Locks: none."""
    statement = select(func.count()).where(SmsDeliveryReport.message_id.is_(None))
    if received_since is not None:
        statement = statement.where(SmsDeliveryReport.received_at >= received_since)
    return session.scalar(statement) or 0


def insert_reply(session: Session, **fields: Any) -> bool:
    """Store one reply; False if it was stored before (same number, time and text).

    Locks: the new row (SQLite: the database) until the caller commits. Does not commit.
    """
    statement = (
        dialect_insert(session)(SmsReply)
        .values(fields)
        .on_conflict_do_nothing(index_elements=list(REPLY_KEY))
        .returning(SmsReply.id)
    )
    return session.scalars(statement).first() is not None
