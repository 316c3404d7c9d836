"""What every table of the ledger shares: the declarative base, constraint names, key types."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import BigInteger, Integer, MetaData, Uuid
from sqlalchemy.orm import DeclarativeBase

from worker import clock
from worker.ledger.types import UTCDateTime

# Stable constraint names, so migrations can refer to them on both dialects.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """Column defaults: the worker's one clock (worker.clock), shifted like every other now."""
    return clock.now()


def one_of(column: str, values: tuple[str, ...]) -> str:
    """A CHECK that ``column`` holds one of ``values`` (their plain strings, enum or not)."""
    return f"{column} IN ({', '.join(repr(str(value)) for value in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime, uuid.UUID: Uuid}


# An autoincrementing 64-bit key; SQLite only autoincrements a column declared INTEGER.
BigId = BigInteger().with_variant(Integer, "sqlite")
