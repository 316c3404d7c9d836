"""``sms-worker batch``: create a marketing batch from a CSV file, watch it, pause, resume, cancel.

Creating a batch only writes the ledger; beat's dispatcher (``sms.dispatch_batches``) sends it
from its start, between 08:00 and 22:00 Beijing time, at the account's rate. Times given without
an offset are Beijing time.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, NoReturn

import click
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, DownloadColumn, Progress, TaskProgressColumn, TextColumn
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from worker.batches import Batches, BatchStatus
from worker.config import ConfigError, load_settings
from worker.ledger.batch_models import FINISHED, SmsBatch
from worker.ledger.status import MESSAGE_STATUSES
from worker.services.batch_import import BatchInputError, ImportProgress, ImportReport
from worker.services.waits import BEIJING
from worker.tencent import InvalidInput

BAD_INPUT = 2
FAILURE = 1
SHOWN_REJECTIONS = 10


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"sms-worker batch: {message}", err=True)
    raise click.exceptions.Exit(code)


def _first_line(error: BaseException) -> str:
    original = getattr(error, "orig", None) or error
    return (str(original).strip().splitlines() or [type(original).__name__])[0]


@contextmanager
def _batches() -> Iterator[Batches]:
    """The ledger's batches; bad input ends with exit code 2, a database error with 1."""
    try:
        batches = Batches(load_settings())
    except ConfigError as error:
        _fail(str(error), BAD_INPUT)
    try:
        yield batches
    except (BatchInputError, InvalidInput, LookupError) as error:
        _fail(str(error), BAD_INPUT)
    except SQLAlchemyError as error:
        _fail(f"ledger: {_first_line(error)}", FAILURE)
    finally:
        batches.close()


def _when(value: str, option: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        _fail(
            f"{option}: {value!r} is not a time such as 2026-05-01T09:00 or 2026-05-01 09:00+08:00",
            BAD_INPUT,
        )
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=BEIJING)


def _beijing(moment: datetime | None) -> str:
    return moment.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M") if moment else "-"


def _batch_id(batches: Batches, given: str) -> uuid.UUID:
    return batches.find(given).id


@click.group()
def batch() -> None:
    """Marketing batches: a CSV of recipients sent by beat's dispatcher within the legal hours.

    \b
    Examples:
      sms-worker batch create customers.csv --template 100002 --sign 腾讯云 \\
          --param 会员 --param 8 --start "2026-05-01 09:00" --window-end "2026-05-01 21:00"
      sms-worker batch list
      sms-worker batch status 3f2a --follow
      sms-worker batch pause 3f2a && sms-worker batch resume 3f2a
      sms-worker batch cancel 3f2a
    """


@batch.command()
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=False))
@click.option("--template", type=int, required=True, metavar="ID", help="An approved template.")
@click.option("--sign", metavar="SIGN", help="The signature, without 【】.")
@click.option("--account", metavar="NAME", help="The account (SMS_CONFIG); default: its default.")
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="VALUE",
    help="A param shared by every recipient; repeat for {1}, {2}, ... in order.",
)
@click.option(
    "--params-from",
    metavar="COLUMNS",
    help="Comma-separated columns holding each row's {1}, {2}, ... Default: param1, param2, ...",
)
@click.option("--param-count", type=click.IntRange(min=0), help="The template's params, if known.")
@click.option("--start", metavar="TIME", help="When sending may begin. Default: now.")
@click.option(
    "--window-end", metavar="TIME", help="Messages not out by then expire. Default: 3 days on."
)
@click.option("--name", metavar="NAME", help="A name for people. Default: the file's name.")
def create(
    file: str,
    template: int,
    sign: str | None,
    account: str | None,
    params: tuple[str, ...],
    params_from: str | None,
    param_count: int | None,
    start: str | None,
    window_end: str | None,
    name: str | None,
) -> None:
    """Import FILE (CSV, UTF-8, header row) as a batch; every row is accepted or rejected.

    Columns: mobile (E.164, or national with a nationcode column), optional nationcode, and
    the params of each recipient as param1, param2, ... (or the columns of --params-from) unless
    --param gives them for all. Exit status: 0 imported (rows may have been rejected: see the
    summary), 2 bad input, 1 failure.

    \b
    Examples:
      sms-worker batch create vip.csv --template 100002 --sign 腾讯云 --param 会员 --param 8
      sms-worker batch create orders.csv --template 100002 --params-from name,discount \\
          --start "2026-05-01 09:00" --window-end "2026-05-02 21:00"
    """
    starts = _when(start, "--start") if start else None
    ends = _when(window_end, "--window-end") if window_end else None
    columns = [c.strip() for c in params_from.split(",") if c.strip()] if params_from else None
    try:
        raw = open(file, "rb")  # noqa: SIM115 - closed below; its position drives the bar
    except OSError as error:
        _fail(f"cannot read {file}: {error.strerror}", BAD_INPUT)
    with raw, _batches() as batches, _import_bar(raw) as show:
        lines = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
        try:
            report = batches.create(
                lines, template=template, sign=sign, account=account,
                params=params or None, params_from=columns, param_count=param_count,
                start_at=starts, window_end_at=ends, progress=show,
                name=name or click.format_filename(file, shorten=True),
            )  # fmt: skip
        except UnicodeDecodeError:
            _fail(f"{file} is not UTF-8 text", BAD_INPUT)
    _print_report(report)


