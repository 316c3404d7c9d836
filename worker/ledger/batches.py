"""Queries on ``sms_batches``, ``sms_batch_rejections``, and reads of the messages of a batch.

Every change of a batch's state is one conditional UPDATE, so a second beat, a late chunk task or
a repeated command finds nothing left to do. The dispatcher holds a batch by a lease
(``lease_owner``/``lease_until``) for one tick. The messages' claims, leases and moves (a chunk
is held by the message lease columns, with the chunk's own owner string) are in
``worker.ledger.moves``. Nothing here commits unless it says so.

On SQLite a transaction that will write should start with its write: a read first and a write
after another connection committed fails with "database is locked" instead of waiting.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, String, and_, case, cast, func, or_, select, update
from sqlalchemy.orm import Session

from worker.ledger import moves
from worker.ledger.schema import SmsBatch, SmsMessage
from worker.ledger.status import CLAIMABLE, DISPATCHABLE, BatchStatus

# --- batches ---------------------------------------------------------------------------------


def insert_batch(session: Session, **fields: Any) -> SmsBatch:
    """A new batch (``importing`` unless ``status`` says otherwise). Does not commit."""
    batch = SmsBatch(**{"status": BatchStatus.IMPORTING, **fields})
    session.add(batch)
    session.flush()
    return batch


def get_batch(session: Session, batch_id: uuid.UUID) -> SmsBatch | None:
    """The batch, read afresh. Locks: none."""
    return session.get(SmsBatch, batch_id, populate_existing=True)


def batches_by_prefix(session: Session, prefix: str, limit: int = 2) -> list[SmsBatch]:
    """Batches whose id starts with ``prefix`` (hex digits and dashes), at most ``limit``."""
    text = prefix.strip().lower()
    try:
        return [b for b in [get_batch(session, uuid.UUID(text))] if b is not None]
    except ValueError:
        pass
    # UUIDs are stored natively on PostgreSQL and as 32 hex digits on SQLite.
    hex_prefix = text.replace("-", "")
    if not hex_prefix or any(char not in "0123456789abcdef" for char in hex_prefix):
        return []
    column = func.replace(cast(SmsBatch.id, String), "-", "")
    statement = select(SmsBatch).where(column.startswith(hex_prefix)).limit(limit)
    return list(session.scalars(statement))


def list_batches(session: Session, *, limit: int = 50) -> list[SmsBatch]:
    """The newest batches first. Locks: none."""
    return list(session.scalars(select(SmsBatch).order_by(SmsBatch.created_at.desc()).limit(limit)))


def batch_by_key(session: Session, account: str, key: str) -> SmsBatch | None:
    """The batch ``account`` created with idempotency ``key``, read afresh. Locks: none."""
    statement = select(SmsBatch).where(SmsBatch.account == account, SmsBatch.idempotency_key == key)
    return session.scalars(statement.execution_options(populate_existing=True)).one_or_none()


def hold_fingerprint(session: Session, fingerprint: str) -> None:
    """Serialise the creations of batches with this ``fingerprint`` until the caller commits,
    so that of two creates of the same input at once the second sees the first.

    PostgreSQL: a transaction-level advisory lock on the fingerprint's first 8 bytes. SQLite:
    nothing to do, a creation's transaction starts with its write, which holds the database.
    """
    if session.get_bind().dialect.name == "postgresql":
        lock = int.from_bytes(bytes.fromhex(fingerprint[:16]), "big", signed=True)
        session.execute(select(func.pg_advisory_xact_lock(lock)))


def earlier_with_fingerprint(
    session: Session, account: str, fingerprint: str, since: datetime, other_than: uuid.UUID
) -> SmsBatch | None:
    """The newest batch of ``account`` created from the same input since ``since``, except a
    batch cancelled before anything of it went out (nothing of it can be repeated). Locks: none.
    """
    never_sent = and_(SmsBatch.status == BatchStatus.CANCELLED, SmsBatch.dispatched_at.is_(None))
    statement = (
        select(SmsBatch)
        .where(
            SmsBatch.account == account,
            SmsBatch.fingerprint == fingerprint,
            SmsBatch.created_at >= since,
            SmsBatch.id != other_than,
            ~never_sent,
        )
        .order_by(SmsBatch.created_at.desc())
        .limit(1)
    )
    return session.scalars(statement).one_or_none()


def move_batch(
    session: Session,
    batch_id: uuid.UUID,
    to_status: str,
    *,
    from_statuses: Collection[str],
    now: datetime,
    **fields: Any,
) -> bool:
    """Move the batch to ``to_status`` if it is in one of ``from_statuses``; whether it moved.

    Locks: its row until the caller commits. Does not commit.
    """
    statement = (
        update(SmsBatch)
        .where(SmsBatch.id == batch_id, SmsBatch.status.in_(from_statuses))
        .values(status=to_status, updated_at=now, **fields)
        .returning(SmsBatch.id)
        .execution_options(synchronize_session=False)
    )
    return session.scalars(statement).one_or_none() is not None


def pause_batch(session: Session, batch_id: uuid.UUID, now: datetime) -> bool:
    """Stop sending the batch; its queued messages wait. Its UPDATE waits for the sends writing
    their attempts ahead (``state_for_sending``), so once committed no later send goes out.
    Does not commit."""
    return move_batch(session, batch_id, BatchStatus.PAUSED, from_statuses=DISPATCHABLE, now=now)


def resume_batch(session: Session, batch_id: uuid.UUID, now: datetime) -> bool:
    """Dispatch a paused batch again (``sending`` if it had started). Does not commit."""
    started = case(
        (SmsBatch.dispatched_at.is_(None), BatchStatus.SCHEDULED), else_=BatchStatus.SENDING
    )
    statement = (
        update(SmsBatch)
        .where(SmsBatch.id == batch_id, SmsBatch.status == BatchStatus.PAUSED)
        .values(status=started, updated_at=now)
        .returning(SmsBatch.id)
        .execution_options(synchronize_session=False)
    )
    return session.scalars(statement).one_or_none() is not None


def cancel_batch(session: Session, batch_id: uuid.UUID, now: datetime, reason: str) -> int | None:
    """Cancel the batch and, at once, its queued messages; how many (None: not cancellable).

    Messages already claimed for a request are left to their send, which cancels those it has
    not sent yet (``state_for_sending``, whose lock the UPDATE waits for). Locks: the batch row
    and those messages until the caller commits.
    """
    cancellable = (*DISPATCHABLE, BatchStatus.PAUSED)
    if not move_batch(
        session, batch_id, BatchStatus.CANCELLED, from_statuses=cancellable, now=now,
        finished_at=now, lease_owner=None, lease_until=None,
    ):  # fmt: skip
        return None
    return moves.cancel_queued(session, batch_id=batch_id, reason=reason)


def state_for_sending(session: Session, batch_id: uuid.UUID, *, hold: bool = True) -> str | None:
    """The batch's state, held against pause, resume and cancel until the caller commits (None:
    no such batch). ``hold=False``: only read it (a check before the one that counts).

    A send reads it in the transaction that writes its attempts ahead, before any other
    statement. PostgreSQL: ``SELECT .. FOR SHARE``, which the UPDATE of ``pause_batch`` or
    ``cancel_batch`` waits for; so a pause returns only after the write-aheads that read
    ``sending`` have committed, and every write-ahead after it reads ``paused``. Sends do not
    wait for each other. SQLite: a write that changes nothing, which takes the database's write
    lock first (a read first would fail once another connection commits); writes are serialized
    there, so the same order holds. Locks: the batch row (SQLite: the database) until the caller
    commits. Does not commit.
    """
    if not hold:
        return session.scalars(select(SmsBatch.status).where(SmsBatch.id == batch_id)).first()
    if session.get_bind().dialect.name == "sqlite":
        touch = (
            update(SmsBatch)
            .where(SmsBatch.id == batch_id)
            .values(status=SmsBatch.status, updated_at=SmsBatch.updated_at)
            .returning(SmsBatch.status)
            .execution_options(synchronize_session=False)
        )
        return session.scalars(touch).one_or_none()
    shared = select(SmsBatch.status).where(SmsBatch.id == batch_id).with_for_update(read=True)
    return session.scalars(shared).one_or_none()


def claim_due_batches(
    session: Session, owner: str, now: datetime, lease_seconds: float
) -> list[SmsBatch]:
    """Lease every batch due for dispatching that no one else holds; those leased.

    One conditional UPDATE: of two dispatchers ticking at once, each batch goes to one. Locks:
    those rows, for this statement only. Commits.
    """
    statement = (
        update(SmsBatch)
        .where(
            SmsBatch.status.in_(DISPATCHABLE),
            SmsBatch.start_at <= now,
            or_(SmsBatch.lease_until.is_(None), SmsBatch.lease_until < now),
        )
        .values(lease_owner=owner, lease_until=now + timedelta(seconds=lease_seconds))
        .returning(SmsBatch)
        .execution_options(populate_existing=True, synchronize_session=False)
    )
    claimed = list(session.scalars(statement))
    session.commit()
    return claimed


def release_batch(session: Session, batch_id: uuid.UUID, owner: str) -> None:
    """Give the dispatcher's lease back. Does not commit."""
    session.execute(
        update(SmsBatch)
        .where(SmsBatch.id == batch_id, SmsBatch.lease_owner == owner)
        .values(lease_owner=None, lease_until=None)
        .execution_options(synchronize_session=False)
    )


