"""Finance: what was sent and billed, by any grouping; exports; the daily rollup; prices.

Days are Beijing calendar days (UTC+8, no daylight saving): finance in China counts in them,
and so does the gateway's billing. A period is ``[start, end)``; the summary cuts it at Beijing
midnights, reads the rollup (``sms_daily_usage``) for each whole day before today that it has
rows for, and queries the live tables for the rest (today, partial days, days never rolled up),
so a month's summary costs a few small queries and stays exact.

Money is ``Decimal`` from ``Numeric`` columns, multiplied and summed in Python, never float.
Reconciliation with the gateway lives in ``worker.services.reconciliation`` and is re-exported here.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from worker import clock
from worker.ledger import finance as ledger_finance
from worker.ledger.finance import FIGURES, Usage, UsageFigures, UsageKey
from worker.ledger.schema import SmsAttempt, SmsMessage, SmsPrice
from worker.ledger.schema.finance import ANY
from worker.services.reconciliation import Reconciliation, TemplateBook, reconcile
from worker.tencent.types import BEIJING

__all__ = [
    "DIMENSIONS",
    "EXPORTS",
    "PriceList",
    "Reconciliation",
    "SummaryRow",
    "TemplateBook",
    "beijing_day",
    "beijing_midnight",
    "export",
    "export_columns",
    "reconcile",
    "rollup",
    "summary",
    "summary_columns",
    "trailing_days",
    "usage_totals",
]

# What a summary can be grouped by, in the order its columns are shown.
DIMENSIONS = ("day", "account", "template", "sign", "country", "kind", "status")
EXPORTS = ("messages", "attempts")


def beijing_midnight(day: date) -> datetime:
    """The start of a Beijing calendar day, as aware UTC."""
    return datetime.combine(day, time(0), BEIJING).astimezone(UTC)


def beijing_day(moment: datetime) -> date:
    return moment.astimezone(BEIJING).date()


def trailing_days(count: int, now: datetime | None = None) -> list[date]:
    """Today (Beijing) and the ``count - 1`` days before it, oldest first."""
    if count < 1:
        raise ValueError("count must be at least 1")
    today = beijing_day(now or clock.now())
    return [today - timedelta(days=back) for back in range(count - 1, -1, -1)]


def _day_pieces(start: datetime, end: datetime) -> Iterator[tuple[date, datetime, datetime]]:
    """``[start, end)`` cut at Beijing midnights: (day, piece start, piece end)."""
    cursor = start
    while cursor < end:
        day = beijing_day(cursor)
        piece_end = min(end, beijing_midnight(day + timedelta(days=1)))
        yield day, cursor, piece_end
        cursor = piece_end


def _check_period(start: datetime, end: datetime) -> None:
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("the period's start and end must be timezone-aware")
    if start >= end:
        raise ValueError("the period is empty: start must come before end")


# --- prices ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PriceList:
    """Prices per segment. For a day, country and kind the most specific match wins (country
    and kind, then country, then kind, then neither), and of that the latest ``valid_from``."""

    prices: Sequence[SmsPrice]

    @classmethod
    def load(cls, sessions: sessionmaker[Session]) -> PriceList:
        with sessions() as session:
            return cls(ledger_finance.price_list(session))

    def price_for(self, day: date, nationcode: str, kind: str) -> SmsPrice | None:
        for wanted in ((nationcode, kind), (nationcode, ANY), (ANY, kind), (ANY, ANY)):
            valid = [
                price
                for price in self.prices
                if (price.nationcode, price.kind) == wanted and price.valid_from <= day
            ]
            if valid:
                return max(valid, key=lambda price: price.valid_from)
        return None


# --- summary -----------------------------------------------------------------------------------


@dataclass(slots=True)
class SummaryRow:
    """One group of a summary. ``cost`` is None unless prices were asked for; segments without
    a price are left out of it and counted in ``unpriced_segments``."""

    key: dict[str, Any]  # dimension -> value; template None is free text, sign None unnamed
    figures: UsageFigures = field(default_factory=UsageFigures)
    cost: Decimal | None = None
    currency: str | None = None
    unpriced_segments: int = 0

    @property
    def delivery_rate(self) -> Decimal | None:
        """Delivered over accepted messages, to 4 places; None when none was accepted."""
        if not self.figures.accepted:
            return None
        return (Decimal(self.figures.delivered) / Decimal(self.figures.accepted)).quantize(
            Decimal("0.0001")
        )

    def as_dict(self, *, priced: bool = False) -> dict[str, Any]:
        """Plain values for JSON and CSV (dates as ISO text, money as a decimal string), in the
        order of ``summary_columns``."""
        row: dict[str, Any] = {
            name: value.isoformat() if isinstance(value, date) else value
            for name, value in self.key.items()
        }
        row.update({name: getattr(self.figures, name) for name in FIGURES})
        rate = self.delivery_rate
        row["delivery_rate"] = None if rate is None else str(rate)
        if priced:
            row["cost"] = None if self.cost is None else str(self.cost)
            row["currency"] = self.currency
            row["unpriced_segments"] = self.unpriced_segments
        return row


def summary_columns(by: Sequence[str], *, priced: bool = False) -> list[str]:
    """The columns of a summary grouped ``by`` these dimensions, in order."""
    columns = [name for name in DIMENSIONS if name in by]
    columns += [*FIGURES, "delivery_rate"]
    return [*columns, "cost", "currency", "unpriced_segments"] if priced else columns


# Where each dimension but the day is found in the ledger's key.
_KEY_FIELDS = {
    "account": "account",
    "template": "tpl_id",
    "sign": "sign",
    "country": "nationcode",
    "kind": "kind",
    "status": "status",
}


def _key_fields(dimensions: Sequence[str], *, priced: bool) -> tuple[str, ...]:
    """The fields of the ledger's key a summary needs: those it groups by, and the country and
    kind that choose a price."""
    wanted = {_KEY_FIELDS[name] for name in dimensions if name != "day"}
    if priced:
        wanted |= {"nationcode", "kind"}
    return tuple(name for name in UsageKey._fields if name in wanted)


def _usage_by_day(
    session: Session,
    start: datetime,
    end: datetime,
    fields: Sequence[str],
    accounts: Collection[str] | None,
    today: date,
) -> Iterator[tuple[date, dict[tuple[Any, ...], UsageFigures]]]:
    """Each day's usage keyed by ``fields``: the rollup's, added up by the database, for whole
    past days it holds; the live tables' for the rest."""
    pieces = list(_day_pieces(start, end))
    whole_past_days = {
        day
        for day, piece_start, piece_end in pieces
        if day < today
        and (piece_start, piece_end)
        == (beijing_midnight(day), beijing_midnight(day + timedelta(days=1)))
    }
    rolled_up = (
        ledger_finance.rolled_up_usage(
            session, min(whole_past_days), max(whole_past_days), fields, accounts=accounts
        )
        if whole_past_days
        else {}
    )
    for day, piece_start, piece_end in pieces:
        if day in whole_past_days and day in rolled_up:
            yield day, rolled_up[day]
        else:
            live = ledger_finance.live_usage(session, piece_start, piece_end, accounts=accounts)
            yield day, _by_fields(live, fields)


