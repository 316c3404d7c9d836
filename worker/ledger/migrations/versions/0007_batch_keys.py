"""Batch creation keys and input fingerprints; malformed rows as a rejection reason.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

``sms_batches`` gains ``idempotency_key`` (unique per account: of two creates with one key,
one wins) and ``fingerprint`` (SHA-256 of the file and of what decides the messages), indexed
for the check that refuses the same input twice within a day. ``sms_batch_rejections`` accepts
the reason ``malformed``: a line that is not one CSV row.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_REASONS = "'bad_number', 'duplicate', 'opted_out', 'wrong_param_count', 'bad_param'"
NEW_REASONS = f"{OLD_REASONS}, 'malformed'"
REASON_CHECK = "ck_sms_batch_rejections_reason"


def upgrade() -> None:
    # SQLite adds nullable columns in place; no table rebuild needed.
    op.add_column("sms_batches", sa.Column("idempotency_key", sa.String(length=128)))
    op.add_column("sms_batches", sa.Column("fingerprint", sa.String(length=64)))
    op.create_index(
        "uq_sms_batches_account_idempotency_key",
        "sms_batches",
        ["account", "idempotency_key"],
        unique=True,
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
        sqlite_where=sa.text("idempotency_key IS NOT NULL"),
    )
    op.create_index(
        "ix_sms_batches_account_fingerprint",
        "sms_batches",
        ["account", "fingerprint", "created_at"],
    )
    _reasons(NEW_REASONS)


def downgrade() -> None:
    # The row stays counted, its detail still saying what was wrong with it.
    op.execute("UPDATE sms_batch_rejections SET reason = 'bad_param' WHERE reason = 'malformed'")
    _reasons(OLD_REASONS)
    op.drop_index("ix_sms_batches_account_fingerprint", table_name="sms_batches")
    op.drop_index("uq_sms_batches_account_idempotency_key", table_name="sms_batches")
    with op.batch_alter_table("sms_batches") as batch_op:
        batch_op.drop_column("fingerprint")
        batch_op.drop_column("idempotency_key")


def _reasons(allowed: str) -> None:
    """Replace the CHECK on the rejection reason (SQLite: by rebuilding the table)."""
    with op.batch_alter_table("sms_batch_rejections") as batch_op:
        batch_op.drop_constraint(op.f(REASON_CHECK), type_="check")
        batch_op.create_check_constraint(op.f(REASON_CHECK), f"reason IN ({allowed})")
