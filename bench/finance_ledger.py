"""A month's finance over ten million attempt rows: the summary with and without the rollup,
and the streaming export beside PostgreSQL's own COPY, in the same run.

Rows: a fresh PostgreSQL database migrated to head is filled, inside the server, with a month
(the last whole Beijing month) of messages and attempts (``bench.ledger_rows``: five accounts,
85 templates, six countries, every final state, fees 1 to 3, one message in twelve retried).
Then ``finance.rollup`` computes the month's days of ``sms_daily_usage``, as beat would.

Summary: ``finance.summary`` (the service behind ``sms-worker ledger summary``) for the month
``--by day,account``, timed in this process. With the rollup it reads ``sms_daily_usage``; the
baseline is the same call with its clock set to the month's first day, when no day of the
month is past yet and every day is read from the live tables. Each run is one live summary
then ``--repeats`` rolled-up ones (seconds against milliseconds: the fast side gets more
samples); the figures are medians, and every rolled-up answer must equal the live one.

Export: ``sms-worker ledger export --what attempts`` (CSV to /dev/null) in a child process
over periods holding a tenth, three tenths and all of the rows; its rows per second and its
peak memory (VmHWM, read from /proc while it runs). Beside it, ``psql`` running ``COPY (the
same query) TO STDOUT`` in CSV to /dev/null: the server's own floor for the same bytes.

    python -m bench.finance_ledger [--rows 10000000] [--runs 3] [--repeats 10] [--export-runs 1]

Needs the local PostgreSQL (trust auth) and ``psql``. It creates its own database and drops it
at the end; with ``--database-url`` it uses that one (filled on the first run) and keeps it,
so a second run skips the generation.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from bench.ledger_rows import Shape, generate
from bench.pipeline_throughput import fresh_database, worker_environment
from worker.ledger.db import make_engine, session_factory
from worker.ledger.migrate import upgrade
from worker.ledger.schema import SmsAttempt, SmsDailyUsage
from worker.services import finance

TARGET_SUMMARY_MS = 100.0
TARGET_EXPORT_MB = 200.0
BY = ("day", "account")
EXPORT_FRACTIONS = (0.1, 0.3, 1.0)
POLL_SECONDS = 0.02  # between two looks at an exporting child's memory
# The export's query (worker.ledger.finance.stream_attempts), for COPY.
COPY_ATTEMPTS = """COPY (SELECT a.*, m.account, m.kind, m.nationcode
  FROM sms_attempts a JOIN sms_messages m ON m.id = a.message_id
  WHERE a.started_at >= '{start}' AND a.started_at < '{end}' ORDER BY a.started_at, a.id)
  TO STDOUT WITH (FORMAT csv, HEADER)"""


def last_whole_month(now: datetime) -> tuple[date, date]:
    """The first day of the Beijing month before ``now``'s, and of ``now``'s."""
    this_month = finance.beijing_day(now).replace(day=1)
    return (this_month - timedelta(days=1)).replace(day=1), this_month


@contextmanager
def ledger(url: str | None) -> Iterator[str]:
    """The database at ``url`` (migrated to head, never dropped), or a fresh one."""
    if url:
        upgrade(url)
        yield url
    else:
        with fresh_database() as fresh:
            yield fresh


def fill(engine: Engine, shape: Shape, start: datetime, end: datetime) -> None:
    with session_factory(engine)() as session:
        present = session.scalar(select(func.count()).select_from(SmsAttempt))
    if present == shape.attempts:
        print(f"reusing {present:,} attempt rows", flush=True)
        return
    if present:
        raise SystemExit(f"the database holds {present:,} attempts, not {shape.attempts:,}")
    print(f"generating {shape.messages:,} messages and {shape.attempts:,} attempts", flush=True)
    generate(engine, shape, start, end, lambda line: print(line, flush=True))


def roll_up(sessions: sessionmaker[Session], days: list[date]) -> None:
    """The month's rollup, as beat's nightly task computes it (kept when a run made it), with
    fresh planner statistics, as autovacuum keeps them for a table rewritten every hour."""
    with sessions() as session:
        present = session.scalar(
            select(func.count()).select_from(SmsDailyUsage).where(SmsDailyUsage.day >= days[0])
        )
    if present:
        print(f"reusing {present:,} rollup rows", flush=True)
    else:
        began = time.perf_counter()
        written = finance.rollup(sessions, days)
        print(f"rollup of {len(days)} days: {written:,} rows in "
              f"{time.perf_counter() - began:.1f} s", flush=True)  # fmt: skip
    with sessions() as session:
        session.execute(text(f"ANALYZE {SmsDailyUsage.__tablename__}"))
        session.commit()


def timed_summary(sessions: sessionmaker[Session], start: datetime, end: datetime,
                  now: datetime | None) -> tuple[float, list[finance.SummaryRow]]:  # fmt: skip
    began = time.perf_counter()
    rows = finance.summary(sessions, start, end, by=BY, now=now)
    return (time.perf_counter() - began) * 1000, rows


def compare_summaries(
    sessions: sessionmaker[Session], start: datetime, end: datetime, runs: int, repeats: int
) -> dict[str, list[float]]:
    """Milliseconds of each summary: per run, one from the live tables, then ``repeats`` from
    the rollup (minutes against milliseconds: more samples of the fast side cost nothing).
    Raises if the two disagree."""
    timings: dict[str, list[float]] = {"rollup": [], "live": []}
    timed_summary(sessions, start, end, None)  # the pool's first connection, the mappers
    for run in range(1, runs + 1):
        live, counted = timed_summary(sessions, start, end, start)
        rolled_up = [timed_summary(sessions, start, end, None) for _ in range(repeats)]
        if any([r.as_dict() for r in rows] != [r.as_dict() for r in counted]
               for _, rows in rolled_up):  # fmt: skip
            raise SystemExit("the rollup and the live tables disagree: fix the rollup")
        timings["live"].append(live)
        timings["rollup"] += [milliseconds for milliseconds, _ in rolled_up]
        fast = statistics.median(milliseconds for milliseconds, _ in rolled_up)
        print(f"  run {run} summary: live {live:9.1f} ms, rollup {fast:6.1f} ms (median of "
              f"{repeats}) ({len(counted)} rows)", flush=True)  # fmt: skip
    return timings


def profile_summary(sessions: sessionmaker[Session], start: datetime, end: datetime) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(5):
        finance.summary(sessions, start, end, by=BY)
    profiler.disable()
    print("profile of 5 summaries with the rollup (cProfile, by own time):")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(12)


@dataclass(frozen=True, slots=True)
class Exported:
    rows: int
    seconds: float
    peak_mb: float

    @property
    def per_second(self) -> float:
        return self.rows / self.seconds


def run_child(argv: list[str], environment: dict[str, str]) -> tuple[str, float, float]:
    """Run ``argv`` to its end: (stderr, seconds, peak resident MB).

    The peak is the child's VmHWM, read from /proc while it runs. Not ``ru_maxrss``: Linux
    carries the parent's high-water mark across fork and exec into the child's, so every child
    of this process would show at least this process's own size.
    """
    with tempfile.TemporaryFile("w+") as errors:
        began = time.perf_counter()
        # Popen returns once the child has exec'd: its memory from here on is its own.
        child = subprocess.Popen(argv, env=environment, stdout=subprocess.DEVNULL, stderr=errors)
        status = Path(f"/proc/{child.pid}/status")
        peak_kb = 0
        while child.poll() is None:
            peak_kb = max(peak_kb, _high_water_kb(status))
            time.sleep(POLL_SECONDS)
        seconds = time.perf_counter() - began
        errors.seek(0)
        stderr = errors.read()
    if child.returncode:
        raise SystemExit(f"{' '.join(argv[3:6])} ended with {child.returncode}: {stderr[-2000:]}")
    return stderr, seconds, peak_kb / 1024


def _high_water_kb(status: Path) -> int:
    try:
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass  # it ended between two looks
    return 0


def export_ours(url: str, start: datetime, end: datetime) -> Exported:
    argv = [
        sys.executable, "-c", "from worker.cli import main; main()", "ledger", "export",
        "--what", "attempts", "--from", start.isoformat(), "--to", end.isoformat(),
        "--output", os.devnull, "--database-url", url,
    ]  # fmt: skip
    stderr, seconds, peak = run_child(argv, worker_environment({}))
    rows = int(stderr.split(" attempts exported")[0].split()[-1])
    return Exported(rows, seconds, peak)


def export_copy(url: str, start: datetime, end: datetime, rows: int) -> Exported:
    libpq_url = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    query = " ".join(COPY_ATTEMPTS.format(start=start.isoformat(), end=end.isoformat()).split())
    argv = ["psql", "--no-psqlrc", "--quiet", "--set", "ON_ERROR_STOP=1", libpq_url, "-c", query]
    _, seconds, peak = run_child(argv, dict(os.environ))
    return Exported(rows, seconds, peak)


def compare_exports(
    url: str, start: datetime, end: datetime, runs: int
) -> dict[float, dict[str, list[Exported]]]:
    results: dict[float, dict[str, list[Exported]]] = {}
    for run in range(1, runs + 1):
        for fraction in EXPORT_FRACTIONS:
            until = start + (end - start) * fraction
            ours = export_ours(url, start, until)
            floor = export_copy(url, start, until, ours.rows)
            sides = results.setdefault(fraction, {"ours": [], "copy": []})
            sides["ours"].append(ours)
            sides["copy"].append(floor)
            print(f"  run {run} export {ours.rows:>10,} rows: ours {ours.per_second:8,.0f} /s "
                  f"{ours.peak_mb:6.1f} MB peak; COPY {floor.per_second:9,.0f} /s "
                  f"{floor.peak_mb:5.1f} MB", flush=True)  # fmt: skip
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="attempt rows")
    parser.add_argument("--runs", type=int, default=3, help="live-table summaries")
    parser.add_argument("--repeats", type=int, default=10, help="rollup summaries per run")
    parser.add_argument("--export-runs", type=int, default=1, help="passes over the sizes")
    parser.add_argument("--profile", action="store_true", help="cProfile the rolled summary")
    parser.add_argument(
        "--database-url", help="use (and fill, if empty) this database, and keep it"
    )
    args = parser.parse_args(argv)

    first, after = last_whole_month(datetime.now(UTC))
    start, end = finance.beijing_midnight(first), finance.beijing_midnight(after)
    days = [first + timedelta(days=n) for n in range((after - first).days)]
    shape = Shape.for_attempts(args.rows)
    load_before = os.getloadavg()
    with ledger(args.database_url) as url:
        engine = make_engine(url)
        sessions = session_factory(engine)
        try:
            fill(engine, shape, start, end)
            roll_up(sessions, days)
            summaries = compare_summaries(sessions, start, end, args.runs, args.repeats)
            if args.profile:
                profile_summary(sessions, start, end)
            exports = compare_exports(url, start, end, args.export_runs) if args.export_runs else {}
        finally:
            engine.dispose()
        report(args, shape, first, summaries, exports, (load_before, os.getloadavg()))


def report(
    args: argparse.Namespace,
    shape: Shape,
    first: date,
    summaries: dict[str, list[float]],
    exports: dict[float, dict[str, list[Exported]]],
    load: tuple[tuple[float, ...], tuple[float, ...]],
) -> None:
    print(
        f"\n{shape.attempts:,} attempts of {shape.messages:,} messages over {first:%Y-%m} "
        f"(Beijing), {os.cpu_count()} cores, load average {load[0][0]:.1f} before, "
        f"{load[1][0]:.1f} after"
    )
    rolled, live = (statistics.median(summaries[side]) for side in ("rollup", "live"))
    print(f"summary --by {','.join(BY)}: rollup {rolled:.1f} ms (median of "
          f"{len(summaries['rollup'])}), live tables {live:.0f} ms (median of {args.runs}), "
          f"live / rollup {live / rolled:.0f}x")  # fmt: skip
    verdict = "meets" if rolled < TARGET_SUMMARY_MS else "MISSES"
    print(f"target under {TARGET_SUMMARY_MS:g} ms with the rollup: {verdict}")
    if exports:
        report_exports(args, exports)


def report_exports(
    args: argparse.Namespace, exports: dict[float, dict[str, list[Exported]]]
) -> None:
    print(f"export --what attempts (CSV), median of {args.export_runs}:")
    header = f"{'ours /s':>9} {'COPY /s':>9} {'ratio':>6}  {'ours MB':>8} {'COPY MB':>8}"
    print(f"  {'rows':>10}  {header}")
    peaks = []
    for sides in exports.values():
        ours, floor = sides["ours"], sides["copy"]
        rate = statistics.median(e.per_second for e in ours)
        copy_rate = statistics.median(e.per_second for e in floor)
        peak = max(e.peak_mb for e in ours)
        peaks.append(peak)
        print(f"  {ours[0].rows:>10,}  {rate:9,.0f} {copy_rate:9,.0f} {rate / copy_rate:6.2f}  "
              f"{peak:8.1f} {max(e.peak_mb for e in floor):8.1f}")  # fmt: skip
    verdict = "meets" if max(peaks) < TARGET_EXPORT_MB else "MISSES"
    growth = max(peaks) - min(peaks)
    print(
        f"target peak under {TARGET_EXPORT_MB:g} MB, flat as size grows: {verdict} "
        f"(largest {max(peaks):.1f} MB, {growth:+.1f} MB from the smallest to the largest)"
    )


if __name__ == "__main__":
    main()
