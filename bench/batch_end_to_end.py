"""A batch of a million recipients with shared params, end to end, beside the floor of writing
as many message and attempt rows with PostgreSQL's COPY, in the same run.

End to end: a CSV of N distinct mainland numbers goes in through ``sms-worker batch create``
(template 100002, two shared params); beat (``celery beat``) ticks the dispatcher, a worker on
``sms.maintenance`` runs it, and a worker on ``sms.marketing`` (threads pool) sends the chunks,
200 numbers a ``sendmultisms2``, to the simulator (its own process, zero latency). Workers and
simulator run on a clock shifted to 10:00 Beijing time (``SMS_CLOCK_OFFSET_SECONDS``), so
marketing hours never hold the batch, and the account's rate (``SMS_SEND_RATE``) is far above
what the machine can send. The clock runs from the start of ``batch create`` until every
recipient's message was taken by the gateway (``sent``, or already ``delivered`` by its
report) with its own ``sid`` and ``fee``, and so was its attempt.

Floor: the same number of ``sms_messages`` rows and of ``sms_attempts`` rows, made beforehand
in memory, written by ``COPY .. FROM STDIN`` into a fresh database migrated to head (the same
tables and indexes). The ratio is end to end over COPY; the target is 2 or less.

    python -m bench.batch_end_to_end [--recipients 1000000] [--settings threads:8] [--runs 1]

With ``--profile-chunks K``, K chunks of 200 are then sent in this process under cProfile
(``group_send.send_chunk`` with the worker's own send context), to show where a chunk's time
goes. Needs the local PostgreSQL (trust auth) and Redis, as ``bench.pipeline_throughput``.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from bench.pipeline_throughput import (
    APPKEY,
    SDKAPPID,
    empty_redis_database,
    fresh_database,
    log_folder,
    parse_setting,
    settings_under,
    simulator_process,
    worker_environment,
)
from worker.celery.routing import DISPATCH_EVERY_SECONDS, QUEUE_MAINTENANCE, QUEUE_MARKETING
from worker.ledger.db import make_engine, session_factory
from worker.ledger.schema import SmsAttempt, SmsMessage
from worker.ledger.status import BILLABLE, QUEUED, SENDING, SENT
from worker.runners.processes import ManagedProcess, celery_beat, celery_worker
from worker.services.sending.waits import seconds_until_beijing_hour
from worker.simulator.control import SimulatorControl

TARGET_RATIO = 2.0
TEMPLATE, PARAMS, SIGN = 100002, ("张女士", "8"), "腾讯云"
POLL_SECONDS = 1.0  # a count over the batch's messages: well under a second of work
MESSAGE_COLUMNS = (
    "id", "account", "kind", "nationcode", "mobile", "tpl_id", "params", "sign", "status",
    "batch_id", "params_key", "created_at", "updated_at", "expires_at", "sent_at", "sid", "fee",
    "result", "errmsg", "request_id", "attempt_count", "delivery_count",
)  # fmt: skip
ATTEMPT_COLUMNS = (
    "message_id", "attempt_no", "request_id", "api", "random", "signed_time", "started_at",
    "finished_at", "http_status", "result", "errmsg", "sid", "fee", "outcome", "latency_ms",
    "worker",
)  # fmt: skip


def mobiles(count: int) -> list[str]:
    return [f"136{n:08d}" for n in range(count)]


# --- the floor: COPY ------------------------------------------------------------------------------


def copy_rows(count: int) -> tuple[bytes, bytes]:
    """CSV for ``count`` sent messages of one batch and their attempts, as the pipeline writes
    them (a request per 200 numbers, each number its own sid and fee)."""
    batch, now = uuid.uuid4(), datetime.now(UTC)
    params = '"[""张女士"", ""8""]"'
    message_lines, attempt_lines = [], []
    for n, mobile in enumerate(mobiles(count)):
        message, request = uuid.uuid4(), uuid.UUID(int=n // 200 + 1)
        at = (now + timedelta(microseconds=n)).isoformat()
        sid = f"2019:{message.hex[:20]}"
        message_lines.append(
            f"{message},default,marketing,86,{mobile},{TEMPLATE},{params},{SIGN},{SENT},"
            f"{batch},k{TEMPLATE},{at},{at},{at},{at},{sid},1,0,OK,{request},1,1\n"
        )
        attempt_lines.append(
            f"{message},1,{request},sendmultisms2,{1_000_000_000 + n},{int(now.timestamp())},"
            f"{at},{at},200,0,OK,{sid},1,ok,12,bench\n"
        )
    return "".join(message_lines).encode(), "".join(attempt_lines).encode()


def copy_seconds(url: str, messages: bytes, attempts: bytes) -> float:
    """Seconds to COPY both tables' rows in, committed."""
    engine = make_engine(url)
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        began = time.perf_counter()
        for table, columns, data in (
            ("sms_messages", MESSAGE_COLUMNS, messages),
            ("sms_attempts", ATTEMPT_COLUMNS, attempts),
        ):
            statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv)"
            with cursor.copy(statement) as copy:  # type: ignore[attr-defined]
                view = memoryview(data)
                for offset in range(0, len(data), 1 << 20):
                    copy.write(view[offset : offset + (1 << 20)])
        connection.commit()
        return time.perf_counter() - began
    finally:
        connection.close()
        engine.dispose()


