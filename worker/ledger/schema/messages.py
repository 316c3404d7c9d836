"""``sms_messages``: one row per logical SMS to one number (queries: ``worker.ledger.messages``,
its moves: ``worker.ledger.moves``). Its names and columns are a public contract: finance queries
them."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import JSON, CheckConstraint, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from worker.ledger.schema.base import Base, one_of, utcnow
from worker.ledger.status import KINDS, MESSAGE_STATUSES, QUEUED


class SmsMessage(Base):
    __tablename__ = "sms_messages"
    __table_args__ = (
        CheckConstraint(one_of("status", MESSAGE_STATUSES), name="status"),
        CheckConstraint(one_of("kind", KINDS), name="kind"),
        # The sweeper: due queued messages, and sending ones whose lease ran out.
        Index("ix_sms_messages_status_not_before", "status", "not_before"),
        Index("ix_sms_messages_status_lease_until", "status", "lease_until"),
        # Finance: per account and period; and per period over every account (the rollup).
        Index("ix_sms_messages_account_created_at", "account", "created_at"),
        Index("ix_sms_messages_created_at", "created_at"),
        # Batches: a number appears once per batch, and the dispatcher takes queued messages of
        # a batch grouped by identical params (worker.ledger.batches).
        Index(
            "uq_sms_messages_batch_id_number",
            "batch_id",
            "nationcode",
            "mobile",
            unique=True,
            postgresql_where=text("batch_id IS NOT NULL"),
            sqlite_where=text("batch_id IS NOT NULL"),
        ),
        Index("ix_sms_messages_batch_queue", "batch_id", "status", "params_key", "nationcode"),
        # NULL keys never collide on either dialect; the WHERE keeps the index to keyed rows.
        Index(
            "uq_sms_messages_account_idempotency_key",
            "account",
            "idempotency_key",
            unique=True,
            postgresql_where=text("idempotency_key IS NOT NULL"),
            sqlite_where=text("idempotency_key IS NOT NULL"),
        ),
    )

    # Minted at enqueue and used as the Celery task id.
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    idempotency_key: Mapped[str | None] = mapped_column(String(128))
    account: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    nationcode: Mapped[str] = mapped_column(String(8))
    mobile: Mapped[str] = mapped_column(String(32))
    tpl_id: Mapped[int | None] = mapped_column(Integer)
    params: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Free text for Text sends (already carrying its signature); NULL for template sends.
    content: Mapped[str | None] = mapped_column(Text)
    sign: Mapped[str | None] = mapped_column(String(64))
    ext: Mapped[str | None] = mapped_column(String(256))
    extend: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default=QUEUED, server_default=QUEUED)
    batch_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    # Equal for the messages of a batch whose params are equal: they may share a group send.
    params_key: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    not_before: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    sid: Mapped[str | None] = mapped_column(String(64), index=True)
    # Billed segments, as the gateway reported them.
    fee: Mapped[int | None] = mapped_column(Integer)
    result: Mapped[int | None] = mapped_column(Integer)
    errmsg: Mapped[str | None] = mapped_column(Text)
    # Why it ended failed/expired/unknown, or why it waits: for people, not for code.
    reason: Mapped[str | None] = mapped_column(Text)
    # The request of its last attempt (shared by the numbers of one group send).
    request_id: Mapped[uuid.UUID | None]
    attempt_count: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    # Claims not handed back by `requeue` (their worker stopped first): the poison guard.
    delivery_count: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    lease_until: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(128))

    def __repr__(self) -> str:
        return f"<SmsMessage {self.id} {self.status} {self.kind} +{self.nationcode}>"
