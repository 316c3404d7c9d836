"""``sms-worker demo``: the whole pipeline end to end, on embedded defaults.

A SQLite ledger in a temporary folder, the bundled gateway simulator, a Celery worker and beat,
Redis on localhost when it answers (else kombu's filesystem transport in the temporary folder).
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import click
import redis
from rich.console import Console
from rich.table import Table

from worker.celery import make_app
from worker.config import load_settings
from worker.ledger import attempts, messages
from worker.ledger.db import make_engine, session_factory
from worker.ledger.migrate import upgrade
from worker.ledger.status import CLAIMABLE, NOTIFICATION, VERIFICATION
from worker.processes import celery_beat, celery_worker
from worker.producer import Producer
from worker.simulator.defaults import DEFAULT_SDKAPPID, DOCUMENTED_EXAMPLE_APPKEY
from worker.simulator.server import SimulatorServer
from worker.tasks import make_publisher
from worker.tencent import InvalidInput

WAIT_SECONDS = 90.0
SIGN = "腾讯云"


@click.command()
@click.option("--keep", is_flag=True, help="Keep the temporary folder (ledger, logs) afterwards.")
def demo(keep: bool) -> None:
    """Run the pipeline end to end against the bundled simulator and print the ledger.

    It migrates a SQLite ledger, starts the gateway simulator, a Celery worker and beat, enqueues
    a handful of messages (one the gateway fails twice before accepting, one it refuses, one
    international, one billed as two segments, a group of recipients), waits for them, prints the
    messages and every attempt, and stops everything it started.

    \b
    Examples:
      sms-worker demo
      sms-worker demo --keep     # then open the ledger with: sqlite3 <folder>/sms-ledger.db
    """
    console = Console()
    folder = Path(tempfile.mkdtemp(prefix="sms-demo-"))
    with ExitStack() as stack:
        server = stack.enter_context(SimulatorServer())
        env = _environment(folder, server.url, console)
        upgrade(env["SMS_DATABASE_URL"])
        console.print(f"[bold]Ledger[/]   {env['SMS_DATABASE_URL']} (migrated)")
        console.print(f"[bold]Gateway[/]  simulator at {server.url}")
        worker = stack.enter_context(celery_worker(env, folder / "worker.log", concurrency=4))
        beat = stack.enter_context(celery_beat(env, folder / "beat.log", folder / "beat-schedule"))
        console.print(f"[bold]Worker[/]   pid {worker.pid}; [bold]beat[/] pid {beat.pid}")
        ids = _enqueue(server, console)
        _wait(ids, env["SMS_DATABASE_URL"], console)
        _print_ledger(ids, env["SMS_DATABASE_URL"], console)
        console.print(
            f"Handsets received {len(server.control.inbox())} SMS; "
            f"the gateway saw {len(server.control.requests())} requests."
        )
    if keep:
        console.print(f"Kept {folder} (ledger, worker.log, beat.log).")
    else:
        shutil.rmtree(folder, ignore_errors=True)


def _environment(folder: Path, gateway_url: str, console: Console) -> dict[str, str]:
    """The demo's configuration, for this process and the ones it starts."""
    broker = load_settings(env_file=None).broker_url
    try:
        redis.Redis.from_url(broker, socket_connect_timeout=0.5).ping()
        console.print(f"[bold]Broker[/]   {broker}")
    except (redis.RedisError, ValueError):
        (folder / "broker").mkdir()
        fallback = f"filesystem://{folder / 'broker'}"
        console.print(
            f"[bold]Broker[/]   Redis did not answer at {broker}; using kombu's filesystem "
            f"transport in {folder / 'broker'}"
        )
        broker = fallback
    overrides = {
        "SMS_DATABASE_URL": f"sqlite:///{folder / 'sms-ledger.db'}",
        "SMS_BROKER_URL": broker,
        "SMS_GATEWAY_URL": gateway_url,
        "SMS_SDKAPPID": DEFAULT_SDKAPPID,
        "SMS_APPKEY": DOCUMENTED_EXAMPLE_APPKEY,
    }
    for name in ("SMS_CONFIG", "SMS_APPKEY_FILE"):
        os.environ.pop(name, None)
    os.environ.update(overrides)
    return dict(os.environ)


