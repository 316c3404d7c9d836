"""Column types that behave the same on PostgreSQL and SQLite."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is aware UTC on the way in and on the way out, on every dialect.

    PostgreSQL stores ``timestamptz``; SQLite has no time zones, so the value is stored as UTC text
    (which also keeps SQLite's string comparisons in time order) and read back as aware UTC.
    A naive datetime is refused rather than guessed at.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()}: the ledger stores aware UTC")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# PostgreSQL's ``integer`` (SQLite would store a larger one): the bound of template ids.
MAX_INTEGER = 2**31 - 1


def text_problem(value: str, limit: int | None = None) -> str | None:
    """Why PostgreSQL would refuse ``value`` where SQLite takes it, or None: longer than the
    column's ``limit``, a NUL character, a lone surrogate (which is not UTF-8)."""
    if limit is not None and len(value) > limit:
        return f"is longer than {limit} characters"
    if "\x00" in value:
        return "contains a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode text"
    return None
