"""``sms-worker optout``: the numbers that must not receive marketing.

Replies such as TD, T, N, STOP or 退订 put a number on the list by themselves; these commands
are for requests that come another way (a call, an e-mail, a complaint). The list is checked when
a batch is imported and again when each message is sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click
from sqlalchemy.orm import Session

from worker.cli.common import BAD_INPUT, fail, ledger_sessions
from worker.cli.output import CSV, JSON, TABLE, DataTable, emit, format_option, raw_option
from worker.ledger.optouts import add_opt_out, list_opt_outs, remove_opt_out
from worker.ledger.schema import SmsOptOut
from worker.tencent import InvalidInput, Phone, parse_phone

COLUMNS = ("number", "source", "reason", "since")


@contextmanager
def _ledger() -> Iterator[Session]:
    with ledger_sessions(requires_table=SmsOptOut.__tablename__) as sessions, sessions() as session:
        yield session


def _phones(numbers: tuple[str, ...], nationcode: str | None) -> list[Phone]:
    try:
        return [parse_phone(number, nationcode) for number in numbers]
    except InvalidInput as error:
        option = "--nationcode" if error.field == "nationcode" else "NUMBER"
        fail(f"{option}: {error.problem}", BAD_INPUT, cause=error)


_numbers = click.argument("numbers", nargs=-1, required=True, metavar="NUMBER...")
_nationcode = click.option("--nationcode", metavar="CODE", help="For national NUMBERs.")


@click.group()
def optout() -> None:
    """Numbers that must not receive marketing (replies like TD or 退订 add them by themselves).

    \b
    Examples:
      sms-worker optout add +8613788888888 --reason "asked by phone"
      sms-worker optout remove 13788888888 --nationcode 86
      sms-worker optout list --format json
    """


@optout.command()
@_numbers
@_nationcode
@click.option("--reason", default="", help="Why, for the people who read the list.")
def add(numbers: tuple[str, ...], nationcode: str | None, reason: str) -> None:
    """Opt NUMBER... out of marketing (E.164, or national with --nationcode).

    \b
    Examples:
      sms-worker optout add +8613788888888 --reason "asked by phone"
      sms-worker optout add 13788888888 13700000001 --nationcode 86
    """
    phones = _phones(numbers, nationcode)
    with _ledger() as session:
        added = [p for p in phones if add_opt_out(session, p.nationcode, p.mobile,
                                                  source="command", reason=reason)]  # fmt: skip
        session.commit()
    click.echo(f"opted out {len(added)} number(s); {len(phones) - len(added)} already were")


@optout.command()
@_numbers
@_nationcode
def remove(numbers: tuple[str, ...], nationcode: str | None) -> None:
    """Take NUMBER... off the list: they may receive marketing again.

    \b
    Examples:
      sms-worker optout remove +8613788888888
      sms-worker optout remove 13788888888 --nationcode 86
    """
    phones = _phones(numbers, nationcode)
    with _ledger() as session:
        removed = [p for p in phones if remove_opt_out(session, p.nationcode, p.mobile)]
        session.commit()
    click.echo(f"removed {len(removed)} number(s); {len(phones) - len(removed)} were not listed")


@optout.command("list")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many. Default: all.")
@format_option(TABLE, JSON, CSV)
@raw_option
def list_command(limit: int | None, output_format: str, raw: bool) -> None:
    """The opted-out numbers, newest first, with where each came from.

    In CSV the numbers (E.164, +86...) start with a ' so that a spreadsheet keeps them as
    text; --raw writes them as they are.

    \b
    Examples:
      sms-worker optout list --limit 20
      sms-worker optout list --format csv > opted-out.csv
    """
    with _ledger() as session:
        rows = [
            {"number": f"+{row.nationcode}{row.mobile}", "source": row.source,
             "reason": row.reason, "since": row.created_at.isoformat(timespec="seconds")}
            for row in list_opt_outs(session, limit=limit)
        ]  # fmt: skip
    emit(rows, output_format, columns=COLUMNS, table=lambda: _table(rows), raw=raw)


def _table(rows: list[dict[str, str]]) -> DataTable:
    table = DataTable(title="Opted out of marketing", title_justify="left")
    for column in COLUMNS:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(row[column] for column in COLUMNS))
    return table