# --- end to end -----------------------------------------------------------------------------------


def start_processes(
    environment: Mapping[str, str], folder: Path, pool: str, concurrency: int, run: int
) -> list[ManagedProcess]:
    marketing = celery_worker(
        environment, folder / f"marketing-{run}.log", queues=[QUEUE_MARKETING], pool=pool,
        concurrency=concurrency, name=f"bench-marketing-{run}", cwd=folder,
    )  # fmt: skip
    maintenance = celery_worker(
        environment, folder / f"maintenance-{run}.log", queues=[QUEUE_MAINTENANCE],
        pool="threads", concurrency=2, name=f"bench-maintenance-{run}", cwd=folder,
    )  # fmt: skip
    beat = celery_beat(environment, folder / f"beat-{run}.log", folder / f"beat-{run}.schedule")
    return [process.start() for process in (marketing, maintenance, beat)]


def create_batch(environment: Mapping[str, str], csv_path: Path, folder: Path) -> float:
    """``sms-worker batch create``: seconds it took."""
    argv = [
        sys.executable, "-c", "from worker.cli import main; main()", "batch", "create",
        str(csv_path), "--template", str(TEMPLATE), "--sign", SIGN,
        *(part for param in PARAMS for part in ("--param", param)),
    ]  # fmt: skip
    began = time.perf_counter()
    with (folder / "batch-create.log").open("w") as log:
        subprocess.run(argv, env=dict(environment), stdout=log, stderr=log, check=True)
    return time.perf_counter() - began


def ledgered(sessions: Any) -> tuple[int, dict[str, int]]:
    """(messages the gateway took, with their sid and fee, messages by status). Delivery
    reports come in meanwhile, so taken is sent, delivered or undelivered."""
    with sessions() as session:
        done = session.scalar(
            select(func.count())
            .select_from(SmsMessage)
            .where(SmsMessage.status.in_(BILLABLE), SmsMessage.sid.is_not(None))
            .where(SmsMessage.fee.is_not(None))
        )
        grouped = session.execute(
            select(SmsMessage.status, func.count()).group_by(SmsMessage.status)
        )
        states = {status: count for status, count in grouped}
    return done or 0, states


def end_to_end(
    sms: Mapping[str, str], folder: Path, csv_path: Path, args: argparse.Namespace, run: int
) -> tuple[float, float]:
    """(seconds from ``batch create`` to every recipient ledgered, of which the import)."""
    pool, concurrency = args.settings
    engine = make_engine(sms["SMS_DATABASE_URL"])
    sessions = session_factory(engine)
    processes = start_processes(worker_environment(sms), folder, pool, concurrency, run)
    try:
        began = time.perf_counter()
        imported = create_batch(worker_environment(sms), csv_path, folder)
        done, states = 0, {}
        deadline = began + args.timeout
        while time.perf_counter() < deadline:
            done, states = ledgered(sessions)
            if set(states) - {QUEUED, SENDING, *BILLABLE}:
                raise SystemExit(f"messages ended otherwise than sent: {states}")
            if done >= args.recipients:
                break
            time.sleep(POLL_SECONDS)
        else:
            raise SystemExit(f"not done after {args.timeout:g} s: {states}")
        seconds = time.perf_counter() - began
        with sessions() as session:
            attempts = session.scalar(
                select(func.count())
                .select_from(SmsAttempt)
                .where(SmsAttempt.sid.is_not(None), SmsAttempt.fee.is_not(None))
            )
        if attempts != args.recipients:
            raise SystemExit(f"{attempts} attempts carry a sid and fee, not {args.recipients}")
        return seconds, imported
    finally:
        for process in reversed(processes):
            process.stop()
        engine.dispose()


