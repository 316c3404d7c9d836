"""Queries on idempotency keys (see worker.idempotency for what a key means)."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import select
from sqlalchemy.orm import Session

from worker.ledger.models import SmsMessage


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
