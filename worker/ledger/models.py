"""The ledger's tables. Their names and columns are a public contract: finance queries them.

``sms_messages`` holds one row per logical SMS to one number; ``sms_attempts`` is the append-only
audit of every HTTP attempt. See DESIGN.md 4.1. ``sms_accounts`` holds what the ledger knows of
an account beyond its configuration: whether it is paused. A change here needs a migration in
migrations/; tests/ledger/test_migrations.py fails while the two disagree.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    Uuid,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from worker import clock
from worker.ledger.status import ATTEMPT_OUTCOMES, IN_FLIGHT, KINDS, MESSAGE_STATUSES, QUEUED
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
    return f"{column} IN ({', '.join(repr(value) for value in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime, uuid.UUID: Uuid}


# An autoincrementing 64-bit key; SQLite only autoincrements a column declared INTEGER.
BigId = BigInteger().with_variant(Integer, "sqlite")


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
