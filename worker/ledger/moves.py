"""Every claim, lease and state move of a message (``sms_messages``), in one place.

A move is one conditional UPDATE built by ``_move``, which always checks the state machine (it
touches only rows in the move's ``from_statuses``, and a move ``status.NEXT`` does not allow is
a ValueError when built), always clears the lease (``lease_owner``, ``lease_until``) when the
message goes to any state but ``sending``, and with an ``owner`` touches only rows that worker
still holds (a worker whose lease was taken over cannot overwrite its successor's result).
Every move is then run by ``_apply``, the one place to add what goes with each move in the same
transaction (an outbox row per move is a change there and nowhere else). Claims of one message
and of a chunk use one predicate, ``claimable``. Nothing here commits unless it says so; on
SQLite every write takes the database's write lock until commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    CursorResult,
    Result,
    Table,
    Update,
    and_,
    bindparam,
    exists,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ClauseElement

from worker import clock
from worker.ledger.schema import SmsAccount, SmsMessage
from worker.ledger.status import (
    CANCELLED,
    CLAIMABLE,
    EXPIRED,
    MESSAGE_STATUSES,
    NEXT,
    QUEUED,
    SENDING,
)

_MESSAGES = cast(Table, SmsMessage.__table__)
_COLUMNS = _MESSAGES.c


class LeaseLost(Exception):
    """The worker beginning an attempt no longer holds its message: another one took it over."""


# --- predicates -------------------------------------------------------------------------------


def account_paused() -> ColumnElement[bool]:
    """The message's account is paused (worker.ledger.accounts): its messages wait, queued."""
    return exists().where(SmsAccount.name == _COLUMNS.account, SmsAccount.paused)


def due(now: Any) -> ColumnElement[bool]:
    """Queued, and its ``not_before`` unset or passed (``now``: a datetime or a bindparam)."""
    return and_(
        _COLUMNS.status == QUEUED,
        or_(_COLUMNS.not_before.is_(None), _COLUMNS.not_before <= now),
    )


def lost(now: Any) -> ColumnElement[bool]:
    """Claimed, but its lease ran out: its worker (or its chunk's task) died or was lost."""
    return and_(_COLUMNS.status == SENDING, _COLUMNS.lease_until < now)


def claimable(now: Any) -> ColumnElement[bool]:
    """What a claim takes, one message or a chunk: due or lost, and its account not paused."""
    return and_(or_(due(now), lost(now)), ~account_paused())


# --- the one statement builder and the one place moves run ----------------------------------


def _move(
    to_status: str | None, from_statuses: Collection[str], *where: Any, owner: Any = None,
    **values: Any,
) -> Update:  # fmt: skip
    """The UPDATE of a move from ``from_statuses`` to ``to_status`` (None: the state stays, only
    ``values`` change, e.g. a lease renewal), for the rows matching ``where``.

    Raises ValueError for a move ``status.NEXT`` does not allow; the one stay allowed is a claim
    of a lost message (``sending`` to ``sending``: the lease passes to a new worker). Any state
    but ``sending`` clears the lease. ``owner`` (a value or a bindparam): only rows that worker
    holds. The states are written into the statement rather than bound as an IN list, which an
    executemany (``transition_many``) could not expand.
    """
    if to_status is not None:
        allowed = {state for state in from_statuses if to_status in NEXT.get(state, ())}
        refused = set(from_statuses) - allowed - ({SENDING} if to_status == SENDING else set())
        if refused or not from_statuses:
            refused_from = sorted(str(state) for state in refused) or "nowhere"
            raise ValueError(f"no transition to {str(to_status)!r} from {refused_from}")
    elif not from_statuses:
        raise ValueError("a move names the states it applies to")
    conditions = [or_(*(_COLUMNS.status == state for state in sorted(from_statuses))), *where]
    if owner is not None:
        conditions.append(_COLUMNS.lease_owner == owner)
    new = dict(values)
    if to_status is not None:
        new["status"] = to_status
        if to_status != SENDING:
            new.update(lease_owner=None, lease_until=None)
    return update(_MESSAGES).where(*conditions).values(new)


