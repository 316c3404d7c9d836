"""``sms_accounts``: what the ledger knows of an account beyond its configuration, whether it is
paused (queries: ``worker.ledger.accounts``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from worker.ledger.schema.base import Base, utcnow


class SmsAccount(Base):
    """An account's pause: while ``paused``, its messages stay ``queued`` (no claim, no sweep).

    A row appears with the first pause. ``paused_at``/``paused_code``/``paused_reason`` describe
    the latest pause and ``resumed_at`` the latest resume; ``paused`` alone says which holds now.
    """

    __tablename__ = "sms_accounts"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    paused_at: Mapped[datetime | None]
    # The gateway's result code that stopped it (1031, 1033); NULL for a pause by a person.
    paused_code: Mapped[int | None] = mapped_column(Integer)
    paused_reason: Mapped[str | None] = mapped_column(Text)
    resumed_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    def __repr__(self) -> str:
        return f"<SmsAccount {self.name} {'paused' if self.paused else 'active'}>"
