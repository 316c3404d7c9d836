"""``sms_opt_outs``: the numbers that must not receive marketing (queries:
``worker.ledger.optouts``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from worker.ledger.schema.base import Base, one_of, utcnow

OPT_OUT_SOURCES = ("reply", "command", "import")


class SmsOptOut(Base):
    """A number that must not receive marketing, whichever account would send it."""

    __tablename__ = "sms_opt_outs"
    __table_args__ = (CheckConstraint(one_of("source", OPT_OUT_SOURCES), name="source"),)

    nationcode: Mapped[str] = mapped_column(String(8), primary_key=True)
    mobile: Mapped[str] = mapped_column(String(32), primary_key=True)
    source: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")  # e.g. the reply's text
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