def _apply(
    session: Session,
    statement: Update,
    params: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    *,
    as_messages: bool = False,
) -> Result[Any]:
    """Run one move. Every claim, lease and state move of a message goes through here, so what
    must happen with each of them in the same transaction (the outbox's event row) is added
    here: a statement RETURNs the ids it moved, an executemany moves exactly the ids of its
    rows (``transition_many`` locks them first).

    ``as_messages``: the statement RETURNs whole rows, loaded as ``SmsMessage`` objects of the
    session by the ORM's loader (for a chunk's 200 rows far cheaper than building each object
    through its constructor)."""
    if as_messages:
        loading = select(SmsMessage).from_statement(statement)
        return session.execute(loading.execution_options(populate_existing=True), params)
    return session.execute(statement, params)


# --- claims -----------------------------------------------------------------------------------


def _claim(which: ColumnElement[bool]) -> Update:
    """A claim: sets the lease and counts the delivery (the poison guard)."""
    return _move(
        SENDING,
        CLAIMABLE,
        which,
        claimable(bindparam("now")),
        lease_until=bindparam("lease_ends"),
        lease_owner=bindparam("owner"),
        delivery_count=_COLUMNS.delivery_count + 1,
        updated_at=bindparam("now"),
    )


# The statements of every send are built once, with bound parameters: building and caching a
# statement costs more than running it.
_CLAIM = _claim(_COLUMNS.id == bindparam("message_id")).returning(*_COLUMNS)
_CLAIM_CHUNK = _claim(_COLUMNS.id.in_(bindparam("ids", expanding=True))).returning(_COLUMNS.id)
_COUNTED = {"attempt_count": _COLUMNS.attempt_count + 1, "request_id": bindparam("request")}
_BY_IDS = _COLUMNS.id.in_(bindparam("message_ids", expanding=True))
_COUNT_ATTEMPT = _move(None, MESSAGE_STATUSES, _BY_IDS, **_COUNTED)
_COUNT_HELD_ATTEMPT = _move(None, (SENDING,), _BY_IDS, owner=bindparam("owner"), **_COUNTED)


def _claim_params(owner: str, now: datetime, seconds: float) -> dict[str, Any]:
    return {"owner": owner, "now": now, "lease_ends": now + timedelta(seconds=seconds)}


def claim_message(
    session: Session, message_id: uuid.UUID, owner: str, lease_seconds: float, now: datetime
) -> SmsMessage | None:
    """Take the message for sending, or None when it is not ours to send.

    Claimable (``claimable``): ``queued`` and due, or ``sending`` with an expired lease (its
    worker died), and its account not paused. Sets the lease and counts the delivery in
    ``delivery_count`` (the poison guard). None: another worker holds it, it is done, not due, or
    its account is paused (the sweeper publishes it again after the resume): ack and stop.
    Commits, so the claim is visible before any slow work starts. The message comes back as a
    snapshot of the row, outside the session (loading it would cost more than the UPDATE).
    """
    params = {"message_id": message_id, **_claim_params(owner, now, lease_seconds)}
    claimed = _apply(session, _CLAIM, params).one_or_none()
    session.commit()
    return SmsMessage(**claimed._mapping) if claimed is not None else None


def claim_chunk(
    session: Session, ids: Collection[uuid.UUID], owner: str, now: datetime, lease_seconds: float
) -> list[uuid.UUID]:
    """Claim the claimable among ``ids`` for one group request; the ids claimed.

    The same rows as ``claim_message`` would take, one by one: sets ``sending`` with the chunk's
    lease and counts a delivery. Locks: those rows until the caller commits.
    """
    if not ids:
        return []
    params = {"ids": list(ids), **_claim_params(owner, now, lease_seconds)}
    return list(_apply(session, _CLAIM_CHUNK, params).scalars())


# --- leases -----------------------------------------------------------------------------------


