"""Marketing batches.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24

``sms_batches`` and the rows each import turned away (``sms_batch_rejections``). A batch's
accepted rows are ``sms_messages`` rows: they gain ``params_key`` (equal params share a group
send), a unique index that keeps a number to once per batch, and the dispatcher's index.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH_STATUSES = "'importing', 'scheduled', 'sending', 'paused', 'cancelled', 'done'"
REJECTION_REASONS = "'bad_number', 'duplicate', 'opted_out', 'wrong_param_count', 'bad_param'"


def upgrade() -> None:
    op.create_table(
        "sms_batches",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("account", sa.String(length=64), nullable=False),
        sa.Column("tpl_id", sa.Integer(), nullable=False),
        sa.Column("sign", sa.String(length=64), nullable=True),
        sa.Column("params", sa.JSON(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("start_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_end_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("total_rows", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("accepted", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("rejected", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_owner", sa.String(length=128), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(f"status IN ({BATCH_STATUSES})", name=op.f("ck_sms_batches_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sms_batches")),
    )
    op.create_index("ix_sms_batches_status_start_at", "sms_batches", ["status", "start_at"])

    op.create_table(
        "sms_batch_rejections",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("batch_id", sa.Uuid(), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.CheckConstraint(
            f"reason IN ({REJECTION_REASONS})", name=op.f("ck_sms_batch_rejections_reason")
        ),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["sms_batches.id"],
            name=op.f("fk_sms_batch_rejections_batch_id_sms_batches"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sms_batch_rejections")),
    )
    op.create_index(
        "uq_sms_batch_rejections_batch_id_line_no",
        "sms_batch_rejections",
        ["batch_id", "line_no"],
        unique=True,
    )

    # SQLite adds a nullable column in place; no table rebuild needed.
    op.add_column("sms_messages", sa.Column("params_key", sa.String(length=40), nullable=True))
    op.create_index(
        "uq_sms_messages_batch_id_number",
        "sms_messages",
        ["batch_id", "nationcode", "mobile"],
        unique=True,
        postgresql_where=sa.text("batch_id IS NOT NULL"),
        sqlite_where=sa.text("batch_id IS NOT NULL"),
    )
    op.create_index(
        "ix_sms_messages_batch_queue",
        "sms_messages",
        ["batch_id", "status", "params_key", "nationcode"],
    )


def downgrade() -> None:
    op.drop_index("ix_sms_messages_batch_queue", table_name="sms_messages")
    op.drop_index("uq_sms_messages_batch_id_number", table_name="sms_messages")
    with op.batch_alter_table("sms_messages") as batch_op:
        batch_op.drop_column("params_key")
    op.drop_index("uq_sms_batch_rejections_batch_id_line_no", table_name="sms_batch_rejections")
    op.drop_table("sms_batch_rejections")
    op.drop_index("ix_sms_batches_status_start_at", table_name="sms_batches")
    op.drop_table("sms_batches")
