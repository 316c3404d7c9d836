"""Queries on ``sms_messages``. Every state change is one conditional UPDATE.

A function that does not say it commits leaves the transaction to its caller, so a producer can
write its messages inside its own transaction and a worker can record an attempt and move its
message atomically. On SQLite every write takes the database's single write lock until commit:
keep those transactions short.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import Table, Update, and_, bindparam, exists, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ClauseElement

from worker import clock
from worker.ledger.models import SmsAccount, SmsMessage
from worker.ledger.status import NEXT, QUEUED, SENDING


def dialect_insert(session: Session) -> Any:
    """The dialect's INSERT, which knows ON CONFLICT (DO NOTHING, DO UPDATE)."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert
    if dialect == "sqlite":
        return sqlite.insert
    raise NotImplementedError(f"the ledger supports PostgreSQL and SQLite, not {dialect}")


# The message's account is paused (worker.ledger.accounts): its messages wait, queued.
_ACCOUNT_PAUSED = exists().where(SmsAccount.name == SmsMessage.account, SmsAccount.paused)
_MESSAGES = cast(Table, SmsMessage.__table__)

# The statements of every send are built once, with bound parameters: building and caching a
# statement costs more than running it. This one is claim_message's.
_CLAIM = (
    update(_MESSAGES)
    .where(
        _MESSAGES.c.id == bindparam("message_id"),
        or_(
            and_(
                _MESSAGES.c.status == QUEUED,
                or_(_MESSAGES.c.not_before.is_(None), _MESSAGES.c.not_before <= bindparam("now")),
            ),
            and_(_MESSAGES.c.status == SENDING, _MESSAGES.c.lease_until < bindparam("now")),
        ),
        ~_ACCOUNT_PAUSED,
    )
    .values(
        status=SENDING,
        lease_until=bindparam("lease_ends"),
        lease_owner=bindparam("owner"),
        delivery_count=_MESSAGES.c.delivery_count + 1,
        updated_at=bindparam("now"),
    )
    .returning(*_MESSAGES.c)
)


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


def claim_message(
    session: Session, message_id: uuid.UUID, owner: str, lease_seconds: float, now: datetime
) -> SmsMessage | None:
    """Take the message for sending, or None when it is not ours to send.

    Claimable: ``queued`` and due (``not_before`` unset or passed), or ``sending`` with an expired
    lease (its worker died), and its account not paused. One conditional UPDATE sets the lease and
    counts the delivery in ``delivery_count`` (the caller compares it with ``SMS_MAX_DELIVERIES``).
    None means another worker holds it, it is done, it is not due yet, or its account is paused
    (the sweeper publishes it again after the resume): ack the task and stop. Locks: the row, only
    for this statement. Commits, so the claim is visible before any slow work starts. The message
    comes back as a snapshot of the claimed row, outside the session (loading it into the session
    would cost more than the UPDATE).
    """
    params = {
        "message_id": message_id,
        "owner": owner,
        "now": now,
        "lease_ends": now + timedelta(seconds=lease_seconds),
    }
    claimed = session.execute(_CLAIM, params).one_or_none()
    session.commit()
    return SmsMessage(**claimed._mapping) if claimed is not None else None


def transition(
    session: Session,
    message_id: uuid.UUID,
    to_status: str,
    *,
    from_statuses: Collection[str],
    owner: str | None = None,
    **fields: Any,
) -> bool:
    """Move the message to ``to_status`` if it is in one of ``from_statuses``; whether it moved.

    With ``owner``, only while that worker still holds the lease, so a worker whose lease was
    taken over cannot overwrite its successor's result. ``fields`` are set in the same UPDATE
    (``sid``, ``fee``, ``result``, ``reason``...). Leaving ``sending`` clears the lease. A move
    the state machine does not allow (``status.NEXT``) raises ValueError. False means a duplicate
    task, report or beat got here first: nothing to do. Locks: the row until the caller commits.
    Does not commit.
    """
    values = _new_values(to_status, from_statuses, fields)
    computed = {name: value for name, value in values.items() if isinstance(value, ClauseElement)}
    plain = {name: value for name, value in values.items() if name not in computed}
    statement = _transition_statement(
        tuple(plain), tuple(sorted(from_statuses)), by_owner=owner is not None, returning=True
    )
    if computed:
        statement = statement.values(computed)
    params = {f"new_{name}": value for name, value in plain.items()}
    params.update(message_id=message_id, owner=owner)
    return session.execute(statement, params).one_or_none() is not None


