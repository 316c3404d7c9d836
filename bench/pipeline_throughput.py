"""End-to-end throughput of single sends beside a bare Celery no-op task, in the same run.

Pipeline: ``Producer.enqueue_many`` writes N messages (distinct numbers, one template) to a
PostgreSQL ledger and publishes their ``sms.send`` tasks to Redis; a Celery worker subprocess
(``celery -A worker worker``, as ``worker.runners.processes.celery_worker`` starts it) claims,
throttles,
signs, posts to the gateway simulator (its own process, zero latency) and records each one. The
clock runs from the start of ``enqueue_many`` until the ledger counts N ``sent``.

Baseline: N tasks of a no-op on the same broker, same queue, same pool and concurrency, from an
app built by the same ``make_app(settings)`` (late acks, prefetch, events...), started with the
same command line. Done means the broker holds nothing for the worker any more: the queue is
empty and no delivery is waiting for its ack. That adds no work to the task (a counter would
cost a Redis round trip per task, flattering the ratio).

With ``--latency-ms``, a third side: the same pipeline while the simulator takes that long to
answer every request, to show whether the worker hides the gateway's latency or pays it.

Each run starts a fresh worker and warms it up; the sides alternate. The figure is
the median. Beside each rate, the CPU time the worker's processes spent per message (from
/proc), which other load on the machine disturbs less than the rate. Then, with no worker
running, the latency of one ``Producer.enqueue``.

    python -m bench.pipeline_throughput [--messages 2000] [--runs 3] [--settings threads:8]
        [--latency-ms 100]

Needs the local PostgreSQL (trust auth) and Redis on their standard ports. It creates its own
database (dropped at the end) and uses the first Redis database among 1..15 that is empty
(flushed at the end).
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import secrets
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celery import Celery
from redis import Redis
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from worker.celery.routing import QUEUE_TRANSACTIONAL
from worker.ledger.db import database_url, make_engine, session_factory
from worker.ledger.messages import count_by_status
from worker.ledger.migrate import upgrade
from worker.ledger.status import SENT
from worker.runners.processes import ManagedProcess, celery_worker
from worker.simulator.control import SimulatorControl

TARGET_RATIO = 0.6
TARGET_HIDDEN = 0.8  # the slow gateway's best rate over the zero-latency best
POSTGRES_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_SERVER_URL = "redis://127.0.0.1:6379"
REDIS_DATABASES = range(1, 16)
APPKEY = "5f03a35d00ee52a21327ab048186a2c4"  # the documented example key
SDKAPPID = "1400000000"
TEMPLATE, PARAMS, SIGN = 19, ["验证码", "1234", "4"], "腾讯云"
NOOP_TASK = "bench.noop"
SLOW = "slow gateway"  # the side sending through a gateway with latency
WARM_UP = 100
POLL_SECONDS = 0.02  # the broker check, a few Redis commands
LEDGER_POLL_SECONDS = 0.05  # a count over the messages table: about 1 ms of work each time
LATENCY_SAMPLES = 1000
DEFAULT_SETTINGS = [("threads", 4), ("prefork", 4)]  # the best of each pool, see RESULTS.md
REPO = Path(__file__).resolve().parents[1]
# kombu's Redis transport: a queue is one list per priority step; deliveries awaiting their ack
# sit in this hash.
PRIORITY_SEPARATOR, PRIORITY_STEPS, UNACKED = "\x06\x16", (0, 3, 6, 9), "unacked"

# Claim a database only if nothing is in it: DBSIZE and SET in one atomic step.
_CLAIM_IF_EMPTY = """
if redis.call('DBSIZE') ~= 0 then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""


def __getattr__(name: str) -> Any:
    """``baseline_app``, built on first use: the app of the baseline worker process."""
    if name != "baseline_app":
        raise AttributeError(name)
    from worker.celery.application import make_app
    from worker.config import load_settings

    app = make_app(load_settings())
    app.task(name=NOOP_TASK, shared=False)(_noop)
    globals()["baseline_app"] = app
    return app


def _noop() -> None:
    """The least a task can do."""


# --- the parts: database, Redis database, simulator, workers ------------------------------------


