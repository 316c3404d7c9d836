"""Finance's queries: usage figures, the daily rollup, streaming exports, the price list.

Periods are half-open ``[start, end)`` of aware datetimes; the caller cuts them into Beijing days
or hours, so no query needs a dialect's date functions. Messages belong to a period by
``created_at``, attempts by ``started_at``. Reads take no locks.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, fields
from datetime import date, datetime
from decimal import Decimal
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import ColumnElement, RowMapping, Select, case, delete, func, select
from sqlalchemy.orm import Session

from worker.ledger.db import dialect_insert
from worker.ledger.schema import SmsAttempt, SmsDailyUsage, SmsMessage, SmsPrice
from worker.ledger.schema.finance import NO_SIGN, NO_TEMPLATE
from worker.ledger.status import BILLABLE, DELIVERED


class UsageKey(NamedTuple):
    """What a usage figure is about; ``tpl_id`` None for free text, ``sign`` None when unnamed."""

    account: str
    tpl_id: int | None
    sign: str | None
    nationcode: str
    kind: str
    status: str


@dataclass(slots=True)
class UsageFigures:
    messages: int = 0
    accepted: int = 0
    delivered: int = 0
    attempts: int = 0
    successes: int = 0
    billed_segments: int = 0
    retry_attempts: int = 0

    def add(self, other: UsageFigures) -> None:
        for name in FIGURES:
            setattr(self, name, getattr(self, name) + getattr(other, name))


FIGURES = tuple(field.name for field in fields(UsageFigures))
Usage = dict[UsageKey, UsageFigures]


def _key(columns: Sequence[Any]) -> UsageKey:
    # The rollup stores "none" as 0 and ''; the live tables as NULL. Both read back as None.
    account, tpl_id, sign, nationcode, kind, status = columns
    return UsageKey(account, tpl_id or None, sign or None, nationcode, kind, status)


def count_where(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def fees_where(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((condition, func.coalesce(SmsAttempt.fee, 0)), else_=0)), 0)


AnySelect = TypeVar("AnySelect", bound=Select[*tuple[Any, ...]])


def for_accounts(statement: AnySelect, accounts: Collection[str] | None) -> AnySelect:
    return statement if accounts is None else statement.where(SmsMessage.account.in_(accounts))


_KEY_COLUMNS = (
    SmsMessage.account,
    SmsMessage.tpl_id,
    SmsMessage.sign,
    SmsMessage.nationcode,
    SmsMessage.kind,
    SmsMessage.status,
)


def live_usage(
    session: Session, start: datetime, end: datetime, *, accounts: Collection[str] | None = None
) -> Usage:
    """Usage in ``[start, end)`` computed from the live tables, by full key."""
    usage: Usage = {}
    by_message = for_accounts(
        select(
            *_KEY_COLUMNS,
            func.count(),
            count_where(SmsMessage.status.in_(BILLABLE)),
            count_where(SmsMessage.status == DELIVERED),
        )
        .where(SmsMessage.created_at >= start, SmsMessage.created_at < end)
        .group_by(*_KEY_COLUMNS),
        accounts,
    )
    for *key, messages, accepted, delivered in session.execute(by_message):
        figures = usage.setdefault(_key(key), UsageFigures())
        figures.add(UsageFigures(messages=messages, accepted=accepted, delivered=delivered))
    success = SmsAttempt.result == 0
    by_attempt = for_accounts(
        select(
            *_KEY_COLUMNS,
            func.count(),
            count_where(success),
            fees_where(success),
            count_where(SmsAttempt.attempt_no > 1),
        )
        .join(SmsMessage, SmsMessage.id == SmsAttempt.message_id)
        .where(SmsAttempt.started_at >= start, SmsAttempt.started_at < end)
        .group_by(*_KEY_COLUMNS),
        accounts,
    )
    for *key, attempts, successes, billed, retries in session.execute(by_attempt):
        figures = usage.setdefault(_key(key), UsageFigures())
        figures.add(
            UsageFigures(
                attempts=attempts,
                successes=successes,
                billed_segments=billed,
                retry_attempts=retries,
            )
        )
    return usage


def daily_usage(
    session: Session, first: date, last: date, *, accounts: Collection[str] | None = None
) -> dict[date, Usage]:
    """The rollup's rows for the Beijing days ``first`` to ``last`` (both included)."""
    by_key = rolled_up_usage(session, first, last, UsageKey._fields, accounts=accounts)
    return {
        day: {UsageKey(*key): figures for key, figures in day_usage.items()}
        for day, day_usage in by_key.items()
    }