def transition_many(
    session: Session,
    fields_by_id: Mapping[uuid.UUID, Mapping[str, Any]],
    to_status: str,
    *,
    from_statuses: Collection[str],
    owner: str | None = None,
) -> list[uuid.UUID]:
    """``transition`` for many messages, each with its own ``fields`` (the same names for all,
    plain values); the ids of those moved, in id order.

    Two statements whatever the count, so a group answer of 200 numbers is not 200 round
    trips: the messages still in ``from_statuses`` (and held by ``owner``) are locked, then all
    of them updated in one executemany. SQLite has no row locks: there the database's write
    lock, which a transaction holds from its first write, makes the ids exact, so call this
    after one. Locks: those rows until the caller commits. Does not commit.
    """
    common = _new_values(to_status, from_statuses, {})  # refuses a move status.NEXT forbids
    if not fields_by_id:
        return []
    table = _MESSAGES.c
    movable = (
        select(table.id)
        .where(table.id.in_(list(fields_by_id)), table.status.in_(list(from_statuses)))
        .order_by(table.id)
        .with_for_update()
    )
    if owner is not None:
        movable = movable.where(table.lease_owner == owner)
    moving = list(session.scalars(movable))
    if moving:
        columns = tuple({**common, **next(iter(fields_by_id.values()))})
        statement = _transition_statement(
            columns, tuple(sorted(from_statuses)), by_owner=owner is not None, returning=False
        )
        rows = [
            {
                **{f"new_{name}": value for name, value in {**common, **fields_by_id[id_]}.items()},
                "message_id": id_,
                "owner": owner,
            }
            for id_ in moving
        ]
        session.execute(statement, rows)
    return moving


def _new_values(
    to_status: str, from_statuses: Collection[str], fields: Mapping[str, Any]
) -> dict[str, Any]:
    """What a move to ``to_status`` sets; ValueError for a move ``status.NEXT`` does not allow."""
    refused = [state for state in from_statuses if to_status not in NEXT.get(state, ())]
    if refused or not from_statuses:
        raise ValueError(f"no transition to {to_status!r} from {sorted(refused) or 'nowhere'}")
    values: dict[str, Any] = {"status": to_status, "updated_at": clock.now(), **fields}
    if to_status != SENDING:
        values.update(lease_until=None, lease_owner=None)
    return values


@lru_cache(maxsize=128)
def _transition_statement(
    columns: tuple[str, ...], statuses: tuple[str, ...], *, by_owner: bool, returning: bool
) -> Update:
    """The UPDATE moving one message (by id) out of ``statuses``, setting ``columns``; built
    once per shape. The states are written into the statement rather than bound as an IN list,
    which an executemany (``transition_many``) could not expand."""
    table = _MESSAGES.c
    conditions = [table.id == bindparam("message_id"), or_(*(table.status == s for s in statuses))]
    if by_owner:
        conditions.append(table.lease_owner == bindparam("owner"))
    values: dict[str, Any] = {name: bindparam(f"new_{name}") for name in columns}
    statement = update(_MESSAGES).where(*conditions).values(values)
    return statement.returning(table.id) if returning else statement


def requeue(
    session: Session,
    message_id: uuid.UUID,
    owner: str,
    not_before: datetime | None,
    reason: str | None,
) -> bool:
    """Hand a claimed message back to the queue, to be picked up at ``not_before``.

    For waits too long for a Celery countdown (the next day, 08:00 Beijing time): the sweeper
    publishes it again once it is due. Only while ``owner`` holds the lease. A hand-back ends its
    delivery properly, so that delivery leaves ``delivery_count``, which then counts only the
    deliveries whose worker stopped before finishing (the poison guard). Locks: the row until
    the caller commits. Does not commit.
    """
    return transition(
        session,
        message_id,
        QUEUED,
        from_statuses=(SENDING,),
        owner=owner,
        not_before=not_before,
        reason=reason,
        delivery_count=SmsMessage.delivery_count - 1,
    )


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
        SmsMessage.status == SENDING,
        SmsMessage.lease_until < now,
        SmsMessage.batch_id.is_(None),
        ~_ACCOUNT_PAUSED,
    )
    ids = list(session.scalars(lost.limit(limit)))
    if len(ids) >= limit:
        return ids
    waiting = select(SmsMessage.id).where(
        SmsMessage.status == QUEUED,
        or_(SmsMessage.not_before.is_(None), SmsMessage.not_before <= now),
        SmsMessage.updated_at < queued_older_than,
        SmsMessage.batch_id.is_(None),
        ~_ACCOUNT_PAUSED,
    )
    return ids + list(session.scalars(waiting.limit(limit - len(ids))))


def kinds_of(session: Session, ids: Collection[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The kind of each message in ``ids`` that exists (it decides the queue). Locks: none."""
    if not ids:
        return {}
    statement = select(SmsMessage.id, SmsMessage.kind).where(SmsMessage.id.in_(ids))
    return {message_id: kind for message_id, kind in session.execute(statement)}


def mark_republished(session: Session, ids: Collection[uuid.UUID], now: datetime) -> int:
    """Touch ``updated_at`` of the queued messages among ``ids``; how many were touched.

    The sweeper calls it for what it publishes, so a queued message counts as idle again only
    ``idle_seconds`` later instead of being published on every tick. Messages that moved on
    meanwhile (or were touched after ``now``) are left alone. Locks: those rows until the
    caller commits. Does not commit.
    """
    if not ids:
        return 0
    statement = (
        update(SmsMessage)
        .where(SmsMessage.id.in_(ids), SmsMessage.status == QUEUED, SmsMessage.updated_at < now)
        .values(updated_at=now)
        .returning(SmsMessage.id)
        .execution_options(synchronize_session=False)
    )
    return len(session.scalars(statement).all())


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
