"""``sms-worker batch``: create a marketing batch from a CSV file, watch it, pause, resume, cancel.

Creating a batch only writes the ledger; beat's dispatcher (``sms.dispatch_batches``) sends it
from its start, between 08:00 and 22:00 Beijing time, at the account's rate. Times given without
an offset are Beijing time.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import NoReturn, TypeVar

import click
from rich.live import Live

from worker.api.batches import Batches
from worker.cli.batch_views import (
    batch_ended,
    batches_table,
    import_bar,
    print_import_report,
    status_view,
)
from worker.cli.common import (
    BAD_INPUT,
    account_option,
    current_settings,
    fail,
    ledger_sessions,
    param_option,
    sign_option,
)
from worker.cli.output import (
    CSV,
    JSON,
    TABLE,
    data_console,
    echo_csv,
    echo_json,
    emit,
    format_option,
    raw_option,
    show,
)
from worker.ledger.schema import SmsBatch
from worker.ledger.status import DISPATCHABLE, MESSAGE_STATUSES, BatchStatus
from worker.services.batch_import import BatchInputError
from worker.tencent import InvalidInput
from worker.tencent.types import BEIJING

REJECTION_COLUMNS = ("line", "reason", "detail", "row")
SUMMARY_COLUMNS = (
    "id", "name", "account", "tpl_id", "sign", "params", "status", "start_at", "window_end_at",
    "total_rows", "accepted", "rejected", "created_at",
)  # fmt: skip


Result = TypeVar("Result")  # what a batch action returns: paused or not, how many cancelled


@contextmanager
def _batches() -> Iterator[Batches]:
    """The ledger's batches; bad input ends with exit code 2, a database error with 1."""
    settings = current_settings()
    with ledger_sessions(settings=settings, requires_table=SmsBatch.__tablename__) as sessions:
        try:
            yield Batches(settings, sessions)
        except (BatchInputError, InvalidInput, LookupError) as error:
            fail(str(error), BAD_INPUT, cause=error)


def _when(value: str, option: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError as error:
        fail(
            f"{option}: {value!r} is not a time such as 2026-05-01T09:00 or 2026-05-01 09:00+08:00",
            BAD_INPUT,
            cause=error,
        )
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=BEIJING)


def _batch_id(batches: Batches, given: str) -> uuid.UUID:
    return batches.find(given).id


# Any unique prefix of a batch's id names it: the tables show the first 8 characters.
_batch_argument = click.argument("batch_id", metavar="ID")


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
@sign_option
@account_option
@param_option("A param shared by every recipient; repeat for {1}, {2}, ... in order.")
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
@click.option(
    "--key",
    metavar="KEY",
    help="This creation's name, e.g. may-day-2026: run again with the same key, it prints the "
    "batch made before and creates nothing. Example: --key may-day-2026",
)
@click.option(
    "--allow-duplicate",
    is_flag=True,
    help="Create the batch even if the same file, template and sign made one within 24 hours.",
)
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
    key: str | None,
    allow_duplicate: bool,
) -> None:
    """Import FILE (CSV, UTF-8, header row) as a batch; every row is accepted or rejected.

    Columns: mobile (E.164, or national with a nationcode column), optional nationcode, and
    the params of each recipient as param1, param2, ... (or the columns of --params-from) unless
    --param gives them for all. Each row is one line: a quoted field may not span lines. A
    malformed line (a quote left open or out of place, over 64 KiB, over 1,000 fields, a NUL)
    is rejected with its line number; the other rows are still read.

    A creation is not repeated by accident. With --key, running the command again (after an
    error, a timeout, a lost terminal) prints the batch the key made and creates nothing; the
    same key with another file, template, sign or params is refused. Without --key, the same
    file, template and sign as a batch created within 24 hours is refused, naming that batch,
    unless --allow-duplicate is given. The batch is written in one transaction: an import
    that fails leaves nothing behind.

    Exit status: 0 imported, or the key's batch found (rows may have been rejected: see the
    summary), 2 bad input or a refused repetition, 1 failure.

    \b
    Examples:
      sms-worker batch create vip.csv --template 100002 --sign 腾讯云 --param 会员 --param 8
      sms-worker batch create orders.csv --template 100002 --params-from name,discount \\
          --start "2026-05-01 09:00" --window-end "2026-05-02 21:00"
      sms-worker batch create vip.csv --template 100002 --param 会员 --param 8 \\
          --key vip-2026-05-01
      sms-worker batch create vip.csv --template 100002 --param 会员 --param 8 \\
          --allow-duplicate
    """
    starts = _when(start, "--start") if start else None
    ends = _when(window_end, "--window-end") if window_end else None
    columns = [c.strip() for c in params_from.split(",") if c.strip()] if params_from else None
    try:
        raw = open(file, "rb")  # noqa: SIM115 - closed below; its position drives the bar
    except OSError as error:
        fail(f"cannot read {file}: {error.strerror}", BAD_INPUT, cause=error)
    with raw, _batches() as batches, import_bar(raw) as show:
        report = batches.create(
            raw, template=template, sign=sign, account=account,
            params=params or None, params_from=columns, param_count=param_count,
            start_at=starts, window_end_at=ends, progress=show,
            name=name or click.format_filename(file, shorten=True),
            key=key, allow_duplicate=allow_duplicate,
        )  # fmt: skip
    if not report.created:
        click.echo(f"batch {report.batch_id} was created before with this key; nothing new")
    print_import_report(report)


