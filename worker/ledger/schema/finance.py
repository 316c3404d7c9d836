"""Finance's tables, ``sms_daily_usage`` (the daily rollup) and ``sms_prices`` (queries:
``worker.ledger.finance``).

``sms_daily_usage`` holds one row per Beijing calendar day and natural key (account, template,
sign, country, kind, message status). Days are Beijing days because finance in China counts in
them and the gateway's own statistics (``pullsendstatus``) are kept in Beijing hours. The key
columns are never NULL, so that the primary key can be upserted on both dialects (NULLs never
collide in a unique key): a free-text send has ``tpl_id`` 0 and a send without a sign has
``sign`` ''.

Message figures count the messages *created* that day; attempt figures count the attempts
*started* that day, the day the gateway billed them, joined to their message for the key.

``sms_prices`` turns billed segments into money: a price per segment for a country (or ``*``)
and a kind (or ``*``), valid from a date until a newer row for the same pair. Money is
``Numeric``, read as ``Decimal``, never float.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, Date, Integer, Numeric, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from worker.ledger.schema.base import Base, BigId, one_of, utcnow
from worker.ledger.status import KINDS

ANY = "*"  # a price for every country, or every kind
NO_TEMPLATE = 0  # tpl_id of a free-text send in the rollup
NO_SIGN = ""  # sign of a send that named none in the rollup


class SmsDailyUsage(Base):
    __tablename__ = "sms_daily_usage"

    day: Mapped[date] = mapped_column(Date, primary_key=True)  # Beijing calendar day
    account: Mapped[str] = mapped_column(String(64), primary_key=True)
    tpl_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sign: Mapped[str] = mapped_column(String(64), primary_key=True)
    nationcode: Mapped[str] = mapped_column(String(8), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), primary_key=True)
    # Messages created that day; of them, those the gateway accepted (sent, delivered,
    # undelivered) and those a report says were delivered.
    messages: Mapped[int] = mapped_column(Integer, default=0)
    accepted: Mapped[int] = mapped_column(Integer, default=0)
    delivered: Mapped[int] = mapped_column(Integer, default=0)
    # Attempts started that day (one per number per HTTP request), those answered result 0,
    # the sum of their fee, and the attempts beyond a message's first (the retry overhead).
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    successes: Mapped[int] = mapped_column(Integer, default=0)
    billed_segments: Mapped[int] = mapped_column(Integer, default=0)
    retry_attempts: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class SmsPrice(Base):
    __tablename__ = "sms_prices"
    __table_args__ = (
        UniqueConstraint("nationcode", "kind", "valid_from"),
        CheckConstraint(one_of("kind", (ANY, *KINDS)), name="kind"),
        CheckConstraint("price_per_segment >= 0", name="price_per_segment"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    nationcode: Mapped[str] = mapped_column(String(8))  # "86", "44", ... or "*"
    kind: Mapped[str] = mapped_column(String(16))  # verification, notification, marketing or "*"
    valid_from: Mapped[date] = mapped_column(Date)  # Beijing calendar day
    price_per_segment: Mapped[Decimal] = mapped_column(Numeric(12, 6))
    currency: Mapped[str] = mapped_column(String(3), default="CNY")  # ISO 4217
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def __repr__(self) -> str:
        return (
            f"<SmsPrice +{self.nationcode} {self.kind} from {self.valid_from}: "
            f"{self.price_per_segment} {self.currency}>"
        )
