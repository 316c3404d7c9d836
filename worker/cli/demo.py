"""``sms-worker demo``: the whole pipeline end to end, on embedded defaults.

A SQLite ledger in a temporary folder, the bundled gateway simulator, a Celery worker and beat on
a broker of the demo's own (worker.cli.demo_broker). The demo stands apart from any real setup
in the same place: its processes run in its temporary folder, so no ``.env`` is read, and they
get only the demo's settings. Everything it starts is stopped and the folder removed however it
ends (Ctrl-C and SIGTERM included), and it exits 1 unless every message ended as it should.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlalchemy.orm import Session

from worker.api.producer import Producer
from worker.celery.application import make_app
from worker.celery.tasks import make_publisher
from worker.cli.common import BAD_INPUT, fail
from worker.cli.demo_broker import own_broker
from worker.cli.demo_ledger import print_ledger
from worker.cli.stop_signals import Stopped, StopSignals
from worker.config import ConfigError, load_settings
from worker.ledger import attempts, messages
from worker.ledger.db import make_engine, session_factory
from worker.ledger.migrate import upgrade
from worker.ledger.status import CLAIMABLE, DELIVERED, FAILED, NOTIFICATION, SENT, VERIFICATION
from worker.runners.processes import ManagedProcess, ProcessFailed, celery_beat, celery_worker
from worker.simulator.config import on_worker_clock
from worker.simulator.defaults import DEFAULT_SDKAPPID, DOCUMENTED_EXAMPLE_APPKEY
from worker.simulator.server import SimulatorServer
from worker.tencent import InvalidInput

WAIT_SECONDS = 90.0
SIGN = "腾讯云"
ACCEPTED = (SENT, DELIVERED)
REFUSED = (FAILED,)
# The only settings the demo takes from its environment: they change how it runs, not where it
# sends. Every other SMS_* variable (and CELERY_*, which Celery reads by itself, and the metrics
# folder a worker empties at start) belongs to a real setup and is not passed on.
PASSED_ON = frozenset({"SMS_CLOCK_OFFSET_SECONDS", "SMS_LOG_FORMAT"})
NOT_PASSED_PREFIXES = ("SMS_", "CELERY_")
NOT_PASSED = frozenset({"PROMETHEUS_MULTIPROC_DIR"})
LOG_LINES_SHOWN = 20


@dataclass(frozen=True, slots=True)
class Enqueued:
    id: uuid.UUID
    what: str
    to: str
    expected: tuple[str, ...]  # the statuses this message should end in


@click.command()
@click.option("--keep", is_flag=True, help="Keep the temporary folder (ledger, logs) afterwards.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=WAIT_SECONDS,
    show_default=True,
    metavar="SECONDS",
    help="How long to wait for the messages; any not done by then makes the demo exit 1. "
    "Example: --timeout 300",
)
# The failure path on purpose (the simulator answers every send with HTTP 503), for tests.
@click.option("--gateway-outage", is_flag=True, hidden=True)
def demo(keep: bool, timeout: float, gateway_outage: bool) -> None:
    """Run the pipeline end to end against the bundled simulator and print the ledger.

    It migrates a SQLite ledger, starts the gateway simulator, a Celery worker and beat, enqueues
    a handful of messages (one the gateway fails twice before accepting, one it refuses, one
    international, one billed as two segments, a group of recipients), waits for them, prints the
    messages and every attempt, and stops everything it started.

    It uses a Redis database of its own (an empty one it claims on the Redis of SMS_BROKER_URL,
    else localhost; kombu's filesystem transport when none is free), reads no .env file and no
    SMS_* setting but SMS_CLOCK_OFFSET_SECONDS and SMS_LOG_FORMAT. Exit code 0 when every
    message ended as expected, 1 otherwise (each one named, with why).

    \b
    Examples:
      sms-worker demo
      sms-worker demo --keep     # then open the ledger with: sqlite3 <folder>/sms-ledger.db
    """
    console = Console()
    guard = StopSignals()
    try:
        with guard.installed():
            problems = _run(console, guard, keep=keep, timeout=timeout, outage=gateway_outage)
    except Stopped as stop:
        fail(f"{stop}; everything it started is stopped" + ("" if keep else ", its folder removed"))
    if problems:
        fail(
            f"{problems} message(s) did not end as expected within {timeout:g} s "
            "(each is named above, with why)"
        )


def _run(console: Console, guard: StopSignals, *, keep: bool, timeout: float, outage: bool) -> int:
    """The demo; the number of messages that did not end as expected."""
    wanted_broker = os.environ.get("SMS_BROKER_URL")
    _keep_only_demo_settings()
    with ExitStack() as stack:
        # Each thing is acquired with its release registered before a stop can come between.
        with guard.deferred():
            folder = Path(tempfile.mkdtemp(prefix="sms-demo-"))
            stack.callback(_leave_folder, folder, keep, console)
        with guard.deferred():
            broker = own_broker(wanted_broker, folder)
            stack.callback(broker.release)
        _line(console, "Broker", broker.description)
        with guard.deferred():
            # On the workers' clock: SMS_CLOCK_OFFSET_SECONDS moves both, or signatures fail.
            server = stack.enter_context(SimulatorServer(on_worker_clock()))
        if outage:
            server.control.set_faults({"http_503": 1.0})
        env = _with_demo_settings(
            {
                "SMS_DATABASE_URL": f"sqlite:///{folder / 'sms-ledger.db'}",
                "SMS_BROKER_URL": broker.url,
                "SMS_GATEWAY_URL": server.url,
                "SMS_SDKAPPID": DEFAULT_SDKAPPID,
                "SMS_APPKEY": DOCUMENTED_EXAMPLE_APPKEY,
                # Inside the folder: a killed worker does not remove a folder of its own.
                "PROMETHEUS_MULTIPROC_DIR": str(folder / "metrics"),
            }
        )
        Path(env["PROMETHEUS_MULTIPROC_DIR"]).mkdir()  # prometheus-client writes, never makes it
        ledger = env["SMS_DATABASE_URL"]
        upgrade(ledger)
        _line(console, "Ledger", f"{ledger} (migrated)")
        _line(console, "Gateway", f"simulator at {server.url}")
        worker = celery_worker(env, folder / "worker.log", concurrency=4, cwd=folder)
        beat = celery_beat(env, folder / "beat.log", folder / "beat-schedule", cwd=folder)
        # The worker is killed: its ledger and queues are thrown away, and any shutdown it would
        # do itself waits out its soft-shutdown window (30 s) for the tasks it holds back for a
        # retry. Beat stops at SIGTERM.
        for process, stop_with in ((worker, signal.SIGKILL), (beat, signal.SIGTERM)):
            _start(process, stop_with, stack, guard, console)
        _line(console, "Worker", f"pid {worker.pid}; beat pid {beat.pid}")
        enqueued = _enqueue(server, console)
        gone = _wait(enqueued, ledger, timeout, (worker, beat), console)
        print_ledger([item.id for item in enqueued], ledger, console)
        console.print(
            f"Handsets received {len(server.control.inbox())} SMS; "
            f"the gateway saw {len(server.control.requests())} requests."
        )
        problems = _problems(enqueued, ledger)
        if gone is not None:
            _show_log(gone, console)
        errors = Console(stderr=True)
        for problem in problems:
            errors.print(problem, markup=False, highlight=False, style="red", soft_wrap=True)
        return len(problems)


def _keep_only_demo_settings() -> None:
    """Drop every setting of a real setup from this process's environment, and check the ones
    passed on (exit 2 for a bad one) before anything is made."""
    for name in list(os.environ):
        if name in NOT_PASSED or (name.startswith(NOT_PASSED_PREFIXES) and name not in PASSED_ON):
            del os.environ[name]
    try:
        load_settings(env_file=None)
    except ConfigError as error:
        fail(str(error), BAD_INPUT, cause=error)


def _with_demo_settings(settings: dict[str, str]) -> dict[str, str]:
    """Add ``settings`` to this process's configuration, and return the children's environment
    (they run in the temporary folder, so no .env is read either)."""
    os.environ.update(settings)
    load_settings(env_file=None)  # the demo's own values: a failure here is a bug, not input
    return dict(os.environ)


def _start(
    process: ManagedProcess,
    stop_with: signal.Signals,
    stack: ExitStack,
    guard: StopSignals,
    console: Console,
) -> None:
    stack.callback(_stop, process, stop_with)
    try:
        with guard.deferred():
            process.start()
    except ProcessFailed as failure:
        _show_log(process, console)
        code = process.process.returncode if process.process else None
        fail(
            f"the {process.name} did not start (exit code {code}); its log is above", cause=failure
        )


def _stop(process: ManagedProcess, stop_with: signal.Signals) -> None:
    """``stop_with``, and SIGKILL when the process has not exited after a bounded wait."""
    try:
        process.kill(stop_with)
    except subprocess.TimeoutExpired:
        process.kill(signal.SIGKILL)


def _show_log(process: ManagedProcess, console: Console) -> None:
    """The end of a process's log: the folder holding it is about to be removed."""
    lines = process.log_path.read_text(errors="replace").splitlines()[-LOG_LINES_SHOWN:]
    console.print(f"The {process.name} stopped; the end of its log:", style="red")
    for line in lines:
        console.print(f"  {line}", markup=False, highlight=False)


def _leave_folder(folder: Path, keep: bool, console: Console) -> None:
    if keep:
        console.print(Text(f"Kept {folder} (ledger, worker.log, beat.log)."))
    else:
        shutil.rmtree(folder, ignore_errors=True)


def _line(console: Console, label: str, text: str) -> None:
    console.print(Text.assemble((f"{label:<9}", "bold"), text), soft_wrap=True)


def _numbers() -> Iterator[str]:
    """Fresh mainland numbers each run, so the per-number limits of earlier runs do not bite."""
    while True:
        yield f"+86137{secrets.randbelow(10**8):08d}"


def _enqueue(server: SimulatorServer, console: Console) -> list[Enqueued]:
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
    enqueued: list[Enqueued] = []

    def add(what: str, to: list[str], expected: tuple[str, ...] = ACCEPTED, **options: Any) -> None:
        for number, message in zip(to, producer.enqueue_many(to, **options), strict=True):
            table.add_row(what, number, f"{str(message.id)[:8]}…")
            enqueued.append(Enqueued(message.id, what, number, expected))

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
    add("refused by the gateway", [refused], REFUSED, template=19, params=["验证码", code, "4"],
        sign=SIGN)  # fmt: skip
    add("group of recipients", [next(numbers) for _ in range(3)], template=19,
        params=["取件码", code, "30"], kind=NOTIFICATION, sign=SIGN)  # fmt: skip
    engine.dispose()
    console.print(table)
    try:
        producer.enqueue("+86137", template=100001, params=[code, "5"], kind=VERIFICATION)
    except InvalidInput as refusal:
        console.print("Refused at enqueue, before anything was written: ", Text(str(refusal)))
    return enqueued


def _wait(
    enqueued: list[Enqueued],
    url: str,
    timeout: float,
    processes: Sequence[ManagedProcess],
    console: Console,
) -> ManagedProcess | None:
    """Until no message waits for a worker, ``timeout`` passes, or a process of ours exits
    (returned: nothing would move any more)."""
    engine = make_engine(url)
    sessions = session_factory(engine)
    deadline = time.monotonic() + timeout
    try:
        with console.status("Waiting for every message to leave the queue...") as status:
            while True:
                with sessions() as session:
                    pending = sum(
                        1 for item in enqueued
                        if (row := messages.get_message(session, item.id))
                        and row.status in CLAIMABLE
                    )  # fmt: skip
                if not pending or time.monotonic() >= deadline:
                    return None
                for process in processes:
                    if not process.running:
                        return process
                status.update(f"Waiting for {pending} of {len(enqueued)} messages...")
                time.sleep(0.3)
    finally:
        engine.dispose()


def _problems(enqueued: list[Enqueued], url: str) -> list[str]:
    """One line for each message not in a status it should have ended in, saying why."""
    engine = make_engine(url)
    found: list[str] = []
    try:
        with session_factory(engine)() as session:
            for item in enqueued:
                row = messages.get_message(session, item.id)
                status = row.status if row is not None else "missing from the ledger"
                if status in item.expected:
                    continue
                what = "Did not finish" if status in CLAIMABLE else "Ended unexpectedly"
                why = (row.reason if row is not None else None) or _last_attempt(session, item.id)
                found.append(
                    f"{what}: {item.to} ({item.what}) is {status}, expected "
                    f"{' or '.join(item.expected)}: {why}"
                )
    finally:
        engine.dispose()
    return found


def _last_attempt(session: Session, message_id: uuid.UUID) -> str:
    tried = attempts.attempts_for(session, message_id)
    if not tried:
        return "no attempt was made (no worker took its task)"
    last = tried[-1]
    answer = f"HTTP {last.http_status}" if last.http_status is not None else "no answer"
    if last.result is not None:
        answer += f", result {last.result}"
    return f"{len(tried)} attempt(s), the last {last.outcome} ({answer})"