@batch.command("list")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True,
              help="How many of the newest batches.")  # fmt: skip
@format_option(TABLE, JSON, CSV)
@raw_option
def list_batches(limit: int, output_format: str, raw: bool) -> None:
    """The newest batches: state, schedule (Beijing time) and import counts.

    \b
    Examples:
      sms-worker batch list
      sms-worker batch list --format json | jq '.[] | select(.status == "sending")'
      sms-worker batch list --limit 100 --format csv > batches.csv
    """
    with _batches() as batches:
        found = batches.recent(limit)
    emit([b.summary() for b in found], output_format, columns=SUMMARY_COLUMNS,
         table=lambda: batches_table(found), raw=raw)  # fmt: skip


@batch.command()
@_batch_argument
@click.option("--follow", is_flag=True, help="Keep the view live until the batch ends (Ctrl-C).")
@click.option("--interval", type=click.FloatRange(min=0.2), default=2.0, show_default=True,
              metavar="SECONDS", help="How often --follow reads the ledger.")  # fmt: skip
@format_option(TABLE, JSON, CSV)
@raw_option
def status(batch_id: str, follow: bool, interval: float, output_format: str, raw: bool) -> None:
    """Where batch ID stands: messages per state and progress. ID may be a unique prefix.

    JSON holds the batch, its messages by state and its rejections by reason; CSV is one row:
    the batch, then a column per message state.

    \b
    Examples:
      sms-worker batch status 3f2a
      sms-worker batch status 3f2a --follow
      sms-worker batch status 3f2a --format json | jq .messages
    """
    if follow and output_format != TABLE:
        fail("--follow shows a live table; leave out --format", BAD_INPUT)
    with _batches() as batches:
        found = _batch_id(batches, batch_id)
        current = batches.status(found)
        if output_format == JSON:
            echo_json({**current.batch.summary(), "messages": current.messages,
                       "rejections": current.rejections})  # fmt: skip
            return
        if output_format == CSV:
            counts = {state: current.messages.get(state, 0) for state in MESSAGE_STATUSES}
            echo_csv([{**current.batch.summary(), **counts}],
                     [*SUMMARY_COLUMNS, *MESSAGE_STATUSES], raw=raw)  # fmt: skip
            return
        if not follow:
            show(status_view(current))
            return
        try:
            with Live(status_view(current), console=data_console(), refresh_per_second=4) as live:
                while not batch_ended(current):
                    time.sleep(interval)
                    current = batches.status(found)
                    live.update(status_view(current))
        except KeyboardInterrupt:
            pass


@batch.command()
@_batch_argument
@click.option("--limit", type=click.IntRange(min=1), help="At most this many. Default: all.")
@format_option(CSV, JSON, default=CSV)
@raw_option
def rejections(batch_id: str, limit: int | None, output_format: str, raw: bool) -> None:
    """The rows batch ID turned away: line, reason, detail, row (CSV unless --format json).

    A row is text from the file: in CSV a cell starting with =, +, -, @ (E.164 numbers too)
    gets a ' so a spreadsheet shows it rather than running it; --raw writes it as it was.

    \b
    Examples:
      sms-worker batch rejections 3f2a > rejected.csv
      sms-worker batch rejections 3f2a --format json | jq 'group_by(.reason)'
    """
    with _batches() as batches:
        found = batches.rejections(_batch_id(batches, batch_id), limit)
    rows = [{"line": r.line_no, "reason": r.reason, "detail": r.detail, "row": r.raw}
            for r in found]  # fmt: skip
    if output_format == JSON:
        echo_json(rows)
    else:
        echo_csv(rows, REJECTION_COLUMNS, raw=raw)


