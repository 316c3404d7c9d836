"""``sms-worker migrate``: bring the ledger's tables to the version this package needs."""

from __future__ import annotations

import click
from alembic.util.exc import CommandError
from sqlalchemy.exc import SQLAlchemyError

from worker.cli.common import (
    BAD_INPUT,
    FAILURE,
    checked_database_url,
    database_option,
    fail,
    first_line,
)
from worker.ledger import migrate as migrations


@click.command()
@database_option
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
        fail("give --revision or --downgrade, not both", BAD_INPUT)
    url, shown = checked_database_url(url_option, None)

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
        fail(str(error), BAD_INPUT, cause=error)
    except (SQLAlchemyError, OSError) as error:
        fail(f"{shown}: {first_line(error)}", FAILURE, cause=error)
