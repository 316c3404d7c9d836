"""Queries on ``sms_accounts``: pausing an account and resuming it.

An account is paused when the gateway says it cannot send (1031 prepaid package exhausted, 1033
suspended for arrears) or a person decides so. While paused, ``messages.claim_message`` and
``messages.messages_to_sweep`` pass its messages by, so they stay ``queued`` without spending
requests, and the sweeper sends them once it is resumed. Nothing here commits: callers own their
transactions.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from worker.ledger.db import dialect_insert
from worker.ledger.schema import SmsAccount


def pause_account(
    session: Session, name: str, *, code: int | None, reason: str, now: datetime
) -> bool:
    """Pause ``name``; True if this paused it, False if it was paused already.

    An account already paused keeps the code, reason and time of the pause that stopped it first,
    so a burst of 1031s from many workers records one pause. Race-safe: one INSERT .. ON CONFLICT
    DO UPDATE. Locks: the account's row until the caller commits. Does not commit.
    """
    pause = {"paused": True, "paused_at": now, "paused_code": code, "paused_reason": reason}
    insert = dialect_insert(session)(SmsAccount).values(name=name, updated_at=now, **pause)
    statement = insert.on_conflict_do_update(
        index_elements=[SmsAccount.name],
        set_={**pause, "updated_at": now},
        where=~SmsAccount.paused,
    ).returning(SmsAccount.name)
    return session.scalars(statement).one_or_none() is not None


def resume_account(session: Session, name: str, now: datetime) -> bool:
    """Resume ``name``; True if it was paused. Locks: its row until the caller commits."""
    statement = (
        update(SmsAccount)
        .where(SmsAccount.name == name, SmsAccount.paused)
        .values(paused=False, resumed_at=now, updated_at=now)
        .returning(SmsAccount.name)
    )
    return session.scalars(statement).one_or_none() is not None


def paused_accounts(session: Session) -> dict[str, SmsAccount]:
    """The accounts paused now, by name. Locks: none."""
    statement = select(SmsAccount).where(SmsAccount.paused).order_by(SmsAccount.name)
    return {account.name: account for account in session.scalars(statement)}


def is_paused(session: Session, name: str) -> bool:
    """Whether ``name`` is paused now. Locks: none."""
    statement = select(SmsAccount.name).where(SmsAccount.name == name, SmsAccount.paused)
    return session.scalars(statement).first() is not None