def _numbers() -> Iterator[str]:
    """Fresh mainland numbers each run, so the per-number limits of earlier runs do not bite."""
    while True:
        yield f"+86137{secrets.randbelow(10**8):08d}"


def _enqueue(server: SimulatorServer, console: Console) -> list[uuid.UUID]:
    settings = load_settings(env_file=None)
    engine = make_engine(settings.database_url)
    producer = Producer(settings, session_factory(engine), make_publisher(make_app(settings)))
    numbers = _numbers()
    flaky, refused = next(numbers), next(numbers)
    server.control.script(flaky[3:], [1008, {"http": 502}])
    server.control.script(refused[3:], [1016])
    code = f"{secrets.randbelow(10**6):06d}"
    table = Table(title="Enqueued", title_justify="left")
    for column in ("what", "to", "message id"):
        table.add_column(column, no_wrap=True)
    ids: list[uuid.UUID] = []

    def add(what: str, to: list[str], **options: Any) -> None:
        for number, enqueued in zip(to, producer.enqueue_many(to, **options), strict=True):
            table.add_row(what, number, f"{str(enqueued.id)[:8]}…")
            ids.append(enqueued.id)

    add(
        "verification code",
        [next(numbers)],
        template=100001,
        params=[code, "5"],
        kind=VERIFICATION,
        sign=SIGN,
    )
    add(
        "long notice (2 segments)",
        [next(numbers)],
        template=100003,
        params=["张先生", code, "5月1日", "顺丰速运", f"SF{code}"],
        sign=SIGN,
    )
    add("international", ["+447911123456"], template=100004, params=[code, "10"], kind=VERIFICATION)
    add(
        "fails twice, then goes",
        [flaky],
        template=100001,
        params=[code, "5"],
        kind=VERIFICATION,
        sign=SIGN,
    )
    add("refused by the gateway", [refused], template=19, params=["验证码", code, "4"], sign=SIGN)
    add("group of recipients", [next(numbers) for _ in range(3)], template=19,
        params=["取件码", code, "30"], kind=NOTIFICATION, sign=SIGN)  # fmt: skip
    engine.dispose()
    console.print(table)
    try:
        producer.enqueue("+86137", template=100001, params=[code, "5"], kind=VERIFICATION)
    except InvalidInput as refusal:
        console.print(f"Refused at enqueue, before anything was written: [yellow]{refusal}[/]")
    return ids


def _wait(ids: list[uuid.UUID], url: str, console: Console) -> None:
    engine = make_engine(url)
    sessions = session_factory(engine)
    deadline = time.monotonic() + WAIT_SECONDS
    with console.status("Waiting for every message to leave the queue...") as status:
        while time.monotonic() < deadline:
            with sessions() as session:
                pending = sum(
                    1 for id_ in ids
                    if (row := messages.get_message(session, id_)) and row.status in CLAIMABLE
                )  # fmt: skip
            if not pending:
                break
            status.update(f"Waiting for {pending} of {len(ids)} messages...")
            time.sleep(0.3)
        else:
            console.print(f"[red]Some messages were still waiting after {WAIT_SECONDS:.0f} s.[/]")
    engine.dispose()


def _print_ledger(ids: list[uuid.UUID], url: str, console: Console) -> None:
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
    with session_factory(engine)() as session:
        for id_ in ids:
            row = messages.get_message(session, id_)
            if row is None:
                continue
            to = f"+{row.nationcode}{row.mobile}"
            message_table.add_row(
                to, row.kind, row.status, str(row.attempt_count), _text(row.result),
                _text(row.fee), row.sid or "",
            )  # fmt: skip
            if row.reason:
                reasons.append(f"{to} {row.status}: {row.reason}")
            for attempt in attempts.attempts_for(session, id_):
                attempt_table.add_row(
                    to, str(attempt.attempt_no), attempt.api, _text(attempt.http_status),
                    _text(attempt.result), attempt.outcome, _text(attempt.latency_ms),
                )  # fmt: skip
    engine.dispose()
    console.print(message_table)
    for reason in reasons:
        console.print(f"  {reason}", markup=False, highlight=False)
    console.print(attempt_table)


def _text(value: object) -> str:
    return "" if value is None else str(value)
