"""``sms-worker accounts``: the configured accounts and their state; pause and resume one.

The gateway pauses an account for us when it answers 1031 (prepaid package exhausted) or 1033
(suspended for arrears): its messages stay queued rather than burn requests. A person tops the
account up, then resumes it here, and the sweeper sends what waited.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import click
from rich.text import Text
from sqlalchemy.orm import Session

from worker import clock
from worker.cli.common import (
    BAD_INPUT,
    current_settings,
    database_option,
    fail,
    ledger_sessions,
)
from worker.cli.output import (
    CSV,
    JSON,
    TABLE,
    DataTable,
    emit,
    format_option,
    literal,
    raw_option,
    visible,
)
from worker.config import ConfigError, Settings
from worker.ledger import accounts as ledger_accounts
from worker.ledger.messages import count_by_status
from worker.ledger.schema import SmsAccount
from worker.ledger.status import QUEUED

# What the group's options hold for its subcommands (ctx.meta is shared by them all).
_GROUP_DATABASE_URL = "sms_worker.accounts.database_url"
_GROUP_FORMAT = "sms_worker.accounts.format"
_GROUP_RAW = "sms_worker.accounts.raw"
COLUMNS = (
    "name", "configured", "sdkappid", "gateway_url", "send_rate", "paused", "paused_code",
    "paused_reason", "paused_since", "queued",
)  # fmt: skip


@contextmanager
def _ledger(url_option: str | None, settings: Settings) -> Iterator[Session]:
    """A session on the ledger named by the option (this command's, else the group's) or
    setting; a database error ends the command with one line and exit code 1."""
    url = url_option or click.get_current_context().meta.get(_GROUP_DATABASE_URL)
    ledger = ledger_sessions(url, settings, requires_table=SmsAccount.__tablename__)
    with ledger as sessions, sessions() as session:
        yield session


def _known(settings: Settings, name: str) -> None:
    if name not in settings.account_names:
        known = ", ".join(settings.account_names)
        fail(f"unknown account {name!r}; known: {known}", BAD_INPUT)


def _queued(session: Session, name: str) -> int:
    return count_by_status(session, account=name).get(QUEUED, 0)


def _when(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat(timespec="seconds") if moment else None


def _account_row(
    settings: Settings, name: str, pause: SmsAccount | None, queued: int
) -> dict[str, Any]:
    configured = name in settings.account_names
    sdkappid, gateway_url, send_rate = settings.sdkappid, settings.gateway_url, settings.send_rate
    if configured:
        try:
            account = settings.account(name)
            sdkappid, gateway_url, send_rate = (
                account.sdkappid,
                account.gateway_url,
                account.send_rate,
            )
        except ConfigError:
            pass  # credentials missing: show what is configured, the rest is not needed here
    return {
        "name": name,
        "configured": configured,
        "sdkappid": sdkappid if configured else None,
        "gateway_url": gateway_url if configured else None,
        "send_rate": send_rate if configured else None,
        "paused": pause is not None,
        "paused_code": pause.paused_code if pause else None,
        "paused_reason": pause.paused_reason if pause else None,
        "paused_since": _when(pause.paused_at) if pause else None,
        "queued": queued,
    }


def _state(row: dict[str, Any]) -> Text:
    if not row["paused"]:
        state = literal("active", "green")
    else:
        since = datetime.fromisoformat(row["paused_since"]).strftime("%Y-%m-%d %H:%M")
        code = f"code {row['paused_code']}: " if row["paused_code"] else ""
        # The reason is people's words (or the gateway's): shown as they are, on their line.
        reason = row["paused_reason"] or ""
        state = Text.assemble(
            literal("paused", "bold red"), f" since {since} UTC\n", literal(code + reason)
        )
    return state if row["configured"] else Text.assemble(state, "\n(not configured)")


def _table(rows: list[dict[str, Any]]) -> DataTable:
    table = DataTable(title="SMS accounts", title_justify="left")
    table.add_column("Account", overflow="fold")
    table.add_column("SDKAppID")
    table.add_column("Gateway", no_wrap=True)
    table.add_column("Rate/s", justify="right")
    table.add_column("Queued", justify="right")
    table.add_column("State", overflow="fold")
    for row in rows:
        table.add_row(
            row["name"],
            row["sdkappid"] or "-",
            row["gateway_url"] or "-",
            f"{row['send_rate']:g}" if row["send_rate"] is not None else "-",
            str(row["queued"]),
            _state(row),
        )
    return table


@click.group(invoke_without_command=True)
@database_option
@format_option(TABLE, JSON, CSV, default=None)
@raw_option
@click.pass_context
def accounts(
    ctx: click.Context, url_option: str | None, output_format: str | None, raw: bool
) -> None:
    """Show the accounts and whether they are paused; pause or resume one.

    A paused account's messages stay queued and go out once it is resumed. The worker pauses an
    account by itself when the gateway answers 1031 (prepaid package exhausted) or 1033
    (suspended for arrears). Without a subcommand: the list.

    \b
    Examples:
      sms-worker accounts                                  # same as: sms-worker accounts list
      sms-worker accounts --format json
      sms-worker accounts pause shop --reason "contract renewal pending"
      sms-worker accounts resume shop                      # after topping up the package
    """
    ctx.meta[_GROUP_DATABASE_URL] = url_option
    ctx.meta[_GROUP_FORMAT] = output_format
    ctx.meta[_GROUP_RAW] = raw
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_accounts)


@accounts.command("list")
@database_option
@format_option(TABLE, JSON, CSV, default=None)
@raw_option
def list_accounts(
    url_option: str | None = None, output_format: str | None = None, raw: bool = False
) -> None:
    """Each configured account: SDKAppID, gateway, send rate, paused or not, queued messages.

    \b
    Examples:
      sms-worker accounts list
      sms-worker accounts list --format json | jq '.[] | select(.paused)'
      sms-worker accounts list --format csv > accounts.csv
    """
    settings = current_settings()
    meta = click.get_current_context().meta
    chosen = output_format or meta.get(_GROUP_FORMAT) or TABLE
    with _ledger(url_option, settings) as session:
        paused = ledger_accounts.paused_accounts(session)
        names = [*settings.account_names, *(n for n in paused if n not in settings.account_names)]
        rows = [_account_row(settings, n, paused.get(n), _queued(session, n)) for n in names]
    raw = raw or bool(meta.get(_GROUP_RAW))
    emit(rows, chosen, columns=COLUMNS, table=lambda: _table(rows), raw=raw)


@accounts.command()
@click.argument("name")
@click.option("--reason", required=True, help="Why, for the people who will resume it.")
@database_option
def pause(name: str, reason: str, url_option: str | None = None) -> None:
    """Stop sending for account NAME; its messages stay queued until it is resumed.

    \b
    Examples:
      sms-worker accounts pause shop --reason "contract renewal pending"
    """
    settings = current_settings()
    _known(settings, name)
    with _ledger(url_option, settings) as session:
        paused = ledger_accounts.pause_account(
            session, name, code=None, reason=reason, now=clock.now()
        )
        session.commit()
        current = ledger_accounts.paused_accounts(session).get(name)
        queued = _queued(session, name)
    if not paused and current is not None:
        code = f" (code {current.paused_code})" if current.paused_code else ""
        click.echo(
            visible(
                f"{name} was already paused since {_when(current.paused_at)}{code}: "
                f"{current.paused_reason}"
            )
        )
        return
    click.echo(
        visible(
            f"Paused {name}: {queued} queued message(s) wait until "
            f"`sms-worker accounts resume {name}`."
        )
    )


@accounts.command()
@click.argument("name")
@database_option
def resume(name: str, url_option: str | None = None) -> None:
    """Let account NAME send again; the sweeper publishes its queued messages.

    \b
    Examples:
      sms-worker accounts resume shop
    """
    settings = current_settings()
    with _ledger(url_option, settings) as session:
        # A paused account no longer configured may still be resumed, to clear it from the list.
        if name not in ledger_accounts.paused_accounts(session):
            _known(settings, name)
            click.echo(visible(f"{name} is not paused; nothing to do."))
            return
        ledger_accounts.resume_account(session, name, clock.now())
        session.commit()
        queued = _queued(session, name)
    click.echo(
        visible(
            f"Resumed {name}: {queued} queued message(s) will go out as the sweeper publishes them."
        )
    )
