"""``sms-worker optout``: the numbers that must not receive marketing.

Replies such as TD, T, N, STOP or 退订 put a number on the list by themselves; these commands
are for requests that come another way (a call, an e-mail, a complaint). The list is checked when
a batch is imported and again when each message is sent.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import click
from rich.console import Console
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from worker.config import ConfigError, load_settings
from worker.ledger.db import make_engine, session_factory
from worker.ledger.optouts import add_opt_out, list_opt_outs, remove_opt_out
from worker.tencent import InvalidInput, Phone, parse_phone

BAD_INPUT = 2
FAILURE = 1


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"sms-worker optout: {message}", err=True)
    raise click.exceptions.Exit(code)


@contextmanager
def _ledger() -> Iterator[Session]:
    try:
        settings = load_settings()
    except ConfigError as error:
        _fail(str(error), BAD_INPUT)
    engine = make_engine(settings.database_url)
    try:
        with session_factory(engine)() as session:
            yield session
    except SQLAlchemyError as error:
        original = getattr(error, "orig", None) or error
        _fail(f"ledger: {(str(original).strip().splitlines() or ['error'])[0]}", FAILURE)
    finally:
        engine.dispose()


def _phones(numbers: tuple[str, ...], nationcode: str | None) -> list[Phone]:
    try:
        return [parse_phone(number, nationcode) for number in numbers]
    except InvalidInput as error:
        _fail(str(error), BAD_INPUT)


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
    """Opt NUMBER... out of marketing (E.164, or national with --nationcode)."""
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
    """Take NUMBER... off the list: they may receive marketing again."""
    phones = _phones(numbers, nationcode)
    with _ledger() as session:
        removed = [p for p in phones if remove_opt_out(session, p.nationcode, p.mobile)]
        session.commit()
    click.echo(f"removed {len(removed)} number(s); {len(phones) - len(removed)} were not listed")


@optout.command("list")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many. Default: all.")
@click.option("--format", "output_format", type=click.Choice(["table", "json"]), default="table")
def list_command(limit: int | None, output_format: str) -> None:
    """The opted-out numbers, newest first, with where each came from."""
    with _ledger() as session:
        rows = [
            {"number": f"+{row.nationcode}{row.mobile}", "source": row.source,
             "reason": row.reason, "since": row.created_at.isoformat(timespec="seconds")}
            for row in list_opt_outs(session, limit=limit)
        ]  # fmt: skip
    if output_format == "json":
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    table = Table(title="Opted out of marketing", title_justify="left")
    for column in ("number", "source", "reason", "since"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(row["number"], row["source"], row["reason"], row["since"])
    Console().print(table)
