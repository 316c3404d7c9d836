"""Inserts and reads of ``sms_messages``; its claims, leases and state moves are in
``worker.ledger.moves``.

A function that does not say it commits leaves the transaction to its caller, so a producer can
write its messages inside its own transaction and a worker can record an attempt and move its
message atomically. On SQLite every write takes the database's single write lock until commit:
keep those transactions short.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from worker import clock
from worker.ledger import moves
from worker.ledger.db import dialect_insert
from worker.ledger.schema import SmsMessage


def insert_message(session: Session, **fields: Any) -> tuple[SmsMessage, bool]:
    """Insert one message; ``(message, True)`` if new, ``(existing, False)`` if already there.

    "Already there" means the account has used this ``idempotency_key`` before (or the ``id`` is
    taken, or the number is in the ``batch_id`` already), so a producer retrying a request gets
    the first message back instead of a second SMS.
    Race-safe: INSERT .. ON CONFLICT DO NOTHING, then a SELECT; a concurrent insert of the same
    key waits on the unique index until the first transaction ends. Locks: the new row (SQLite:
    the database) until the caller commits. Does not commit.
    """
    now = clock.now()
    values = {"id": uuid.uuid4(), "created_at": now, "updated_at": now, **fields}
    statement = dialect_insert(session)(SmsMessage).values(values).on_conflict_do_nothing()
    inserted = session.scalars(statement.returning(SmsMessage)).one_or_none()
    if inserted is not None:
        return inserted, True
    if values.get("idempotency_key") is not None:
        existing = select(SmsMessage).where(
            SmsMessage.account == values["account"],
            SmsMessage.idempotency_key == values["idempotency_key"],
        )
    elif values.get("batch_id") is not None:
        existing = select(SmsMessage).where(
            SmsMessage.batch_id == values["batch_id"],
            SmsMessage.nationcode == values["nationcode"],
            SmsMessage.mobile == values["mobile"],
        )
    else:
        existing = select(SmsMessage).where(SmsMessage.id == values["id"])
    return session.scalars(existing).one(), False


def insert_messages(session: Session, rows: Sequence[Mapping[str, Any]]) -> list[uuid.UUID]:
    """Insert many messages in one executemany; the ids of those created, in input order.

    A row whose idempotency key (or id) is already used is skipped, as in ``insert_message``.
    Rows missing an ``id`` get a fresh one. All rows must carry the same keys. Locks: the new
    rows (SQLite: the database) until the caller commits. Does not commit.
    """
    if not rows:
        return []
    now = clock.now()
    values = [{"id": uuid.uuid4(), "created_at": now, "updated_at": now, **row} for row in rows]
    table = SmsMessage.__table__
    statement = dialect_insert(session)(table).on_conflict_do_nothing().returning(table.c.id)
    created = set(session.scalars(statement, values))
    return [row["id"] for row in values if row["id"] in created]


def get_message(session: Session, message_id: uuid.UUID) -> SmsMessage | None:
    """The message, or None. Locks: none."""
    return session.get(SmsMessage, message_id)


def messages_to_sweep(
    session: Session, now: datetime, queued_older_than: datetime, limit: int
) -> list[uuid.UUID]:
    """Ids the sweeper should publish again: at most ``limit``, in no particular order.

    Those are sending messages whose lease expired (their worker died), then queued messages that
    are due and were last touched before ``queued_older_than`` (their task was lost, or their
    ``not_before`` has come). Messages of a paused account are left where they are until it is
    resumed. Messages of a batch are left to the batch dispatcher, which sends them in groups
    (worker.services.dispatch). Publishing one twice is harmless: the claim is conditional.
    Locks: none.
    """
    lost = select(SmsMessage.id).where(
        moves.lost(now), SmsMessage.batch_id.is_(None), ~moves.account_paused()
    )
    ids = list(session.scalars(lost.limit(limit)))
    if len(ids) >= limit:
        return ids
    waiting = select(SmsMessage.id).where(
        moves.due(now),
        SmsMessage.updated_at < queued_older_than,
        SmsMessage.batch_id.is_(None),
        ~moves.account_paused(),
    )
    return ids + list(session.scalars(waiting.limit(limit - len(ids))))


def kinds_of(session: Session, ids: Collection[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The kind of each message in ``ids`` that exists (it decides the queue). Locks: none."""
    if not ids:
        return {}
    statement = select(SmsMessage.id, SmsMessage.kind).where(SmsMessage.id.in_(ids))
    return {message_id: kind for message_id, kind in session.execute(statement)}


def count_by_status(
    session: Session, *, account: str | None = None, batch_id: uuid.UUID | None = None
) -> dict[str, int]:
    """How many messages are in each state (states with none are absent). Locks: none."""
    statement = select(SmsMessage.status, func.count()).group_by(SmsMessage.status)
    if account is not None:
        statement = statement.where(SmsMessage.account == account)
    if batch_id is not None:
        statement = statement.where(SmsMessage.batch_id == batch_id)
    return {status: count for status, count in session.execute(statement)}
