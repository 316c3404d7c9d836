"""``sms_delivery_reports`` and ``sms_replies``: what comes back from handsets (queries:
``worker.ledger.reports``).

Reports and replies are stored as received, every one, including orphans whose ``sid`` no
message has yet (a report may overtake the recording of its send); ``message_id`` is filled in
when the match is made. Duplicates are refused by unique keys on what identifies a report, so a
report delivered twice is stored once.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from worker.ledger.schema.base import Base, BigId, one_of, utcnow

REPORT_SOURCES = ("callback", "pull")


class SmsDeliveryReport(Base):
    __tablename__ = "sms_delivery_reports"
    __table_args__ = (
        # What identifies one report: the same one pushed twice, or pushed and pulled, is one row.
        UniqueConstraint(
            "sid",
            "report_status",
            "errmsg",
            "user_receive_time",
            name="uq_sms_delivery_reports_report",
        ),
        CheckConstraint(one_of("report_status", ("SUCCESS", "FAIL")), name="report_status"),
        CheckConstraint(one_of("source", REPORT_SOURCES), name="source"),
        Index("ix_sms_delivery_reports_unmatched", "message_id", "received_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    sid: Mapped[str] = mapped_column(String(64), index=True)
    # NULL while no message carries this sid (an orphan); set once matched.
    message_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("sms_messages.id"))
    nationcode: Mapped[str] = mapped_column(String(8))
    mobile: Mapped[str] = mapped_column(String(32))
    report_status: Mapped[str] = mapped_column(String(8))  # SUCCESS or FAIL
    errmsg: Mapped[str] = mapped_column(String(64))  # operator code: DELIVRD, UNDELIV, ...
    description: Mapped[str] = mapped_column(Text, default="")
    # The gateway's "YYYY-MM-DD HH:MM:SS" Beijing time, stored as aware UTC.
    user_receive_time: Mapped[datetime]
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    source: Mapped[str] = mapped_column(String(16))


class SmsReply(Base):
    __tablename__ = "sms_replies"
    __table_args__ = (
        UniqueConstraint("nationcode", "mobile", "time", "text"),
        CheckConstraint(one_of("source", REPORT_SOURCES), name="source"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    nationcode: Mapped[str] = mapped_column(String(8))
    mobile: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(Text)
    sign: Mapped[str] = mapped_column(String(64), default="")
    extend: Mapped[str] = mapped_column(String(32), default="")
    time: Mapped[datetime]  # when the handset replied (the gateway's Unix seconds)
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    source: Mapped[str] = mapped_column(String(16))