@contextmanager
def _import_bar(raw: io.BufferedReader) -> Iterator[Callable[[ImportProgress], None]]:
    """A progress bar over the file's bytes, fed after every imported chunk."""
    size = max(1, _size(raw))
    columns = (
        TextColumn("importing"), BarColumn(), TaskProgressColumn(), DownloadColumn(),
        TextColumn("{task.fields[rows]} rows, {task.fields[rejected]} rejected"),
    )  # fmt: skip
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("import", total=size, rows=0, rejected=0)

        def show(progress: ImportProgress) -> None:
            bar.update(task, completed=raw.tell(), rows=progress.rows, rejected=progress.rejected)

        yield show


def _size(raw: io.BufferedReader) -> int:
    try:
        return raw.seek(0, io.SEEK_END)
    finally:
        raw.seek(0)


def _print_report(report: ImportReport) -> None:
    console = Console()
    console.print(
        f"batch [bold]{report.batch_id}[/]: {report.rows} rows, "
        f"[green]{report.accepted} accepted[/], [red]{report.rejected} rejected[/]"
    )
    if report.reasons:
        console.print(
            "rejected: " + ", ".join(f"{r} {n}" for r, n in sorted(report.reasons.items()))
        )
    if report.first_rejections:
        table = Table(title="First rejections", title_justify="left")
        for column in ("line", "reason", "detail", "row"):
            table.add_column(column, overflow="fold")
        for item in report.first_rejections:
            table.add_row(str(item.line_no), item.reason, item.detail, item.raw)
        console.print(table)
        if report.rejected > len(report.first_rejections):
            console.print(f"all of them: sms-worker batch rejections {report.batch_id}")


@batch.command("list")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--format", "output_format", type=click.Choice(["table", "json"]), default="table")
def list_batches(limit: int, output_format: str) -> None:
    """The newest batches: state, schedule (Beijing time) and import counts.

    \b
    Example:
      sms-worker batch list --format json | jq '.[] | select(.status == "sending")'
    """
    with _batches() as batches:
        found = batches.recent(limit)
    if output_format == "json":
        click.echo(json.dumps([b.summary() for b in found], indent=2, ensure_ascii=False))
        return
    # Ids are cut to 8 characters: any unique prefix names a batch in the other commands.
    table = Table(title="Batches (times in Beijing)", title_justify="left")
    for column in ("id", "name", "account", "status", "start", "window end", "rows", "accepted"):
        table.add_column(column, overflow="fold", no_wrap=column in ("id", "status"))
    for found_batch in found:
        table.add_row(
            str(found_batch.id)[:8], found_batch.name, found_batch.account, found_batch.status,
            _beijing(found_batch.start_at), _beijing(found_batch.window_end_at),
            str(found_batch.total_rows), str(found_batch.accepted),
        )  # fmt: skip
    Console().print(table)