def profile_chunks(sms: Mapping[str, str], chunks: int) -> None:
    """Claim ``chunks`` chunks of a new batch with the dispatcher and send them here, profiled."""
    from worker.api.batches import Batches
    from worker.celery.runtime import Runtime
    from worker.config import load_settings
    from worker.services.dispatch import Dispatcher, dispatch_due_batches
    from worker.services.sending.group import send_chunk

    settings = settings_under(sms, load_settings)
    current = Runtime.build(settings)
    claimed: list[tuple[list[uuid.UUID], str]] = []
    numbers = [f"+86135{n:08d}" for n in range(chunks * 200)]
    now = settings.now()
    Batches(settings, current.sessions).create(
        ["mobile", *numbers], template=TEMPLATE, sign=SIGN, params=list(PARAMS),
        start_at=now - timedelta(minutes=1), window_end_at=now + timedelta(days=1),
    )  # fmt: skip
    dispatcher = Dispatcher(
        current.sessions, settings, lambda ids, owner: claimed.append((list(ids), owner)),
        lambda message_id, kind: None, "bench-profile", DISPATCH_EVERY_SECONDS,
    )  # fmt: skip
    dispatch_due_batches(dispatcher, now)
    context = current.send_context
    profiler = cProfile.Profile()
    began = time.perf_counter()
    profiler.enable()
    for ids, owner in claimed[:chunks]:
        send_chunk(ids, owner, context)
    profiler.disable()
    elapsed = time.perf_counter() - began
    sent = min(chunks, len(claimed)) * 200
    print(
        f"\nprofile: {sent} messages in {sent // 200} chunks sent in this process, "
        f"{elapsed:.2f} s under cProfile ({sent / elapsed:.0f} /s); by own time:"
    )
    stats = pstats.Stats(profiler, stream=sys.stdout)
    stats.sort_stats("tottime").print_stats(20)
    stats.sort_stats("cumtime").print_stats("worker/", 25)
    current.engine.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--recipients", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument(
        "--settings", type=parse_setting, default=("threads", 8),
        help="the marketing worker's pool and concurrency, e.g. threads:8",
    )  # fmt: skip
    parser.add_argument("--timeout", type=float, default=3600.0, help="per run, seconds")
    parser.add_argument("--profile-chunks", type=int, default=0, metavar="K")
    parser.add_argument("--keep-logs", action="store_true", help="print the log folder")
    args = parser.parse_args(argv)

    load_before = os.getloadavg()
    floors, ends, imports = [], [], []
    messages, attempts = copy_rows(args.recipients)
    with log_folder(keep=args.keep_logs) as folder:
        csv_path = folder / "recipients.csv"
        csv_path.write_text("mobile\n" + "".join(f"+86{m}\n" for m in mobiles(args.recipients)))
        for run in range(1, args.runs + 1):
            with fresh_database() as url:
                floors.append(copy_seconds(url, messages, attempts))
            print(f"  run {run} COPY of {args.recipients:,} + {args.recipients:,} rows: "
                  f"{floors[-1]:.1f} s", flush=True)  # fmt: skip
            with (
                fresh_database() as ledger_url,
                empty_redis_database() as broker_url,
                simulator_process(folder) as gateway_url,
            ):
                offset = seconds_until_beijing_hour(datetime.now(UTC), 10)
                control = SimulatorControl(gateway_url)
                control.set_clock(offset=offset)
                control.close()
                sms = {
                    "SMS_DATABASE_URL": ledger_url,
                    "SMS_BROKER_URL": broker_url,
                    "SMS_GATEWAY_URL": gateway_url,
                    "SMS_SDKAPPID": SDKAPPID,
                    "SMS_APPKEY": APPKEY,
                    "SMS_SEND_RATE": "1000000",  # the account's rate must not be what limits
                    "SMS_CLOCK_OFFSET_SECONDS": str(offset),
                }
                seconds, imported = end_to_end(sms, folder, csv_path, args, run)
                ends.append(seconds)
                imports.append(imported)
                print(f"  run {run} end to end: {seconds:.1f} s, of which batch create "
                      f"{imported:.1f} s", flush=True)  # fmt: skip
                if args.profile_chunks and run == args.runs:
                    profile_chunks(sms, args.profile_chunks)
    report(args, floors, ends, imports, (load_before, os.getloadavg()))


def report(
    args: argparse.Namespace,
    floors: list[float],
    ends: list[float],
    imports: list[float],
    load: tuple[tuple[float, ...], tuple[float, ...]],
) -> None:
    floor, end, imported = (statistics.median(v) for v in (floors, ends, imports))
    pool, concurrency = args.settings
    print(
        f"\n{args.recipients:,} recipients, shared params, marketing worker {pool}:{concurrency}, "
        f"median of {args.runs}, {os.cpu_count()} cores, load average {load[0][0]:.1f} before, "
        f"{load[1][0]:.1f} after"
    )
    print(f"end to end:   {end:8.1f} s  ({args.recipients / end:,.0f} recipients/s; "
          f"batch create {imported:.1f} s)")  # fmt: skip
    print(f"COPY floor:   {floor:8.1f} s  ({args.recipients / floor:,.0f} message+attempt rows/s)")
    ratio = end / floor
    verdict = "meets" if ratio <= TARGET_RATIO else "MISSES"
    print(f"end to end / COPY: {ratio:.1f}; target within {TARGET_RATIO:g}x: {verdict}")


if __name__ == "__main__":
    main()
