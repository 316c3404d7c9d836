"""The ledger: sms_messages and sms_attempts.

Revision ID: 0001
Revises:
Create Date: 2024-11-24

Types and value lists are spelled out rather than imported, so this revision stays what it was
when the models move on.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUSES = (
    "queued",
    "sending",
    "sent",
    "delivered",
    "undelivered",
    "failed",
    "expired",
    "unknown",
    "cancelled",
    "suppressed",
)
KINDS = ("verification", "notification", "marketing")
OUTCOMES = ("in_flight", "ok", "transient", "throttled", "rejected", "network", "ambiguous")


def one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(value) for value in values)})"


def timestamp(name: str, nullable: bool = True) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "sms_messages",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("idempotency_key", sa.String(128), nullable=True),
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("nationcode", sa.String(8), nullable=False),
        sa.Column("mobile", sa.String(32), nullable=False),
        sa.Column("tpl_id", sa.Integer(), nullable=True),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("content", sa.Text(), nullable=True),
        sa.Column("sign", sa.String(64), nullable=True),
        sa.Column("ext", sa.String(256), nullable=True),
        sa.Column("extend", sa.String(32), nullable=True),
        sa.Column("status", sa.String(16), server_default="queued", nullable=False),
        sa.Column("batch_id", sa.Uuid(), nullable=True),
        timestamp("created_at", nullable=False),
        timestamp("updated_at", nullable=False),
        timestamp("not_before"),
        timestamp("expires_at"),
        timestamp("sent_at"),
        sa.Column("sid", sa.String(64), nullable=True),
        sa.Column("fee", sa.Integer(), nullable=True),
        sa.Column("result", sa.Integer(), nullable=True),
        sa.Column("errmsg", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("request_id", sa.Uuid(), nullable=True),
        sa.Column("attempt_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("delivery_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        timestamp("lease_until"),
        sa.Column("lease_owner", sa.String(128), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_sms_messages"),
        sa.CheckConstraint(one_of("status", STATUSES), name="ck_sms_messages_status"),
        sa.CheckConstraint(one_of("kind", KINDS), name="ck_sms_messages_kind"),
    )
    op.create_index("ix_sms_messages_status_not_before", "sms_messages", ["status", "not_before"])
    op.create_index("ix_sms_messages_status_lease_until", "sms_messages", ["status", "lease_until"])
    op.create_index("ix_sms_messages_account_created_at", "sms_messages", ["account", "created_at"])
    op.create_index(
        "uq_sms_messages_account_idempotency_key",
        "sms_messages",
        ["account", "idempotency_key"],
        unique=True,
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
        sqlite_where=sa.text("idempotency_key IS NOT NULL"),
    )
    op.create_index("ix_sms_messages_batch_id", "sms_messages", ["batch_id"])
    op.create_index("ix_sms_messages_sid", "sms_messages", ["sid"])

    op.create_table(
        "sms_attempts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("message_id", sa.Uuid(), nullable=False),
        sa.Column("attempt_no", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.Uuid(), nullable=False),
        sa.Column("api", sa.String(32), nullable=False),
        sa.Column("random", sa.BigInteger(), nullable=False),
        sa.Column("signed_time", sa.BigInteger(), nullable=False),
        timestamp("started_at", nullable=False),
        timestamp("finished_at"),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("result", sa.Integer(), nullable=True),
        sa.Column("errmsg", sa.Text(), nullable=True),
        sa.Column("sid", sa.String(64), nullable=True),
        sa.Column("fee", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.String(16), server_default="in_flight", nullable=False),
        sa.Column("latency_ms", sa.Integer(), nullable=True),
        sa.Column("worker", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_sms_attempts"),
        sa.ForeignKeyConstraint(
            ["message_id"], ["sms_messages.id"], name="fk_sms_attempts_message_id_sms_messages"
        ),
        sa.CheckConstraint(one_of("outcome", OUTCOMES), name="ck_sms_attempts_outcome"),
    )
    op.create_index(
        "uq_sms_attempts_message_id_attempt_no",
        "sms_attempts",
        ["message_id", "attempt_no"],
        unique=True,
    )
    op.create_index("ix_sms_attempts_started_at", "sms_attempts", ["started_at"])
    op.create_index("ix_sms_attempts_outcome_started_at", "sms_attempts", ["outcome", "started_at"])
    op.create_index("ix_sms_attempts_sid", "sms_attempts", ["sid"])
    op.create_index("ix_sms_attempts_request_id", "sms_attempts", ["request_id"])


def downgrade() -> None:
    op.drop_table("sms_attempts")
    op.drop_table("sms_messages")