def rolled_up_usage(
    session: Session,
    first: date,
    last: date,
    fields: Sequence[str],
    *,
    accounts: Collection[str] | None = None,
) -> dict[date, dict[tuple[Any, ...], UsageFigures]]:
    """The rollup's figures for the Beijing days ``first`` to ``last`` (both included), added up
    in the database by day and the ``fields`` of ``UsageKey`` named (in that order).

    A month of rows is tens of thousands; grouped by the few fields a summary shows, it comes
    back as a few hundred, so the adding is done where the rows are.
    """
    unknown = set(fields) - set(UsageKey._fields)
    if unknown:
        raise ValueError(f"not a field of the usage key: {', '.join(sorted(unknown))}")
    table = SmsDailyUsage
    columns = [getattr(table, name) for name in fields]
    statement = (
        select(table.day, *columns, *(func.sum(getattr(table, name)) for name in FIGURES))
        .where(table.day >= first, table.day <= last)
        .group_by(table.day, *columns)
    )
    if accounts is not None:
        statement = statement.where(table.account.in_(accounts))
    days: dict[date, dict[tuple[Any, ...], UsageFigures]] = {}
    # The rollup stores "none" as 0 and ''; the live tables as NULL. Both read back as None.
    nones = [name in ("tpl_id", "sign") for name in fields]
    for day, *values in session.execute(statement):
        key = tuple(
            (value or None) if none else value
            for value, none in zip(values[: len(fields)], nones, strict=True)
        )
        figures = UsageFigures(*(int(value) for value in values[len(fields) :]))
        days.setdefault(day, {})[key] = figures
    return days


def upsert_daily_usage(session: Session, day: date, usage: Usage, now: datetime) -> int:
    """Write one day's usage on its natural key; the rows written.

    INSERT .. ON CONFLICT DO UPDATE, then the day's rows this run did not write are deleted:
    a key that no longer exists (its messages moved from ``sent`` to ``delivered``) must not
    keep its old figures. A concurrent run of the same day computes the same figures; the
    delete only takes rows older than this run's ``now``. Locks: the day's rows until the
    caller commits. Does not commit.
    """
    table = SmsDailyUsage.__table__
    rows = [
        {
            "day": day,
            "account": key.account,
            "tpl_id": key.tpl_id or NO_TEMPLATE,
            "sign": key.sign or NO_SIGN,
            "nationcode": key.nationcode,
            "kind": key.kind,
            "status": key.status,
            **{name: getattr(figures, name) for name in FIGURES},
            "updated_at": now,
        }
        for key, figures in usage.items()
    ]
    if rows:
        # One statement with the rows as parameters (executemany): it compiles once and is
        # cached. Rows written into the statement (.values(rows)) were compiled anew on every
        # call, seconds for a day of a thousand keys.
        statement = dialect_insert(session)(table)
        changes = {name: statement.excluded[name] for name in (*FIGURES, "updated_at")}
        upsert = statement.on_conflict_do_update(
            index_elements=list(table.primary_key), set_=changes
        )
        session.execute(upsert, rows)
    session.execute(
        delete(SmsDailyUsage).where(SmsDailyUsage.day == day, SmsDailyUsage.updated_at < now)
    )
    return len(rows)


# --- exports -----------------------------------------------------------------------------------


def stream_messages(
    session: Session,
    start: datetime,
    end: datetime,
    *,
    accounts: Collection[str] | None = None,
    batch: int = 1000,
) -> Iterator[RowMapping]:
    """Every message created in ``[start, end)``, oldest first, as plain rows.

    Fetched ``batch`` rows at a time (a server-side cursor on PostgreSQL), so memory stays
    constant whatever the period. Holds the session's transaction open while iterating.
    """
    table = SmsMessage.__table__
    statement = for_accounts(
        select(table)
        .where(SmsMessage.created_at >= start, SmsMessage.created_at < end)
        .order_by(SmsMessage.created_at, SmsMessage.id),
        accounts,
    )
    yield from session.execute(statement.execution_options(yield_per=batch)).mappings()


def stream_attempts(
    session: Session,
    start: datetime,
    end: datetime,
    *,
    accounts: Collection[str] | None = None,
    batch: int = 1000,
) -> Iterator[RowMapping]:
    """Every attempt started in ``[start, end)`` with its message's account, kind and country."""
    statement = for_accounts(
        select(
            SmsAttempt.__table__,
            SmsMessage.account,
            SmsMessage.kind,
            SmsMessage.nationcode,
        )
        .join(SmsMessage, SmsMessage.id == SmsAttempt.message_id)
        .where(SmsAttempt.started_at >= start, SmsAttempt.started_at < end)
        .order_by(SmsAttempt.started_at, SmsAttempt.id),
        accounts,
    )
    yield from session.execute(statement.execution_options(yield_per=batch)).mappings()


# --- prices ------------------------------------------------------------------------------------


def price_list(session: Session) -> list[SmsPrice]:
    """Every price, oldest first (a small table)."""
    return list(session.scalars(select(SmsPrice).order_by(SmsPrice.valid_from, SmsPrice.id)))


def set_price(
    session: Session,
    *,
    nationcode: str,
    kind: str,
    valid_from: date,
    price_per_segment: Decimal,
    currency: str = "CNY",
) -> None:
    """Add or replace the price for a country (or ``*``) and kind (or ``*``) from a day.

    Upserted on (nationcode, kind, valid_from). Does not commit.
    """
    if not isinstance(price_per_segment, Decimal):
        raise TypeError("a price is a Decimal, never a float")
    values = {
        "nationcode": nationcode,
        "kind": kind,
        "valid_from": valid_from,
        "price_per_segment": price_per_segment,
        "currency": currency,
    }
    statement = dialect_insert(session)(SmsPrice).values(values)
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["nationcode", "kind", "valid_from"],
            set_={"price_per_segment": price_per_segment, "currency": currency},
        )
    )