# --- the messages of a batch -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Candidate:
    """A message the dispatcher may send now, with what decides its group."""

    id: uuid.UUID
    status: str  # queued, or sending with its lease run out (its chunk was lost)
    params_key: str | None
    nationcode: str


def _unmarked(now: datetime) -> ColumnElement[bool]:
    """Not handed to a single-send task already (``moves.mark_handed_over``), or its mark ran
    out."""
    return or_(SmsMessage.lease_until.is_(None), SmsMessage.lease_until < now)


def dispatch_candidates(
    session: Session, batch_id: uuid.UUID, now: datetime, limit: int
) -> list[Candidate]:
    """Up to ``limit`` messages of the batch to send now: lost ones first, then queued ones,
    ordered so that equal params (and domestic or not) come together. Locks: none."""
    columns = (SmsMessage.id, SmsMessage.status, SmsMessage.params_key, SmsMessage.nationcode)
    found: list[Candidate] = []
    for due in (moves.lost(now), and_(moves.due(now), _unmarked(now))):
        if len(found) >= limit:
            break
        statement = (
            select(*columns)
            .where(SmsMessage.batch_id == batch_id, due)
            .order_by(SmsMessage.params_key, SmsMessage.nationcode)
            .limit(limit - len(found))
        )
        found += [Candidate(*row) for row in session.execute(statement)]
    return found


