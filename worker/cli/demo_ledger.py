"""The demo's last screen: its messages and every attempt, as the ledger holds them."""

from __future__ import annotations

import uuid

from rich.console import Console
from rich.table import Table
from rich.text import Text

from worker.ledger import attempts, messages
from worker.ledger.db import make_engine, session_factory


def print_ledger(ids: list[uuid.UUID], url: str, console: Console) -> None:
    engine = make_engine(url)
    message_table = Table(title="sms_messages", title_justify="left")
    for column in ("to", "kind", "status", "tries", "result", "fee", "sid"):
        # A sid is recognisable by its start; the whole row stays on one 80-column line.
        message_table.add_column(
            column, no_wrap=True, overflow="ellipsis", max_width=12 if column == "sid" else None
        )
    attempt_table = Table(title="sms_attempts", title_justify="left")
    for column in ("to", "#", "api", "http", "result", "outcome", "ms"):
        attempt_table.add_column(column, no_wrap=True)
    reasons: list[str] = []
    try:
        with session_factory(engine)() as session:
            for id_ in ids:
                row = messages.get_message(session, id_)
                if row is None:
                    continue
                to = f"+{row.nationcode}{row.mobile}"
                # Text cells: what the gateway and the ledger hold is shown as it is, never
                # read as markup.
                message_table.add_row(
                    *_cells(to, row.kind, row.status, row.attempt_count, row.result, row.fee,
                            row.sid)
                )  # fmt: skip
                if row.reason:
                    reasons.append(f"{to} {row.status}: {row.reason}")
                for attempt in attempts.attempts_for(session, id_):
                    attempt_table.add_row(
                        *_cells(to, attempt.attempt_no, attempt.api, attempt.http_status,
                                attempt.result, attempt.outcome, attempt.latency_ms)
                    )  # fmt: skip
    finally:
        engine.dispose()
    console.print(message_table)
    for reason in reasons:
        console.print(f"  {reason}", markup=False, highlight=False)
    console.print(attempt_table)


def _cells(*values: object) -> list[Text]:
    return [Text("" if value is None else str(value)) for value in values]