@batch.command()
@_batch_argument
def pause(batch_id: str) -> None:
    """Pause batch ID: after this returns, no further message of the batch is requested from
    the gateway; requests already in the air finish. ID may be a unique prefix.

    Its messages not sent yet wait, queued, until `sms-worker batch resume ID` sends them (each
    once). Pausing a paused batch is not an error. Exit status: 0 paused (or already paused), 2
    the batch is importing, done or cancelled, 1 failure.

    \b
    Examples:
      sms-worker batch pause 3f2a
    """
    done = _batch_action(
        batch_id, Batches.pause, "paused", {BatchStatus.PAUSED}, lambda b: "was already paused"
    )
    if done is not None:
        found, _ = done
        click.echo(
            f"paused batch {found.id}: nothing more of it is requested from the gateway; "
            f"sms-worker batch resume {found.id} sends the rest"
        )


@batch.command()
@_batch_argument
def resume(batch_id: str) -> None:
    """Send paused batch ID again from where it stopped. ID may be a unique prefix.

    Resuming a batch that is not paused (scheduled or sending) is not an error. Exit status: 0
    resumed (or not paused), 2 the batch is importing, done or cancelled, 1 failure.

    \b
    Examples:
      sms-worker batch resume 3f2a
    """
    done = _batch_action(
        batch_id,
        Batches.resume,
        "resumed",
        DISPATCHABLE,
        lambda b: f"is not paused (it is {b.status}): nothing to do",
    )
    if done is not None:
        click.echo(f"resumed batch {done[0].id}")


@batch.command()
@_batch_argument
def cancel(batch_id: str) -> None:
    """Cancel batch ID: after this returns, no further message of the batch is requested from
    the gateway; requests already in the air finish. ID may be a unique prefix.

    Its messages not sent yet end cancelled. Cancelling a cancelled batch is not an error. Exit
    status: 0 cancelled (or already cancelled), 2 the batch is importing or done, 1 failure.

    \b
    Examples:
      sms-worker batch cancel 3f2a
    """
    done = _batch_action(
        batch_id,
        Batches.cancel,
        "cancelled",
        {BatchStatus.CANCELLED},
        lambda b: "was already cancelled",
    )
    if done is not None:
        found, cancelled = done
        click.echo(f"cancelled batch {found.id}: {cancelled} queued message(s) will not be sent")


def _batch_action(
    batch_id: str,
    act: Callable[[Batches, uuid.UUID], Result | None],
    action: str,
    already: Collection[str],
    unchanged: Callable[[SmsBatch], str],
) -> tuple[SmsBatch, Result] | None:
    """Find batch ``batch_id`` and ``act`` on it: the batch and what the act returned, or None
    when the act was refused (None or False) but the batch is in a state of ``already``, where
    refusing is no error (then echo ``unchanged``). Any other refusal ends with exit status 2."""
    with _batches() as batches:
        found = batches.find(batch_id)
        result = act(batches, found.id)
        if result is not None and result is not False:
            return found, result
        current = batches.find(str(found.id))
    if current.status not in already:
        _refuse(current, action)
    click.echo(f"batch {current.id} {unchanged(current)}")
    return None


def _refuse(found: SmsBatch, action: str) -> NoReturn:
    """End a pause, resume or cancel that the batch's state does not allow, saying why."""
    refusals: dict[str, str] = {
        BatchStatus.IMPORTING: "is still importing: try again once `batch status` says scheduled",
        BatchStatus.DONE: "is done: every message of it is settled, nothing is left to send",
        BatchStatus.CANCELLED: "is cancelled: nothing more of it is sent",
    }
    why = refusals.get(found.status, f"is {found.status}")
    fail(f"batch {found.id} {why}; it cannot be {action}", BAD_INPUT)
