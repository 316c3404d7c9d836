"""``sms_attempts``: the append-only audit of every HTTP attempt (queries:
``worker.ledger.attempts``)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from worker.ledger.schema.base import Base, BigId, one_of
from worker.ledger.status import ATTEMPT_OUTCOMES, IN_FLIGHT


class SmsAttempt(Base):
    __tablename__ = "sms_attempts"
    __table_args__ = (
        CheckConstraint(one_of("outcome", ATTEMPT_OUTCOMES), name="outcome"),
        Index("uq_sms_attempts_message_id_attempt_no", "message_id", "attempt_no", unique=True),
        # Finance counts by outcome and period; the janitor looks for old in_flight rows.
        Index("ix_sms_attempts_outcome_started_at", "outcome", "started_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    message_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sms_messages.id"))
    attempt_no: Mapped[int] = mapped_column(Integer)
    request_id: Mapped[uuid.UUID] = mapped_column(index=True)
    api: Mapped[str] = mapped_column(String(32))
    random: Mapped[int] = mapped_column(BigInteger)
    signed_time: Mapped[int] = mapped_column(BigInteger)
    started_at: Mapped[datetime] = mapped_column(index=True)
    finished_at: Mapped[datetime | None]
    http_status: Mapped[int | None] = mapped_column(Integer)
    result: Mapped[int | None] = mapped_column(Integer)
    errmsg: Mapped[str | None] = mapped_column(Text)
    sid: Mapped[str | None] = mapped_column(String(64), index=True)
    fee: Mapped[int | None] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(16), default=IN_FLIGHT, server_default=IN_FLIGHT)
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    worker: Mapped[str] = mapped_column(String(128))

    def __repr__(self) -> str:
        return f"<SmsAttempt {self.id} {self.message_id} #{self.attempt_no} {self.outcome}>"