def mark_handed_over(
    session: Session, ids: Collection[uuid.UUID], now: datetime, lease_seconds: float
) -> list[uuid.UUID]:
    """Mark due queued messages as published to the single-send task; the ids marked.

    They stay ``queued`` (the send task claims them itself); the mark is a lease that keeps the
    dispatcher's next ticks from publishing them again until it runs out (a claim ignores it:
    the task handed the message takes it). A message marked already is left alone. Does not
    commit.
    """
    if not ids:
        return []
    unmarked = or_(_COLUMNS.lease_until.is_(None), _COLUMNS.lease_until < now)
    statement = _move(
        None, (QUEUED,), _COLUMNS.id.in_(ids), due(now), unmarked,
        lease_until=now + timedelta(seconds=lease_seconds), updated_at=now,
    )  # fmt: skip
    return list(_apply(session, statement.returning(_COLUMNS.id), {}).scalars())


def mark_republished(session: Session, ids: Collection[uuid.UUID], now: datetime) -> int:
    """Touch ``updated_at`` of the queued messages among ``ids``; how many were touched.

    The sweeper calls it for what it publishes, so a queued message counts as idle again only
    ``idle_seconds`` later instead of being published on every tick. Messages that moved on
    meanwhile (or were touched after ``now``) are left alone. Locks: those rows until the
    caller commits. Does not commit.
    """
    if not ids:
        return 0
    statement = _move(
        None, (QUEUED,), _COLUMNS.id.in_(ids), _COLUMNS.updated_at < now, updated_at=now
    )
    return len(_apply(session, statement.returning(_COLUMNS.id), {}).scalars().all())


def hold_chunk(
    session: Session, ids: Collection[uuid.UUID], owner: str, now: datetime, lease_seconds: float
) -> list[SmsMessage]:
    """Renew the lease of the messages among ``ids`` that ``owner`` still holds; those messages.

    A message whose lease another dispatcher took over meanwhile is no longer this chunk's.
    Locks: those rows until the caller commits.
    """
    if not ids:
        return []
    statement = _move(
        None, (SENDING,), _COLUMNS.id.in_(ids), owner=owner,
        lease_until=now + timedelta(seconds=lease_seconds), updated_at=now,
    )  # fmt: skip
    return list(_apply(session, statement.returning(*_COLUMNS), {}, as_messages=True).scalars())


def count_attempts(
    session: Session, message_ids: Sequence[uuid.UUID], request_id: uuid.UUID, owner: str | None
) -> None:
    """Count an attempt on each message and set its ``request_id``, in the transaction that
    writes the attempts ahead (worker.ledger.attempts).

    With ``owner``, only while that worker still holds every one of the messages (``sending``,
    its lease): otherwise ``LeaseLost``, and the caller rolls back. Locks: the message rows
    until the caller commits. Does not commit.
    """
    counted = {"message_ids": list(message_ids), "request": request_id}
    if owner is None:
        _apply(session, _COUNT_ATTEMPT, counted)
        return
    held = _apply(session, _COUNT_HELD_ATTEMPT, {**counted, "owner": owner})
    if cast(CursorResult[Any], held).rowcount != len(set(message_ids)):
        raise LeaseLost("the message's lease is held by another worker now")


# --- state moves ------------------------------------------------------------------------------


@lru_cache(maxsize=256)
def _transition_statement(
    to_status: str, statuses: tuple[str, ...], columns: tuple[str, ...], *, by_owner: bool
) -> Update:
    """The UPDATE moving one message (by id) out of ``statuses``, setting ``columns``; built
    once per shape, for the hot send path."""
    values: dict[str, Any] = {name: bindparam(f"new_{name}") for name in columns}
    owner: Any = bindparam("owner") if by_owner else None
    which = _COLUMNS.id == bindparam("message_id")
    return _move(to_status, statuses, which, owner=owner, **values)


