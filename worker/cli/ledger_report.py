"""How the ledger commands show their results: tables and lines for people, CSV and JSON for
scripts. Times are shown in Beijing time, and written in ISO 8601 with their offset."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict
from datetime import datetime
from decimal import Decimal
from typing import Any

import phonenumbers

from worker.cli.output import DataTable, plain, visible
from worker.ledger.finance import FIGURES
from worker.services.reconciliation import HourCheck, Reconciliation
from worker.tencent.types import BEIJING

# Short headers, so a grouped summary fits a terminal.
_LABELS = {
    "template": "tpl",
    "messages": "msgs",
    "successes": "ok",
    "billed_segments": "billed",
    "retry_attempts": "retries",
    "delivery_rate": "delivered %",
    "currency": "cur",
    "unpriced_segments": "unpriced",
}


def _shown(name: str, value: Any) -> str:
    if name == "delivery_rate" and value is not None:
        return f"{Decimal(value) * 100:.2f}"
    if value is None:
        return {"template": "(text)", "sign": "(unnamed)"}.get(name, "-")
    if name == "country":
        region = phonenumbers.region_code_for_country_code(int(value))
        return f"+{value} {region}" if region != "ZZ" else f"+{value}"
    return str(value)


def summary_table(
    columns: list[str], records: list[dict[str, Any]], start: datetime, end: datetime
) -> DataTable:
    period = (
        f"{start.astimezone(BEIJING):%Y-%m-%d %H:%M} to {end.astimezone(BEIJING):%Y-%m-%d %H:%M}"
    )
    table = DataTable(title=f"SMS usage, {period} Beijing time", title_justify="left")
    numeric = {*FIGURES, "delivery_rate", "cost", "unpriced_segments"}
    for name in columns:
        table.add_column(_LABELS.get(name, name), justify="right" if name in numeric else "left")
    for record in records:
        table.add_row(*(_shown(name, record.get(name)) for name in columns))
    return table


def _when(moment: datetime | None) -> str:
    return f"{moment.astimezone(BEIJING):%Y-%m-%d %H:%M:%S}" if moment else "-"


def _hour_line(label: str, check: HourCheck) -> str:
    parts = []
    for name in ("requests", "successes", "billed"):
        ledger_value, gateway_value = getattr(check.ledger, name), getattr(check.gateway, name)
        low, high = getattr(check.low, name), getattr(check.high, name)
        allowed = "" if low == high else f" (edges allow {low}..{high})"
        parts.append(f"{name} ledger {ledger_value} gateway {gateway_value}{allowed}")
    unsettled = (
        f"; {check.unsettled} ambiguous attempt(s) may explain it" if check.unsettled else ""
    )
    return f"  {label}: {', '.join(parts)}{unsettled}"


def report_lines(result: Reconciliation) -> Iterator[str]:
    """The reconciliation for people, a line at a time; what the gateway and the ledger said
    (errmsg, sids) is shown with its control characters as escapes."""
    for text in _report_lines(result):
        yield visible(text)


def _report_lines(result: Reconciliation) -> Iterator[str]:
    yield f"Period {_when(result.start)} to {_when(result.end)} Beijing time"
    mismatched = result.mismatched_hours
    compared = len(result.hours)
    yield f"Hours compared with pullsendstatus: {compared}, not matching: {len(mismatched)}"
    for hour in mismatched:
        yield _hour_line(f"{hour.start.astimezone(BEIJING):%Y-%m-%d %H}:00", hour)
    verdict = "matches" if result.period.matches else "DOES NOT MATCH"
    yield f"Whole period {verdict}:"
    yield _hour_line("total", result.period)
    yield f"Fees that differ from the text's segments: {result.fee_mismatches.total}"
    for item in result.fee_mismatches.items:
        yield (
            f"  attempt {item.attempt_id} (message {item.message_id}, sid {item.sid}, "
            f"{_when(item.started_at)}): fee {item.fee}, the text costs {item.expected}"
        )
    if result.unchecked_fees:
        yield f"  not checked, text unknown (see --templates): {result.unchecked_fees}"
    yield f"Sends without a delivery report: {result.unreported.total}"
    for message in result.unreported.items:
        yield f"  message {message.id} sid {message.sid} sent {_when(message.sent_at)}"
    yield f"Ambiguous attempts (may have been sent and billed): {result.unsettled.total}"
    for attempt in result.unsettled.items:
        yield (
            f"  attempt {attempt.id} of message {attempt.message_id} at "
            f"{_when(attempt.started_at)}: {attempt.outcome}, {attempt.errmsg or '-'}"
        )
    yield f"Reports no message claims: {result.orphans.total}"
    for report in result.orphans.items:
        yield f"  report {report.id} sid {report.sid} received {_when(report.received_at)}"
    yield "Everything matches." if result.ok else "Differences found."


def report_json(result: Reconciliation) -> dict[str, Any]:
    def check(hour: HourCheck) -> dict[str, Any]:
        return {**{k: plain(v) for k, v in asdict(hour).items()}, "matches": hour.matches}

    def rows(items: Any, columns: tuple[str, ...]) -> list[dict[str, Any]]:
        return [{name: plain(getattr(item, name)) for name in columns} for item in items]

    return {
        "ok": result.ok,
        "start": plain(result.start),
        "end": plain(result.end),
        "accounts": result.accounts,
        "hours": [check(hour) for hour in result.hours],
        "period": check(result.period),
        "fee_mismatches": {
            "total": result.fee_mismatches.total,
            "items": [
                {k: plain(v) for k, v in asdict(i).items()} for i in result.fee_mismatches.items
            ],
        },
        "unchecked_fees": result.unchecked_fees,
        "unreported": {
            "total": result.unreported.total,
            "items": rows(result.unreported.items, ("id", "account", "sid", "sent_at")),
        },
        "unsettled": {
            "total": result.unsettled.total,
            "items": rows(result.unsettled.items, ("id", "message_id", "outcome", "started_at")),
        },
        "orphans": {
            "total": result.orphans.total,
            "items": rows(result.orphans.items, ("id", "sid", "report_status", "received_at")),
        },
    }
