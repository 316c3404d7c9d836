"""Numbers that must not receive marketing: added by replies (TD, STOP, 退订...) or by a person."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import delete, select, tuple_
from sqlalchemy.orm import Session

from worker.ledger.db import dialect_insert
from worker.ledger.schema import SmsOptOut

# Checked a chunk at a time so a large batch does not build one enormous IN list.
LOOKUP_CHUNK = 500


def add_opt_out(
    session: Session, nationcode: str, mobile: str, *, source: str, reason: str = ""
) -> bool:
    """Opt the number out; False if it already was. Locks: the new row. Does not commit."""
    statement = (
        dialect_insert(session)(SmsOptOut)
        .values(nationcode=nationcode, mobile=mobile, source=source, reason=reason)
        .on_conflict_do_nothing(index_elements=["nationcode", "mobile"])
        .returning(SmsOptOut.mobile)
    )
    return session.scalars(statement).first() is not None


def remove_opt_out(session: Session, nationcode: str, mobile: str) -> bool:
    """Take the number off the list; whether it was on it. Does not commit."""
    statement = (
        delete(SmsOptOut)
        .where(SmsOptOut.nationcode == nationcode, SmsOptOut.mobile == mobile)
        .returning(SmsOptOut.mobile)
    )
    return session.scalars(statement).first() is not None


def opted_out(session: Session, numbers: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which of the (nationcode, mobile) pairs are opted out. Locks: none."""
    wanted = list(numbers)
    found: set[tuple[str, str]] = set()
    for start in range(0, len(wanted), LOOKUP_CHUNK):
        chunk = wanted[start : start + LOOKUP_CHUNK]
        rows = session.execute(
            select(SmsOptOut.nationcode, SmsOptOut.mobile).where(
                tuple_(SmsOptOut.nationcode, SmsOptOut.mobile).in_(chunk)
            )
        )
        found.update((nationcode, mobile) for nationcode, mobile in rows)
    return found


def is_opted_out(session: Session, nationcode: str, mobile: str) -> bool:
    return bool(opted_out(session, [(nationcode, mobile)]))


def list_opt_outs(session: Session, *, limit: int | None = None) -> list[SmsOptOut]:
    """The opted-out numbers, newest first. Locks: none."""
    statement = select(SmsOptOut).order_by(SmsOptOut.created_at.desc()).limit(limit)
    return list(session.scalars(statement))