def _by_fields(day_usage: Usage, fields: Sequence[str]) -> dict[tuple[Any, ...], UsageFigures]:
    grouped: dict[tuple[Any, ...], UsageFigures] = {}
    for key, figures in day_usage.items():
        grouped.setdefault(tuple(getattr(key, name) for name in fields), UsageFigures()).add(
            figures
        )
    return grouped


def summary(
    sessions: sessionmaker[Session],
    start: datetime,
    end: datetime,
    *,
    by: Sequence[str] = (),
    accounts: Collection[str] | None = None,
    prices: PriceList | None = None,
    now: datetime | None = None,
) -> list[SummaryRow]:
    """Messages, attempts, billed segments, retry overhead and delivery rate over ``[start, end)``,
    one row per group of the dimensions in ``by`` (none: one row of totals), sorted by group.

    With ``prices``, each row's billed segments are priced per day, country and kind.
    Raises ValueError for an unknown dimension or when prices in several currencies meet.
    """
    _check_period(start, end)
    unknown = [name for name in by if name not in DIMENSIONS]
    if unknown:
        raise ValueError(f"unknown dimension {', '.join(unknown)}; use {', '.join(DIMENSIONS)}")
    dimensions = [name for name in DIMENSIONS if name in by]
    fields = _key_fields(dimensions, priced=prices is not None)
    where = {name: fields.index(_KEY_FIELDS[name]) for name in dimensions if name != "day"}
    today = beijing_day(now or clock.now())
    rows: dict[tuple[Any, ...], SummaryRow] = {}
    with sessions() as session:
        for day, day_usage in _usage_by_day(session, start, end, fields, accounts, today):
            for key, figures in day_usage.items():
                group = {name: day if name == "day" else key[where[name]] for name in dimensions}
                row = rows.setdefault(tuple(group.values()), SummaryRow(group))
                row.figures.add(figures)
                if prices is not None:
                    nationcode, kind = key[fields.index("nationcode")], key[fields.index("kind")]
                    _price(row, prices, day, nationcode, kind, figures.billed_segments)
    if not rows and not dimensions:
        rows[()] = SummaryRow({})
    return [rows[group] for group in sorted(rows, key=_sortable)]


