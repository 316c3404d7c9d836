"""``sms-worker ledger``: what finance needs: summaries, exports, reconciliation, the rollup.

Periods are ``--from`` (included) to ``--to`` (excluded). A date is a Beijing calendar day
(finance and the gateway's billing count in them), so ``--from 2026-11-01 --to 2026-12-01`` is
November in Beijing; an ISO datetime with an offset is taken as it is, without one as Beijing
time. Exit codes: 0 ok, 1 failure (or, for ``reconcile``, a difference found), 2 bad input.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import click
from rich.progress import Progress, SpinnerColumn, TextColumn
from sqlalchemy.orm import Session, sessionmaker

from worker.cli.common import (
    BAD_INPUT,
    FAILURE,
    current_settings,
    database_option,
    fail,
    ledger_sessions,
)
from worker.cli.ledger_report import report_json, report_lines, summary_table
from worker.cli.output import (
    CSV,
    JSON,
    TABLE,
    CsvWriter,
    data_console,
    echo_json,
    emit,
    format_option,
    plain,
    raw_option,
    visible,
)
from worker.config import ConfigError, Settings
from worker.ledger.schema import SmsDailyUsage
from worker.services import finance
from worker.tencent import GatewayError, SmsClient
from worker.tencent.types import BEIJING

PROGRESS_EVERY = 1000  # rows between two updates of the export's progress line


def _moment(ctx: click.Context, param: click.Parameter, value: str) -> datetime:
    """A Beijing day (its midnight) or an ISO datetime (Beijing time when it has no offset)."""
    text = value.strip()
    try:
        if len(text) == len("YYYY-MM-DD"):
            return finance.beijing_midnight(date.fromisoformat(text))
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is neither a day (YYYY-MM-DD) nor an ISO datetime", ctx, param
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=BEIJING)


def _period(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    if end <= start:
        raise click.BadParameter("must come after --from", param_hint="'--to'")
    return start, end


def _period_options(command: Any) -> Any:
    command = click.option(
        "--to", "end", required=True, callback=_moment, metavar="DAY|DATETIME",
        help="End of the period, excluded: a Beijing day (YYYY-MM-DD) or an ISO datetime.",
    )(command)  # fmt: skip
    return click.option(
        "--from", "start", required=True, callback=_moment, metavar="DAY|DATETIME",
        help="Start of the period, included: a Beijing day (YYYY-MM-DD) or an ISO datetime "
        "(Beijing time unless it has an offset).",
    )(command)  # fmt: skip


def _ledger(
    url_option: str | None, settings: Settings
) -> AbstractContextManager[sessionmaker[Session]]:
    """Sessions on the ledger; a database error ends the command with one line, exit 1."""
    return ledger_sessions(url_option, settings, requires_table=SmsDailyUsage.__tablename__)


@click.group()
def ledger() -> None:
    """Finance's view of the ledger: summaries, exports, reconciliation with the gateway.

    Days are Beijing calendar days; --from is included, --to is excluded.

    \b
    Examples:
      sms-worker ledger summary --from 2026-11-01 --to 2026-12-01 --by day,account
      sms-worker ledger export --from 2026-11-24 --to 2026-11-25 --what attempts --output a.csv
      sms-worker ledger reconcile --from 2026-11-24 --to 2026-11-25
      sms-worker ledger rollup --days 7
    """


@ledger.command()
@_period_options
@click.option(
    "--by",
    default="",
    metavar="DIMENSIONS",
    help=f"Comma-separated grouping: {','.join(finance.DIMENSIONS)}. Default: totals only.",
)
@format_option(TABLE, CSV, JSON)
@raw_option
@click.option("--prices", is_flag=True, help="Price the billed segments (table sms_prices).")
@click.option("--account", "accounts", multiple=True, help="Only this account; repeatable.")
@database_option
def summary(
    start: datetime,
    end: datetime,
    by: str,
    output_format: str,
    raw: bool,
    prices: bool,
    accounts: tuple[str, ...],
    url_option: str | None,
) -> None:
    """Messages, attempts, billed segments, retry overhead and delivery rate per group.

    Messages count by the day they were created, attempts by the day they were made (the day
    the gateway billed them). Whole past days come from the daily rollup, the rest live.

    \b
    Examples:
      sms-worker ledger summary --from 2026-11-01 --to 2026-12-01
      sms-worker ledger summary --from 2026-11-01 --to 2026-12-01 --by day,account --format csv
      sms-worker ledger summary --from 2026-11-24 --to 2026-11-25 --by country,kind --prices
      sms-worker ledger summary --from 2026-11-24T08:00 --to 2026-11-24T12:00 --by template
    """
    start, end = _period(start, end)
    dimensions = [name.strip() for name in by.split(",") if name.strip()]
    unknown = [name for name in dimensions if name not in finance.DIMENSIONS]
    if unknown:
        raise click.BadParameter(
            f"unknown {', '.join(unknown)}; use {','.join(finance.DIMENSIONS)}",
            param_hint="'--by'",
        )
    settings = current_settings()
    with _ledger(url_option, settings) as sessions:
        price_list = finance.PriceList.load(sessions) if prices else None
        try:
            rows = finance.summary(
                sessions, start, end, by=dimensions, accounts=accounts or None, prices=price_list
            )
        except ValueError as error:
            fail(str(error), FAILURE, cause=error)
    records = [row.as_dict(priced=prices) for row in rows]
    columns = finance.summary_columns(dimensions, priced=prices)
    emit(records, output_format, columns=columns,
         table=lambda: summary_table(columns, records, start, end), raw=raw)  # fmt: skip


@ledger.command()
@_period_options
@click.option("--what", type=click.Choice(finance.EXPORTS), required=True,
              help="Messages (by creation) or attempts (by start).")  # fmt: skip
@format_option(CSV, "jsonl", default=CSV)
@raw_option
@click.option(
    "--output", type=click.Path(dir_okay=False, path_type=Path), help="A file; default stdout."
)
@click.option("--account", "accounts", multiple=True, help="Only this account; repeatable.")
@database_option
def export(
    start: datetime,
    end: datetime,
    what: str,
    output_format: str,
    raw: bool,
    output: Path | None,
    accounts: tuple[str, ...],
    url_option: str | None,
) -> None:
    """Stream every message created, or attempt made, in the period: CSV or JSON lines.

    Rows are read in batches from the database and written as they come, so memory stays the
    same whatever the period. Attempts carry their message's account, kind and country.

    Signs, ext, params, numbers and errmsg come from people and the gateway: in CSV a text
    cell starting with =, +, -, @ (so every E.164 number, +86...) is written with a ' before
    it, so a spreadsheet shows it instead of running it as a formula; --raw or jsonl give
    every value exactly.

    \b
    Examples:
      sms-worker ledger export --from 2026-11-01 --to 2026-12-01 --what messages > nov.csv
      sms-worker ledger export --from 2026-11-24 --to 2026-11-25 --what attempts \\
          --format jsonl --output attempts.jsonl
    """
    start, end = _period(start, end)
    settings = current_settings()
    with _ledger(url_option, settings) as sessions:
        rows = finance.export(sessions, what, start, end, accounts=accounts or None)
        if output is None:
            written = _write(rows, what, output_format, sys.stdout, raw=raw)
        else:
            try:
                with output.open("w", encoding="utf-8", newline="") as file:
                    written = _write(rows, what, output_format, file, raw=raw)
            except OSError as error:
                fail(f"--output: cannot write {output}: {error.strerror}", FAILURE, cause=error)
    click.echo(f"{written} {what} exported", err=True)


def _write(
    rows: Iterator[dict[str, Any]], what: str, output_format: str, file: IO[str], *, raw: bool
) -> int:
    writer = None
    if output_format == CSV:
        writer = CsvWriter(file, finance.export_columns(what), raw=raw)
    written = 0
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}", markup=False),
        console=data_console(stderr=True),
        disable=not sys.stderr.isatty(),
        transient=True,
    ) as progress:
        task = progress.add_task(f"exporting {what}")
        for row in rows:
            if writer is not None:
                writer.write(row)
            else:
                record = {name: plain(value) for name, value in row.items()}
                file.write(json.dumps(record, ensure_ascii=False) + "\n")
            written += 1
            if written % PROGRESS_EVERY == 0:
                progress.update(task, description=f"exporting {what}: {written} rows")
    return written


@ledger.command()
@_period_options
@click.option("--account", help="The account whose gateway figures are read; default: the default.")
@click.option(
    "--report-after-hours",
    type=click.FloatRange(min=0),
    default=24.0,
    show_default=True,
    help="A send without a delivery report this long after it went out is listed.",
)
@click.option(
    "--orphan-after-hours",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="A report no message claims this long after it came is listed.",
)
@click.option(
    "--templates",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="TOML of template texts (id = text, default_sign), to check each fee against its text.",
)
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True,
              help="Items listed per kind of problem.")  # fmt: skip
@format_option("text", JSON, default="text")
@database_option
def reconcile(
    start: datetime,
    end: datetime,
    account: str | None,
    report_after_hours: float,
    orphan_after_hours: float,
    templates: Path | None,
    limit: int,
    output_format: str,
    url_option: str | None,
) -> None:
    """Compare the ledger with the gateway's pullsendstatus, hour by hour, and list problems.

    Per Beijing hour: requests, successes and billed segments, counted per number the way the
    gateway counts them. Then: sends without a delivery report, fees that differ from what the
    text costs (needs --templates for template sends), ambiguous attempts, orphan reports.
    Exit 0 when everything matches, 1 when not: fit for a scheduler.

    \b
    Examples:
      sms-worker ledger reconcile --from 2026-11-24 --to 2026-11-25
      sms-worker ledger reconcile --from 2026-11-01 --to 2026-12-01 --account shop \\
          --templates templates.toml --report-after-hours 48
    \b
    templates.toml:
      default_sign = "腾讯云"
      [templates]
      100003 = "尊敬的{1}，您的订单{2}已于{3}发货..."
    """
    start, end = _period(start, end)
    settings = current_settings()
    try:
        chosen = settings.account(account)
    except ConfigError as error:
        fail(f"--account: {error}", BAD_INPUT, cause=error)
    try:
        book = finance.TemplateBook.load(templates) if templates else None
    except ValueError as error:
        fail(f"--templates: {error}", BAD_INPUT, cause=error)
    names = []
    for name in settings.account_names:
        try:
            other = settings.account(name)
        except ConfigError:
            continue
        if (other.sdkappid, other.gateway_url) == (chosen.sdkappid, chosen.gateway_url):
            names.append(name)
    client = SmsClient(chosen.sdkappid, chosen.appkey.get_secret_value(), chosen.gateway_url)
    with client, _ledger(url_option, settings) as sessions:
        try:
            result = finance.reconcile(
                sessions, client, (start, end), accounts=names,
                report_after_hours=report_after_hours, templates=book,
                orphan_grace=timedelta(hours=orphan_after_hours), limit=limit,
            )  # fmt: skip
        except GatewayError as error:
            fail(f"the gateway did not give its figures: {error}", FAILURE, cause=error)
        except ValueError as error:
            fail(str(error), BAD_INPUT, cause=error)
    if output_format == JSON:
        echo_json(report_json(result))
    else:
        header = f"Account {chosen.name} (sdkappid {chosen.sdkappid}; ledger accounts: "
        click.echo(visible(header + f"{', '.join(names)})"))
        for line in report_lines(result):
            click.echo(line)
    if not result.ok:
        raise click.exceptions.Exit(FAILURE)


@ledger.command()
@click.option("--days", type=click.IntRange(min=1, max=366), default=7, show_default=True,
              help="Today (Beijing) and the days before it.")  # fmt: skip
@database_option
def rollup(days: int, url_option: str | None) -> None:
    """Recompute the daily usage rollup (sms_daily_usage) of the last DAYS Beijing days.

    Beat runs it hourly for today and yesterday and nightly for the last week; run it by hand
    after importing old data or to refresh older days.

    \b
    Examples:
      sms-worker ledger rollup --days 31
    """
    settings = current_settings()
    chosen = finance.trailing_days(days)
    with _ledger(url_option, settings) as sessions:
        written = finance.rollup(sessions, chosen)
    click.echo(f"Rolled up {chosen[0]} to {chosen[-1]} (Beijing days): {written} row(s).")
