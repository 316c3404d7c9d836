"""Daily usage rollup and price list.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24

``sms_daily_usage``: one row per Beijing day and natural key, upserted by the rollup.
``sms_prices``: a price per billed segment by country and kind, valid from a date.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FIGURES = (
    "messages",
    "accepted",
    "delivered",
    "attempts",
    "successes",
    "billed_segments",
    "retry_attempts",
)


def upgrade() -> None:
    op.create_table(
        "sms_daily_usage",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("account", sa.String(length=64), nullable=False),
        sa.Column("tpl_id", sa.Integer(), nullable=False),
        sa.Column("sign", sa.String(length=64), nullable=False),
        sa.Column("nationcode", sa.String(length=8), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        *(sa.Column(name, sa.Integer(), nullable=False) for name in FIGURES),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "day",
            "account",
            "tpl_id",
            "sign",
            "nationcode",
            "kind",
            "status",
            name=op.f("pk_sms_daily_usage"),
        ),
    )
    op.create_table(
        "sms_prices",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("nationcode", sa.String(length=8), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("price_per_segment", sa.Numeric(precision=12, scale=6), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "kind IN ('*', 'verification', 'notification', 'marketing')",
            name=op.f("ck_sms_prices_kind"),
        ),
        sa.CheckConstraint("price_per_segment >= 0", name=op.f("ck_sms_prices_price_per_segment")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sms_prices")),
        sa.UniqueConstraint(
            "nationcode",
            "kind",
            "valid_from",
            name=op.f("uq_sms_prices_nationcode_kind_valid_from"),
        ),
    )


def downgrade() -> None:
    op.drop_table("sms_prices")
    op.drop_table("sms_daily_usage")