@batch.command()
@click.argument("batch_id", metavar="ID")
@click.option("--follow", is_flag=True, help="Keep the view live until the batch ends (Ctrl-C).")
@click.option("--interval", type=click.FloatRange(min=0.2), default=2.0, show_default=True)
@click.option("--format", "output_format", type=click.Choice(["table", "json"]), default="table")
def status(batch_id: str, follow: bool, interval: float, output_format: str) -> None:
    """Where batch ID stands: messages per state and progress. ID may be a unique prefix.

    \b
    Examples:
      sms-worker batch status 3f2a
      sms-worker batch status 3f2a --follow
    """
    with _batches() as batches:
        found = _batch_id(batches, batch_id)
        current = batches.status(found)
        if output_format == "json":
            summary = {**current.batch.summary(), "messages": current.messages,
                       "rejections": current.rejections}  # fmt: skip
            click.echo(json.dumps(summary, indent=2, ensure_ascii=False))
            return
        if not follow:
            Console().print(_status_view(current))
            return
        try:
            with Live(_status_view(current), refresh_per_second=4) as live:
                while not _ended(current):
                    time.sleep(interval)
                    current = batches.status(found)
                    live.update(_status_view(current))
        except KeyboardInterrupt:
            pass


def _ended(current: BatchStatus) -> bool:
    return current.batch.status in FINISHED and current.settled == current.batch.accepted


def _status_view(current: BatchStatus) -> Group:
    found: SmsBatch = current.batch
    head = Table(show_header=False, box=None)
    for label, value in (
        ("batch", f"{found.id} ({found.name})"),
        ("status", found.status),
        ("account", found.account),
        ("template", f"{found.tpl_id}, sign {found.sign or '(account default)'}"),
        ("schedule", f"{_beijing(found.start_at)} to {_beijing(found.window_end_at)} Beijing"),
        ("rows", f"{found.total_rows}: {found.accepted} accepted, {found.rejected} rejected"),
    ):
        head.add_row(label, value)
    states = Table(title="Messages", title_justify="left")
    shown = [s for s in MESSAGE_STATUSES if current.messages.get(s)]
    for state in shown:
        states.add_column(state, justify="right")
    states.add_row(*(str(current.messages[s]) for s in shown))
    bar = Progress(
        TextColumn("settled"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.completed}/{task.total}"),
    )
    bar.add_task("settled", total=max(1, found.accepted), completed=current.settled)
    parts: list[Any] = [head, states, bar]
    if current.rejections:
        parts.append(
            "rejected: " + ", ".join(f"{r} {n}" for r, n in sorted(current.rejections.items()))
        )
    return Group(*parts)


@batch.command()
@click.argument("batch_id", metavar="ID")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many. Default: all.")
def rejections(batch_id: str, limit: int | None) -> None:
    """The rows batch ID turned away, as CSV: line, reason, detail, row.

    \b
    Example:
      sms-worker batch rejections 3f2a > rejected.csv
    """
    with _batches() as batches:
        rows = batches.rejections(_batch_id(batches, batch_id), limit)
    writer = csv.writer(sys.stdout)
    writer.writerow(["line", "reason", "detail", "row"])
    for row in rows:
        writer.writerow([row.line_no, row.reason, row.detail, row.raw])


@batch.command()
@click.argument("batch_id", metavar="ID")
def pause(batch_id: str) -> None:
    """Stop dispatching batch ID; chunks already handed out finish, the rest waits.

    \b
    Example:
      sms-worker batch pause 3f2a
    """
    with _batches() as batches:
        found = batches.find(batch_id)
        if not batches.pause(found.id):
            _fail(
                f"batch {found.id} is {found.status}; only a scheduled or sending one pauses",
                BAD_INPUT,
            )
    click.echo(f"paused batch {found.id}")


@batch.command()
@click.argument("batch_id", metavar="ID")
def resume(batch_id: str) -> None:
    """Dispatch paused batch ID again from where it stopped.

    \b
    Example:
      sms-worker batch resume 3f2a
    """
    with _batches() as batches:
        found = batches.find(batch_id)
        if not batches.resume(found.id):
            _fail(f"batch {found.id} is {found.status}, not paused", BAD_INPUT)
    click.echo(f"resumed batch {found.id}")


@batch.command()
@click.argument("batch_id", metavar="ID")
def cancel(batch_id: str) -> None:
    """Cancel batch ID: its queued messages end cancelled now; chunks in flight finish.

    \b
    Example:
      sms-worker batch cancel 3f2a
    """
    with _batches() as batches:
        found = batches.find(batch_id)
        cancelled = batches.cancel(found.id)
        if cancelled is None:
            _fail(f"batch {found.id} is {found.status}; it cannot be cancelled", BAD_INPUT)
    click.echo(f"cancelled batch {found.id}: {cancelled} queued message(s) will not be sent")
