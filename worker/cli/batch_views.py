"""What ``sms-worker batch`` shows people: the import's progress and report, the list of
batches, and a batch's status view (also live, with ``--follow``). Data is shown literally, as
``worker.cli.output`` prints it.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from rich.console import Group
from rich.progress import BarColumn, DownloadColumn, Progress, TaskProgressColumn, TextColumn

from worker import clock
from worker.api.batches import BatchStatus
from worker.cli.output import DataTable, data_console, line, literal
from worker.ledger.schema import SmsBatch
from worker.ledger.status import DISPATCHABLE, FINISHED, MESSAGE_STATUSES
from worker.services.batch_import import ImportProgress, ImportReport
from worker.services.sending.waits import sending_window_note
from worker.tencent.types import BEIJING


def beijing_time(moment: datetime | None) -> str:
    return moment.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M") if moment else "-"


@contextmanager
def import_bar(raw: io.BufferedReader) -> Iterator[Callable[[ImportProgress], None]]:
    """A progress bar over the file's bytes, fed after every imported chunk."""
    size = max(1, _file_size(raw))
    columns = (
        TextColumn("importing"), BarColumn(), TaskProgressColumn(), DownloadColumn(),
        TextColumn("{task.fields[rows]} rows, {task.fields[rejected]} rejected", markup=False),
    )  # fmt: skip
    with Progress(*columns, console=data_console(stderr=True), transient=True) as bar:
        task = bar.add_task("import", total=size, rows=0, rejected=0)

        def show(progress: ImportProgress) -> None:
            bar.update(task, completed=raw.tell(), rows=progress.rows, rejected=progress.rejected)

        yield show


def _file_size(raw: io.BufferedReader) -> int:
    try:
        return raw.seek(0, io.SEEK_END)
    finally:
        raw.seek(0)


def print_import_report(report: ImportReport) -> None:
    console = data_console()
    console.print(
        line("batch ", literal(report.batch_id, "bold"), f": {report.rows} rows, ",
             literal(f"{report.accepted} accepted", "green"), ", ",
             literal(f"{report.rejected} rejected", "red"))
    )  # fmt: skip
    if report.reasons:
        console.print(
            line("rejected: ", ", ".join(f"{r} {n}" for r, n in sorted(report.reasons.items())))
        )
    if report.first_rejections:
        table = DataTable(title="First rejections", title_justify="left")
        for column in ("line", "reason", "detail", "row"):
            table.add_column(column, overflow="fold")
        for item in report.first_rejections:
            table.add_row(str(item.line_no), item.reason, item.detail, item.raw)
        console.print(table)
        if report.rejected > len(report.first_rejections):
            console.print(line(f"all of them: sms-worker batch rejections {report.batch_id}"))


def batches_table(found: list[SmsBatch]) -> DataTable:
    # Ids are cut to 8 characters: any unique prefix names a batch in the other commands.
    table = DataTable(title="Batches (times in Beijing)", title_justify="left")
    for column in ("id", "name", "account", "status", "start", "window end", "rows", "accepted"):
        table.add_column(column, overflow="fold", no_wrap=column in ("id", "status"))
    for found_batch in found:
        table.add_row(
            str(found_batch.id)[:8], found_batch.name, found_batch.account,
            found_batch.status, beijing_time(found_batch.start_at),
            beijing_time(found_batch.window_end_at), str(found_batch.total_rows),
            str(found_batch.accepted),
        )  # fmt: skip
    return table


def batch_ended(current: BatchStatus) -> bool:
    return current.batch.status in FINISHED and current.settled == current.batch.accepted


def status_view(current: BatchStatus) -> Group:
    found: SmsBatch = current.batch
    head = DataTable(show_header=False, box=None)
    for label, value in (
        ("batch", f"{found.id} ({found.name})"),
        ("status", found.status),
        ("account", found.account),
        ("template", f"{found.tpl_id}, sign {found.sign or '(account default)'}"),
        (
            "schedule",
            f"{beijing_time(found.start_at)} to {beijing_time(found.window_end_at)} Beijing",
        ),
        ("rows", f"{found.total_rows}: {found.accepted} accepted, {found.rejected} rejected"),
    ):
        head.add_row(label, value)
    waiting = (
        sending_window_note(clock.now(), found.start_at) if found.status in DISPATCHABLE else None
    )
    if waiting is not None:
        head.add_row("waiting", waiting)
    states = DataTable(title="Messages", title_justify="left")
    shown = [s for s in MESSAGE_STATUSES if current.messages.get(s)]
    for state in shown:
        states.add_column(state, justify="right")
    states.add_row(*(str(current.messages[s]) for s in shown))
    bar = Progress(
        TextColumn("settled"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.completed}/{task.total}", markup=False),
    )
    bar.add_task("settled", total=max(1, found.accepted), completed=current.settled)
    parts: list[Any] = [head, states, bar]
    if current.rejections:
        parts.append(
            line("rejected: ", ", ".join(f"{r} {n}" for r, n in sorted(current.rejections.items())))
        )
    return Group(*parts)