def _price(
    row: SummaryRow, prices: PriceList, day: date, nationcode: str, kind: str, segments: int
) -> None:
    if not segments:
        return
    price = prices.price_for(day, nationcode, kind)
    if price is None:
        row.unpriced_segments += segments
        return
    if row.currency not in (None, price.currency):
        raise ValueError(
            f"prices in {row.currency} and {price.currency} meet in one row; "
            "give every price the same currency"
        )
    row.currency = price.currency
    row.cost = (row.cost or Decimal(0)) + price.price_per_segment * segments


def _sortable(group: tuple[Any, ...]) -> tuple[tuple[bool, Any], ...]:
    # None (free text, no sign) first; a dimension's other values share a type and sort by it.
    return tuple((value is not None, value) for value in group)


# --- export ------------------------------------------------------------------------------------


def export_columns(what: str) -> tuple[str, ...]:
    """The columns of an export, in order: the table's, and for attempts their message's
    account, kind and country."""
    if what == "messages":
        return tuple(column.name for column in SmsMessage.__table__.columns)
    if what == "attempts":
        columns = tuple(column.name for column in SmsAttempt.__table__.columns)
        return (*columns, "account", "kind", "nationcode")
    raise ValueError(f"unknown export {what!r}; use {' or '.join(EXPORTS)}")


def export(
    sessions: sessionmaker[Session],
    what: str,
    start: datetime,
    end: datetime,
    *,
    accounts: Collection[str] | None = None,
    batch: int = 1000,
) -> Iterator[dict[str, Any]]:
    """Every message created (or attempt started) in ``[start, end)``, oldest first.

    A generator over a streaming query (a server-side cursor on PostgreSQL), so memory stays
    constant whatever the period; it holds a database session until exhausted or closed. Bad
    arguments raise ValueError here, before any row is read.
    """
    _check_period(start, end)
    columns = export_columns(what)
    stream = (
        ledger_finance.stream_messages if what == "messages" else ledger_finance.stream_attempts
    )

    def rows() -> Iterator[dict[str, Any]]:
        with sessions() as session:
            for row in stream(session, start, end, accounts=accounts, batch=batch):
                yield {name: row[name] for name in columns}

    return rows()


# --- rollup ------------------------------------------------------------------------------------


def rollup(sessions: sessionmaker[Session], days: Iterable[date]) -> int:
    """Recompute and upsert the daily usage of each Beijing day in ``days``; the rows written.

    One transaction per day, so a long window does not hold locks for long. Idempotent: run it
    again and the same rows hold the same figures; rows whose key no longer occurs go.
    """
    written = 0
    for day in sorted(set(days)):
        with sessions() as session:
            day_usage = ledger_finance.live_usage(
                session, beijing_midnight(day), beijing_midnight(day + timedelta(days=1))
            )
            written += ledger_finance.upsert_daily_usage(session, day, day_usage, clock.now())
            session.commit()
    return written


def usage_totals(rows: Iterable[SummaryRow]) -> Mapping[str, int]:
    """The figures of ``rows`` added up."""
    total = UsageFigures()
    for row in rows:
        total.add(row.figures)
    return {name: getattr(total, name) for name in FIGURES}
