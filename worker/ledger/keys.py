"""Queries on idempotency keys (see worker.api.idempotency for what a key means)."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from worker.ledger.schema import SmsMessage


def messages_with_keys(
    session: Session, accounts: Collection[str], keys: Collection[str]
) -> list[SmsMessage]:
    """The messages of ``accounts`` holding any of ``keys``. Naming the accounts lets the
    (account, idempotency_key) unique index serve the lookup. Locks: none."""
    if not accounts or not keys:
        return []
    statement = select(SmsMessage).where(
        SmsMessage.account.in_(list(accounts)), SmsMessage.idempotency_key.in_(list(keys))
    )
    return list(session.scalars(statement))


def lock_key(session: Session, key: str) -> None:
    """Hold ``key`` until the caller's transaction ends, so that two requests with one key in
    different accounts (which the unique index, per account, lets both in) take turns and the
    second finds the first. PostgreSQL: an advisory transaction lock on the key's hash (a rare
    collision only makes two keys wait for each other). SQLite needs none: a writer holds the
    whole database until it commits."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(key, 0))))