@contextmanager
def log_folder(*, keep: bool) -> Iterator[Path]:
    """A folder for the processes' logs; removed afterwards unless ``keep``."""
    folder = Path(tempfile.mkdtemp(prefix="sms-bench-"))
    try:
        yield folder
    finally:
        if keep:
            print(f"logs in {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def fresh_database() -> Iterator[str]:
    """A new PostgreSQL database migrated to head; dropped (connections and all) afterwards."""
    name = f"sms_bench_{secrets.token_hex(6)}"
    server = database_url(POSTGRES_SERVER_URL)
    admin = create_engine(server, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        url = server.set(database=name).render_as_string(hide_password=False)
        upgrade(url)
        yield url
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@contextmanager
def empty_redis_database() -> Iterator[str]:
    """The URL of a Redis database that was empty, claimed with a marker; flushed afterwards."""
    marker = f"sms-bench:{secrets.token_hex(8)}"
    for db in REDIS_DATABASES:
        client = Redis.from_url(f"{REDIS_SERVER_URL}/{db}")
        if client.eval(_CLAIM_IF_EMPTY, 1, "sms-bench:owner", marker):
            try:
                yield f"{REDIS_SERVER_URL}/{db}"
            finally:
                client.flushdb()
                client.close()
            return
        client.close()
    raise RuntimeError(f"no empty Redis database among {REDIS_DATABASES.start}..15")


@contextmanager
def simulator_process(folder: Path) -> Iterator[str]:
    """``sms-worker simulator`` in its own process, at zero latency; its URL."""
    argv = [
        sys.executable, "-c", "from worker.cli import main; main()",
        "simulator", "--port", "0", "--log-level", "warning",
    ]  # fmt: skip
    log_path = folder / "simulator.log"
    log_path.unlink(missing_ok=True)  # an earlier run's "listening on" is not this one's
    process = ManagedProcess("simulator", argv, worker_environment({}), log_path, "listening on")
    with process:
        found = re.search(r"listening on (http://\S+)", log_path.read_text())
        assert found, "the simulator did not say where it listens"
        url = found.group(1)
        control = SimulatorControl(url)
        control.set_faults(latency_ms=0.0)
        control.close()
        yield url


def worker_environment(sms: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without its ``SMS_*`` variables, plus ``sms``."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("SMS_")}
    path = os.pathsep.join(p for p in (str(REPO), inherited.get("PYTHONPATH")) if p)
    return {**inherited, **sms, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}


def start_worker(
    side: str, environment: Mapping[str, str], folder: Path, pool: str, concurrency: int, run: int
) -> ManagedProcess:
    """The Celery worker of ``side``: the same command line for both, only the app differs."""
    log_path = folder / f"{side}-{pool}-{concurrency}-{run}.log"
    process = celery_worker(
        environment, log_path, pool=pool, concurrency=concurrency, name=f"bench-{side}", cwd=folder
    )
    if side == "baseline":
        process.argv[process.argv.index("-A") + 1] = "bench.pipeline_throughput:baseline_app"
    return process.start()


# --- the two sides -------------------------------------------------------------------------------

_numbers = itertools.count(1)


def distinct_numbers(count: int) -> list[str]:
    """Mainland numbers never used before in this run (the throttle remembers numbers)."""
    return [f"+86137{next(_numbers):08d}" for _ in range(count)]


def wait_for(
    done: Callable[[], bool], timeout: float, what: str, every: float = POLL_SECONDS
) -> None:
    for _ in range(int(timeout / every) + 1):
        if done():
            return
        time.sleep(every)
    raise RuntimeError(f"{what} not done after {timeout:g} s")


def tree_cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of process ``pid`` and its live descendants (Linux /proc)."""
    parent_of: dict[int, int] = {}
    cpu_of: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # it ended meanwhile
            parent_of[int(entry.name)] = int(fields[1])
            cpu_of[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    tree = {pid}
    for _ in range(len(parent_of)):
        grown = {process for process, parent in parent_of.items() if parent in tree} - tree
        if not grown:
            break
        tree |= grown
    return sum(cpu_of[process] for process in tree if process in cpu_of)


@dataclass
class Bench:
    sessions: sessionmaker[Session]
    producer: Any  # worker.api.producer.Producer
    celery_app: Celery
    redis: Redis
    gateway: SimulatorControl
    timeout: float
    slow_ms: float = 0.0  # the gateway's latency on the "slow gateway" side
    enqueue_seconds: float = 0.0  # of the last pipeline run: how long enqueue_many took

    def send_messages(self, count: int) -> float:
        """Seconds from the start of ``enqueue_many`` until ``count`` more messages are sent."""
        with self.sessions() as session:
            session.execute(text("TRUNCATE sms_attempts, sms_messages CASCADE"))
            session.commit()
        numbers = distinct_numbers(count)
        started = time.perf_counter()
        self.producer.enqueue_many(numbers, template=TEMPLATE, params=PARAMS, sign=SIGN)
        self.enqueue_seconds = time.perf_counter() - started

        def all_sent() -> bool:
            with self.sessions() as session:
                states = count_by_status(session)
            if set(states) - {"queued", "sending", SENT}:
                raise RuntimeError(f"messages ended otherwise than sent: {states}")
            return states.get(SENT, 0) >= count

        wait_for(all_sent, self.timeout, f"sending {count} messages", LEDGER_POLL_SECONDS)
        elapsed = time.perf_counter() - started
        self.wait_drained()  # the last acks, so the next run starts from an empty broker
        return elapsed

    def run_noops(self, count: int) -> float:
        """Seconds from the first publish until the broker holds none of ``count`` no-ops."""
        started = time.perf_counter()
        for _ in range(count):
            # As worker.celery.tasks.make_publisher publishes a send, with a task id of our own.
            self.celery_app.send_task(
                NOOP_TASK, args=[], task_id=str(uuid.uuid4()), queue=QUEUE_TRANSACTIONAL
            )
        self.wait_drained()
        return time.perf_counter() - started

    def left_in_broker(self) -> int:
        with self.redis.pipeline(transaction=True) as pipe:
            for step in PRIORITY_STEPS:
                queue = QUEUE_TRANSACTIONAL
                pipe.llen(f"{queue}{PRIORITY_SEPARATOR}{step}" if step else queue)
            pipe.hlen(UNACKED)
            return sum(pipe.execute())

    def wait_drained(self) -> None:
        # Twice in a row: a delivery is briefly in neither place, between BRPOP and its ack entry.
        zeros = [1, 1]

        def drained() -> bool:
            zeros.append(self.left_in_broker())
            return zeros[-1] == zeros[-2] == 0

        wait_for(drained, self.timeout, "draining the broker")

    def run(self, side: str, count: int) -> float:
        if side == "baseline":
            return self.run_noops(count)
        self.gateway.set_faults(latency_ms=self.slow_ms if side == SLOW else 0.0)
        return self.send_messages(count)


def enqueue_latencies(producer: Any, samples: int) -> list[float]:
    """Milliseconds of each of ``samples`` single ``enqueue`` calls, after a short warm-up."""
    latencies = []
    for number in distinct_numbers(samples + 50):
        started = time.perf_counter()
        producer.enqueue(number, template=TEMPLATE, params=PARAMS, sign=SIGN)
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies[50:]


# --- main ----------------------------------------------------------------------------------------


def parse_setting(value: str) -> tuple[str, int]:
    pool, _, concurrency = value.partition(":")
    if pool not in ("threads", "prefork", "solo") or not concurrency.isdigit():
        raise argparse.ArgumentTypeError(f"{value!r}: expected POOL:CONCURRENCY, e.g. threads:8")
    return pool, int(concurrency)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--settings", type=parse_setting, nargs="+", default=DEFAULT_SETTINGS,
        help="worker pool and concurrency, one or more: threads:4 prefork:4 ...",
    )  # fmt: skip
    parser.add_argument(
        "--latency-ms", type=float, default=0.0,
        help="also run the pipeline against a gateway this slow (a third side)",
    )  # fmt: skip
    parser.add_argument("--latency-samples", type=int, default=LATENCY_SAMPLES)
    parser.add_argument("--timeout", type=float, default=300.0, help="per run, seconds")
    parser.add_argument("--keep-logs", action="store_true", help="print the log folder")
    args = parser.parse_args(argv)

    from worker.api.producer import Producer
    from worker.celery.application import make_app
    from worker.celery.tasks import make_publisher
    from worker.config import load_settings

    load_before = os.getloadavg()
    results: dict[str, dict[str, list[tuple[float, float]]]] = {}
    with (
        log_folder(keep=args.keep_logs) as folder,
        fresh_database() as ledger_url,
        empty_redis_database() as broker_url,
        simulator_process(folder) as gateway_url,
    ):
        sms = {
            "SMS_DATABASE_URL": ledger_url,
            "SMS_BROKER_URL": broker_url,
            "SMS_GATEWAY_URL": gateway_url,
            "SMS_SDKAPPID": SDKAPPID,
            "SMS_APPKEY": APPKEY,
            "SMS_SEND_RATE": "100000",  # the account rate must not be what limits
        }
        settings = settings_under(sms, load_settings)
        engine = make_engine(ledger_url)
        celery_app = make_app(settings)
        redis = Redis.from_url(broker_url)
        producer = Producer(settings, session_factory(engine), make_publisher(celery_app))
        gateway = SimulatorControl(gateway_url)
        bench = Bench(
            session_factory(engine), producer, celery_app, redis, gateway, args.timeout,
            slow_ms=args.latency_ms,
        )  # fmt: skip
        try:
            for pool, concurrency in args.settings:
                results[f"{pool}:{concurrency}"] = alternate(
                    bench, worker_environment(sms), folder, pool, concurrency, args
                )
            latencies = enqueue_latencies(producer, args.latency_samples)
        finally:
            gateway.close()
            celery_app.close()
            redis.close()
            engine.dispose()
    report(results, args, latencies, (load_before, os.getloadavg()))


def alternate(
    bench: Bench,
    environment: Mapping[str, str],
    folder: Path,
    pool: str,
    concurrency: int,
    args: argparse.Namespace,
) -> dict[str, list[tuple[float, float]]]:
    """``args.runs`` runs of each side, alternating; (messages per second, worker CPU ms each)."""
    runs: dict[str, list[tuple[float, float]]] = {"pipeline": [], "baseline": []}
    if args.latency_ms:
        runs[SLOW] = []
    for run in range(1, args.runs + 1):
        for side in runs:
            worker = start_worker(side, environment, folder, pool, concurrency, run)
            try:
                bench.run(side, WARM_UP)
                assert worker.pid is not None
                cpu_before = tree_cpu_seconds(worker.pid)
                seconds = bench.run(side, args.messages)
                cpu = (tree_cpu_seconds(worker.pid) - cpu_before) * 1000 / args.messages
            finally:
                worker.stop()
            runs[side].append((args.messages / seconds, cpu))
            detail = f", of which enqueue_many {bench.enqueue_seconds:.2f} s" * (side != "baseline")
            print(
                f"  {pool}:{concurrency} run {run} {side:12} {args.messages / seconds:5.0f} /s, "
                f"worker CPU {cpu:5.2f} ms each  ({seconds:.2f} s{detail})",
                flush=True,
            )
    return runs


def settings_under(sms: Mapping[str, str], load: Callable[..., Any]) -> Any:
    """``load_settings()`` as a process with exactly these ``SMS_*`` variables sees them."""
    saved = dict(os.environ)
    try:
        for name in [name for name in os.environ if name.startswith("SMS_")]:
            del os.environ[name]
        os.environ.update(sms)
        return load(env_file=None)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def report(
    results: Mapping[str, Mapping[str, list[tuple[float, float]]]],
    args: argparse.Namespace,
    latencies: list[float],
    load: tuple[tuple[float, ...], tuple[float, ...]],
) -> None:
    print(
        f"\n{args.messages} messages per run, median of {args.runs} runs, {os.cpu_count()} cores, "
        f"load average {load[0][0]:.1f} before, {load[1][0]:.1f} after"
    )
    print(
        f"{'pool':11} {'pipeline /s':>11} {'no-op /s':>9} {'ratio':>6}  {'worker CPU ms each':>21}"
    )
    best: tuple[float, str] | None = None
    fastest: dict[str, float] = {}  # side: the best median rate over the settings
    for setting, runs in results.items():
        rate = {side: statistics.median(r for r, _ in runs[side]) for side in runs}
        cpu = {side: statistics.median(c for _, c in runs[side]) for side in runs}
        ratio = rate["pipeline"] / rate["baseline"]
        slow = f"   {SLOW} {rate[SLOW]:5.0f} /s" if SLOW in rate else ""
        print(
            f"{setting:11} {rate['pipeline']:11.0f} {rate['baseline']:9.0f} {ratio:6.2f}  "
            f"{cpu['pipeline']:9.2f} vs {cpu['baseline']:5.2f} no-op{slow}"
        )
        if best is None or ratio > best[0]:
            best = (ratio, setting)
        for side, value in rate.items():
            fastest[side] = max(fastest.get(side, 0.0), value)
    if best is not None:
        verdict = "meets" if best[0] >= TARGET_RATIO else "MISSES"
        print(f"target ratio {TARGET_RATIO}: {verdict} (best {best[0]:.2f}, {best[1]})")
    if SLOW in fastest:
        hidden = fastest[SLOW] / fastest["pipeline"]
        verdict = "meets" if hidden >= TARGET_HIDDEN else "MISSES"
        print(
            f"gateway at {args.latency_ms:g} ms: best {fastest[SLOW]:.0f} /s against "
            f"{fastest['pipeline']:.0f} /s at zero latency, ratio {hidden:.2f}; "
            f"target {TARGET_HIDDEN}: {verdict}"
        )
    if len(latencies) > 1:
        print(
            f"one enqueue (PostgreSQL ledger, Redis broker, no worker running), "
            f"{len(latencies)} calls: p50 {statistics.median(latencies):.2f} ms, "
            f"p99 {statistics.quantiles(latencies, n=100)[98]:.2f} ms"
        )


if __name__ == "__main__":
    main()
