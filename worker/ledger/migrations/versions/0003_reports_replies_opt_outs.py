"""Delivery reports, replies and opt-outs.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24

Every report and reply as received (orphans included, matched to their message later), and the
numbers that must not receive marketing.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sms_opt_outs",
        sa.Column("nationcode", sa.String(length=8), nullable=False),
        sa.Column("mobile", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "source IN ('reply', 'command', 'import')", name=op.f("ck_sms_opt_outs_source")
        ),
        sa.PrimaryKeyConstraint("nationcode", "mobile", name=op.f("pk_sms_opt_outs")),
    )
    op.create_table(
        "sms_replies",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("nationcode", sa.String(length=8), nullable=False),
        sa.Column("mobile", sa.String(length=32), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("sign", sa.String(length=64), nullable=False),
        sa.Column("extend", sa.String(length=32), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.CheckConstraint("source IN ('callback', 'pull')", name=op.f("ck_sms_replies_source")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sms_replies")),
        sa.UniqueConstraint(
            "nationcode",
            "mobile",
            "time",
            "text",
            name=op.f("uq_sms_replies_nationcode_mobile_time_text"),
        ),
    )
    with op.batch_alter_table("sms_replies", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_sms_replies_received_at"), ["received_at"], unique=False
        )

    op.create_table(
        "sms_delivery_reports",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("sid", sa.String(length=64), nullable=False),
        sa.Column("message_id", sa.Uuid(), nullable=True),
        sa.Column("nationcode", sa.String(length=8), nullable=False),
        sa.Column("mobile", sa.String(length=32), nullable=False),
        sa.Column("report_status", sa.String(length=8), nullable=False),
        sa.Column("errmsg", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("user_receive_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.CheckConstraint(
            "report_status IN ('SUCCESS', 'FAIL')",
            name=op.f("ck_sms_delivery_reports_report_status"),
        ),
        sa.CheckConstraint(
            "source IN ('callback', 'pull')", name=op.f("ck_sms_delivery_reports_source")
        ),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["sms_messages.id"],
            name=op.f("fk_sms_delivery_reports_message_id_sms_messages"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sms_delivery_reports")),
        sa.UniqueConstraint(
            "sid",
            "report_status",
            "errmsg",
            "user_receive_time",
            name="uq_sms_delivery_reports_report",
        ),
    )
    with op.batch_alter_table("sms_delivery_reports", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_sms_delivery_reports_received_at"), ["received_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_sms_delivery_reports_sid"), ["sid"], unique=False)
        batch_op.create_index(
            "ix_sms_delivery_reports_unmatched", ["message_id", "received_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("sms_delivery_reports", schema=None) as batch_op:
        batch_op.drop_index("ix_sms_delivery_reports_unmatched")
        batch_op.drop_index(batch_op.f("ix_sms_delivery_reports_sid"))
        batch_op.drop_index(batch_op.f("ix_sms_delivery_reports_received_at"))

    op.drop_table("sms_delivery_reports")
    with op.batch_alter_table("sms_replies", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sms_replies_received_at"))

    op.drop_table("sms_replies")
    op.drop_table("sms_opt_outs")
