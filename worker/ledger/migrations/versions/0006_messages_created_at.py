"""Finance reads messages by creation time: an index on sms_messages.created_at.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25

The rollup and the live summary count a Beijing day's messages by ``created_at`` over every
account; the index on (account, created_at) cannot serve that, so each day read the whole table.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_sms_messages_created_at", "sms_messages", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_sms_messages_created_at", table_name="sms_messages")