def lost_in_cancelled_batches(session: Session, now: datetime, limit: int) -> list[Candidate]:
    """Messages of cancelled batches whose chunk was lost: still ``sending``, to be settled
    (cancelled, or unknown if a request may have gone out). Locks: none."""
    columns = (SmsMessage.id, SmsMessage.status, SmsMessage.params_key, SmsMessage.nationcode)
    statement = (
        select(*columns)
        .join(SmsBatch, SmsBatch.id == SmsMessage.batch_id)
        .where(SmsBatch.status == BatchStatus.CANCELLED, moves.lost(now))
        .limit(limit)
    )
    return [Candidate(*row) for row in session.execute(statement)]


def in_flight(session: Session, account: str, now: datetime) -> int:
    """Batch messages of ``account`` handed to tasks that have not finished. Locks: none."""
    statement = select(func.count()).where(
        SmsMessage.account == account,
        SmsMessage.batch_id.is_not(None),
        SmsMessage.status.in_(CLAIMABLE),
        SmsMessage.lease_until >= now,
    )
    return session.scalar(statement) or 0


def unsettled(session: Session, batch_id: uuid.UUID) -> int:
    """The batch's messages still queued or sending. Locks: none."""
    statement = select(func.count()).where(
        SmsMessage.batch_id == batch_id, SmsMessage.status.in_(CLAIMABLE)
    )
    return session.scalar(statement) or 0


def finish_if_empty(session: Session, batch_id: uuid.UUID, now: datetime) -> bool:
    """Mark the batch ``done`` when none of its messages is queued or sending; whether it did."""
    if unsettled(session, batch_id):
        return False
    return move_batch(
        session, batch_id, BatchStatus.DONE, from_statuses=DISPATCHABLE, now=now, finished_at=now
    )