def _fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {"updated_at": clock.now(), **fields}


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

    With ``owner``, only while that worker still holds the lease. ``fields`` are set in the same
    UPDATE (``sid``, ``fee``, ``result``, ``reason``...). A move the state machine does not allow
    raises ValueError. False means a duplicate task, report or beat got here first: nothing to
    do. Locks: the row until the caller commits. Does not commit.
    """
    values = _fields(fields)
    computed = {name: value for name, value in values.items() if isinstance(value, ClauseElement)}
    plain = {name: value for name, value in values.items() if name not in computed}
    statuses = tuple(sorted(from_statuses))
    statement = _transition_statement(to_status, statuses, tuple(plain), by_owner=owner is not None)
    statement = statement.values(computed).returning(_COLUMNS.id)
    params = {f"new_{name}": value for name, value in plain.items()}
    params.update(message_id=message_id, owner=owner)
    return _apply(session, statement, params).one_or_none() is not None


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
    statuses = tuple(sorted(from_statuses))
    common = _fields({})
    columns = tuple({**common, **next(iter(fields_by_id.values()), {})})
    # Built first: it refuses a move status.NEXT forbids, whatever the count.
    statement = _transition_statement(to_status, statuses, columns, by_owner=owner is not None)
    if not fields_by_id:
        return []
    movable = (
        select(_COLUMNS.id)
        .where(_COLUMNS.id.in_(list(fields_by_id)), _COLUMNS.status.in_(statuses))
        .order_by(_COLUMNS.id)
        .with_for_update()
    )
    if owner is not None:
        movable = movable.where(_COLUMNS.lease_owner == owner)
    moving = list(session.scalars(movable))
    if moving:
        rows = [
            {
                **{f"new_{name}": value for name, value in {**common, **fields_by_id[id_]}.items()},
                "message_id": id_,
                "owner": owner,
            }
            for id_ in moving
        ]
        _apply(session, statement, rows)
    return moving


def requeue(
    session: Session,
    message_id: uuid.UUID,
    owner: str,
    not_before: datetime | None,
    reason: str | None,
) -> bool:
    """Hand a claimed message back to the queue, to be picked up at ``not_before``.

    For waits too long for a Celery countdown: the sweeper publishes it again once due. Only
    while ``owner`` holds the lease. A hand-back ends its delivery properly, so it leaves
    ``delivery_count``, which counts only deliveries whose worker stopped before finishing (the
    poison guard). Locks: the row until the caller commits. Does not commit.
    """
    return transition(
        session, message_id, QUEUED, from_statuses=(SENDING,), owner=owner,
        not_before=not_before, reason=reason, delivery_count=_COLUMNS.delivery_count - 1,
    )  # fmt: skip


def end_many(
    session: Session, ids: Collection[uuid.UUID], owner: str, to_status: str, **fields: Any
) -> list[uuid.UUID]:
    """Move claimed (``sending``) messages that ``owner`` holds to ``to_status``; those moved.

    Locks: those rows until the caller commits. Does not commit.
    """
    statement = _move(to_status, (SENDING,), _COLUMNS.id.in_(ids), owner=owner, **_fields(fields))
    if not ids:
        return []
    return list(_apply(session, statement.returning(_COLUMNS.id), {}).scalars())


def requeue_many(
    session: Session,
    ids: Collection[uuid.UUID],
    owner: str,
    not_before: datetime | None,
    reason: str | None,
) -> list[uuid.UUID]:
    """Hand claimed messages back to the queue until ``not_before``; the ids handed back.

    As ``requeue`` for many: only while ``owner`` holds them, and the hand-back takes its
    delivery off ``delivery_count``. Locks: those rows until the caller commits.
    """
    return end_many(
        session, ids, owner, QUEUED, reason=reason, not_before=not_before,
        delivery_count=_COLUMNS.delivery_count - 1,
    )  # fmt: skip


def _end_queued(session: Session, to_status: str, which: ColumnElement[bool], reason: str) -> int:
    statement = _move(to_status, (QUEUED,), which, reason=reason, **_fields({}))
    return len(_apply(session, statement.returning(_COLUMNS.id), {}).scalars().all())


def cancel_queued(
    session: Session,
    *,
    batch_id: uuid.UUID | None = None,
    ids: Collection[uuid.UUID] | None = None,
    reason: str,
) -> int:
    """Cancel the queued messages of a batch (or among ``ids``); how many. Does not commit."""
    which: list[ColumnElement[bool]] = [true()]
    if batch_id is not None:
        which.append(_COLUMNS.batch_id == batch_id)
    if ids is not None:
        which.append(_COLUMNS.id.in_(ids))
    return _end_queued(session, CANCELLED, and_(*which), reason)


def expire_queued(session: Session, batch_id: uuid.UUID, reason: str) -> int:
    """Expire the batch's queued messages (its window ended); how many. Does not commit."""
    return _end_queued(session, EXPIRED, _COLUMNS.batch_id == batch_id, reason)
