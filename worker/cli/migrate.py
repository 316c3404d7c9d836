"""``sms-worker migrate``: bring the ledger's tables to the version this package needs."""

from __future__ import annotations

import click
from alembic.util.exc import CommandError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from worker.config import ConfigError, load_settings
from worker.ledger import migrate as migrations
from worker.ledger.db import database_url

BAD_INPUT = 2
FAILURE = 1


def _fail(message: str, code: int) -> click.exceptions.Exit:
    click.echo(f"sms-worker migrate: {message}", err=True)
    return click.exceptions.Exit(code)


def _first_line(error: BaseException) -> str:
    # A DBAPI error's text starts with the server's own words; the rest is SQL and a link.
    original = getattr(error, "orig", None) or error
    return (str(original).strip().splitlines() or [type(original).__name__])[0]


@click.command()
@click.option(
    "--database-url",
    "url_option",
    metavar="URL",
    help="The ledger database. Default: SMS_DATABASE_URL (sqlite:///sms-ledger.db).",
)
@click.option("--revision", default="head", show_default=True, help="Upgrade to this revision.")
@click.option(
    "--downgrade",
    "downgrade_to",
    metavar="REV",
    help="Downgrade to REV instead ('base' drops every table, and the ledger with them).",
)
@click.option("--yes", is_flag=True, help="Do not ask before a downgrade.")
@click.option("--show", is_flag=True, help="Only print the database's revision and the newest.")
def migrate(
    url_option: str | None = None,
    revision: str = "head",
    downgrade_to: str | None = None,
    yes: bool = False,
    show: bool = False,
) -> None:
    """Create or upgrade the ledger's tables (safe to run again: it does only what is missing).

    \b
    Examples:
      sms-worker migrate                                     # SMS_DATABASE_URL, to the newest
      sms-worker migrate --database-url postgresql://sms@db/sms
      sms-worker migrate --show                              # where is it, where should it be
      sms-worker migrate --downgrade 0001
    """
    if downgrade_to is not None and revision != "head":
        raise _fail("give --revision or --downgrade, not both", BAD_INPUT)
    url, source = url_option, "--database-url"
    if url is None:
        try:
            url, source = load_settings().database_url, "SMS_DATABASE_URL"
        except ConfigError as error:
            raise _fail(str(error), BAD_INPUT) from None
    try:
        database_url(url)  # refuses what the ledger cannot run on
        shown = make_url(url).render_as_string(hide_password=True)
    except ArgumentError as error:
        raise _fail(f"{source}: {error}", BAD_INPUT) from None

    try:
        if show:
            now, newest = migrations.current(url), migrations.head()
            state = "up to date" if now == newest else "needs: sms-worker migrate"
            click.echo(f"{shown}: at {now or 'nothing (empty)'}, newest {newest}: {state}")
            return
        before = migrations.current(url)
        if downgrade_to is not None:
            if not yes:
                click.confirm(
                    f"Downgrade {shown} to {downgrade_to}? Tables and their rows may be dropped",
                    abort=True,
                )
            migrations.downgrade(url, downgrade_to)
        else:
            migrations.upgrade(url, revision)
        after = migrations.current(url)
        change = f"already at {after}" if after == before else f"{before or 'empty'} -> {after}"
        click.echo(f"{shown}: {change}")
    except CommandError as error:
        raise _fail(str(error), BAD_INPUT) from None
    except (SQLAlchemyError, OSError) as error:
        raise _fail(f"{shown}: {_first_line(error)}", FAILURE) from None
