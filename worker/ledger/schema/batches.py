"""``sms_batches`` and ``sms_batch_rejections``: marketing batches, and every input row one
turned away (queries: ``worker.ledger.batches``, ``worker.ledger.batch_rows``).

A batch's accepted rows are ``sms_messages`` rows (kind ``marketing``, ``batch_id`` set), written
at import; there is no table of recipients besides. A rejected row is kept with its line number
and reason, so ``total_rows == accepted + rejected`` holds for every imported batch.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from worker.ledger.schema.base import Base, BigId, one_of, utcnow
from worker.ledger.status import BATCH_STATUSES, BatchStatus

# Why an input row was turned away.
BAD_NUMBER = "bad_number"
DUPLICATE = "duplicate"
OPTED_OUT = "opted_out"
WRONG_PARAM_COUNT = "wrong_param_count"
BAD_PARAM = "bad_param"
# Not one CSV row: a quote left open, too long, too many fields, a NUL or a lone surrogate.
MALFORMED = "malformed"
REJECTION_REASONS = (BAD_NUMBER, DUPLICATE, OPTED_OUT, WRONG_PARAM_COUNT, BAD_PARAM, MALFORMED)

RAW_TEXT_LIMIT = 200  # characters of a rejected row kept, enough to find it in the file


class SmsBatch(Base):
    __tablename__ = "sms_batches"
    __table_args__ = (
        CheckConstraint(one_of("status", BATCH_STATUSES), name="status"),
        # The dispatcher: due batches by state and start.
        Index("ix_sms_batches_status_start_at", "status", "start_at"),
        # A key names one batch of its account: of two creates with one key, one wins.
        Index(
            "uq_sms_batches_account_idempotency_key",
            "account",
            "idempotency_key",
            unique=True,
            postgresql_where=text("idempotency_key IS NOT NULL"),
            sqlite_where=text("idempotency_key IS NOT NULL"),
        ),
        # The duplicate check: this account's batches of the same input, newest first.
        Index("ix_sms_batches_account_fingerprint", "account", "fingerprint", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(128))
    account: Mapped[str] = mapped_column(String(64))
    tpl_id: Mapped[int] = mapped_column(Integer)
    sign: Mapped[str | None] = mapped_column(String(64))
    # Params shared by every recipient; NULL when each row brings its own.
    params: Mapped[list[str] | None] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default=BatchStatus.IMPORTING)
    start_at: Mapped[datetime]
    # The batch's own end: messages not out by then end `expired`.
    window_end_at: Mapped[datetime]
    total_rows: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    accepted: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    rejected: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # When the dispatcher first sent something, and when the batch ended (done or cancelled).
    dispatched_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    # The dispatcher's claim for one tick, so two beats never work on the batch at once.
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_until: Mapped[datetime | None]
    # The caller's name for this creation (``--key``): the same key returns this batch.
    idempotency_key: Mapped[str | None] = mapped_column(String(128))
    # SHA-256 of the file's bytes and of what decides the messages (account, template, sign,
    # params): equal for the same input, so a repeated import can be recognised.
    fingerprint: Mapped[str | None] = mapped_column(String(64))

    def __repr__(self) -> str:
        return f"<SmsBatch {self.id} {self.status} {self.name!r}>"

    def summary(self) -> dict[str, Any]:
        """The batch as plain data (for JSON output and logs)."""
        return {
            "id": str(self.id),
            "name": self.name,
            "account": self.account,
            "tpl_id": self.tpl_id,
            "sign": self.sign,
            "params": self.params,
            "status": self.status,
            "start_at": self.start_at.isoformat(),
            "window_end_at": self.window_end_at.isoformat(),
            "total_rows": self.total_rows,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "created_at": self.created_at.isoformat(),
            "key": self.idempotency_key,
        }


class SmsBatchRejection(Base):
    __tablename__ = "sms_batch_rejections"
    __table_args__ = (
        CheckConstraint(one_of("reason", REJECTION_REASONS), name="reason"),
        Index("uq_sms_batch_rejections_batch_id_line_no", "batch_id", "line_no", unique=True),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    batch_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sms_batches.id"))
    line_no: Mapped[int] = mapped_column(Integer)  # in the input file, the header being line 1
    reason: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(Text)  # for people: what exactly is wrong
    raw: Mapped[str] = mapped_column(Text)  # the row as read, cut at RAW_TEXT_LIMIT characters

    def __repr__(self) -> str:
        return f"<SmsBatchRejection {self.batch_id} line {self.line_no} {self.reason}>"
