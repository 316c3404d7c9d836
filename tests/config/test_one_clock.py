"""One clock for the whole worker: with ``SMS_CLOCK_OFFSET_SECONDS`` set, the producer, the
tasks, the sweeper, the ledger's defaults and the throttle's day all read the same shifted time,
so a demo at a simulated hour works end to end with that one variable."""

from __future__ import annotations

import math
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from redis import Redis
from sqlalchemy import select

from tests.fixtures.pipeline import Pipeline, child_environment
from tests.fixtures.simulator import (
    APPKEY,
    CODE_PARAMS,
    LONG_PARAMS,
    SDKAPPID,
    SIGN,
    TPL_CODE,
    TPL_LONG,
)
from worker import clock
from worker.celery.routing import QUEUE_MAINTENANCE, TASK_SWEEP
from worker.ledger.migrate import upgrade
from worker.ledger.schema import SmsMessage
from worker.ledger.status import QUEUED, SENT
from worker.services.sending.throttle import Throttle

ROOT = Path(__file__).resolve().parents[2]
SMS_WORKER = str(ROOT / ".venv" / "bin" / "sms-worker")
CLOCK = clock.OFFSET_SETTING
SIX_HOURS = 6 * 3600.0
WAIT_SECONDS = 120.0
# Reading the time anywhere but worker.clock. The simulator plays the gateway, whose clock is its
# own (and settable through its control API); logs stamp when a line was really written.
OTHER_CLOCKS = re.compile(
    r"datetime\.now\(|datetime\.utcnow\(|date\.today\(|time\.time\(\)|func\.now\(\)"
    r"|CURRENT_TIMESTAMP|datetime\.today\("
)
OWN_CLOCKS = ("worker/clock.py", "worker/simulator/")


def test_the_worker_reads_the_time_in_one_place() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in sorted((ROOT / "worker").rglob("*.py"))
        if not str(path.relative_to(ROOT)).startswith(OWN_CLOCKS)
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if OTHER_CLOCKS.search(line.split("#")[0])
    ]
    assert found == [], "read the time through worker.clock:\n" + "\n".join(found)


PROBE = """
from datetime import UTC, datetime
from worker import clock
from worker.config import load_settings
from worker.ledger.schema import utcnow
real = datetime.now(UTC)
ledger_default = utcnow()  # before any settings are loaded: from the environment
settings = load_settings()
for shifted in (ledger_default, clock.now(), settings.now(), utcnow()):
    print(round((shifted - real).total_seconds()))
print(round(settings.unix_time() - real.timestamp()))
"""


@pytest.mark.parametrize("source", ["environment", ".env"])
def test_settings_and_ledger_defaults_share_the_offset(tmp_path: Path, source: str) -> None:
    sms = {"SMS_DATABASE_URL": f"sqlite:///{tmp_path / 'ledger.db'}"}
    if source == "environment":
        sms[CLOCK] = str(SIX_HOURS)
    else:  # the settings' file: the ledger's defaults follow once the settings are loaded
        (tmp_path / ".env").write_text(f"{CLOCK}={SIX_HOURS}\n", encoding="utf-8")
    probe = subprocess.run(
        [sys.executable, "-c", PROBE], env=child_environment(sms), cwd=tmp_path,
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    before, *after = [int(line) for line in probe.stdout.split()]
    assert before == (SIX_HOURS if source == "environment" else 0)
    assert after == [SIX_HOURS] * 4, probe.stdout


@pytest.fixture
def shifted_clock() -> Iterator[None]:
    """This process's clock ``SIX_HOURS`` ahead, as a worker with the setting would run."""
    clock.set_offset(SIX_HOURS)
    yield
    clock.forget_offset()


def test_the_daily_limit_ends_at_midnight_on_the_worker_clock(
    redis_client: Redis, shifted_clock: None
) -> None:
    throttle = Throttle(redis_client, burst_seconds=0)
    assert throttle.number_wait("shop", "+8613700000099", "a", "m1", daily_limit=1) == 0.0
    seconds, micros = redis_client.time()
    shifted = seconds + micros / 1e6 + SIX_HOURS
    day = math.floor((shifted + 8 * 3600) / 86400)
    to_midnight = (day + 1) * 86400 - 8 * 3600 - shifted  # Beijing midnight, shifted clock

    wait = throttle.number_wait("shop", "+8613700000099", "b", "m2", daily_limit=1)

    # The real clock's midnight is six hours further (or eighteen nearer): far outside this.
    assert to_midnight - 600 < wait <= to_midnight + 1


def restart_worker(pipeline: Pipeline, offset: float | None) -> None:
    """The pipeline's worker with its clock ``offset`` ahead (None: real time), as the setting
    would be given to a deployment's worker."""
    pipeline.worker.stop()
    if offset is None:
        pipeline.worker.environment.pop(CLOCK, None)
        return  # the next test's reset starts it again
    pipeline.worker.environment[CLOCK] = str(offset)
    pipeline.worker.start()


@pytest.fixture
def six_hours_ahead(pipeline: Pipeline) -> Iterator[Pipeline]:
    """The worker and the simulator six hours ahead of the real clock."""
    pipeline.simulator.control.set_clock(offset=SIX_HOURS)
    restart_worker(pipeline, SIX_HOURS)
    try:
        yield pipeline
    finally:
        restart_worker(pipeline, None)
        pipeline.simulator.control.set_clock()


def test_a_code_sent_at_a_simulated_hour_is_delivered_not_expired(
    six_hours_ahead: Pipeline, tmp_path: Path
) -> None:
    pipeline = six_hours_ahead
    phone = pipeline.new_phone()
    environment = child_environment({**pipeline.environment, CLOCK: str(SIX_HOURS)})
    command = [SMS_WORKER, "send", "--to", phone.e164, "--template", str(TPL_CODE),
               *[arg for param in CODE_PARAMS for arg in ("--param", param)], "--sign", SIGN,
               "--kind", "verification", "--wait", "--timeout", str(WAIT_SECONDS)]  # fmt: skip

    sent = subprocess.run(
        command, env=environment, cwd=tmp_path, capture_output=True, text=True,
        timeout=WAIT_SECONDS + 60, check=False,
    )  # fmt: skip

    assert sent.returncode == 0, f"{sent.stdout}\n{sent.stderr}\n{pipeline.worker.log_tail()}"
    (message,) = pipeline.wait_settled(pipeline_ids(pipeline, phone.mobile)).values()
    assert message.status == SENT, (message.status, message.reason)
    # Every stamp of its life is on the shifted clock.
    real = datetime.now(UTC)
    for stamp in (message.created_at, message.sent_at, message.expires_at):
        assert stamp is not None and stamp > real + timedelta(hours=5)
    assert any(phone.e164 in r.numbers for r in pipeline.simulator.control.requests())


def pipeline_ids(pipeline: Pipeline, mobile: str) -> list[uuid.UUID]:
    with pipeline.sessions() as session:
        return list(session.scalars(select(SmsMessage.id).where(SmsMessage.mobile == mobile)))


def test_the_sweeper_publishes_what_is_due_on_the_worker_clock(six_hours_ahead: Pipeline) -> None:
    pipeline = six_hours_ahead
    phone = pipeline.new_phone()
    # Three hours from now on the real clock, three hours ago on the worker's: too far ahead for
    # the producer (real clock here) to publish; only the sweeper can.
    later = datetime.now(UTC) + timedelta(hours=3)
    enqueued = pipeline.producer.enqueue(
        phone.e164, template=TPL_LONG, params=LONG_PARAMS, sign=SIGN, not_before=later
    )
    assert pipeline.message(enqueued.id).status == QUEUED

    pipeline.celery_app.send_task(TASK_SWEEP, queue=QUEUE_MAINTENANCE)

    settled = pipeline.wait_settled([enqueued.id], timeout=WAIT_SECONDS)
    assert settled[enqueued.id].status == SENT, settled[enqueued.id].reason


def offset_to_beijing(hour: int, minute: int, second: int = 0) -> float:
    """Seconds to add to the real clock for it to read ``hour:minute:second`` Beijing time."""
    beijing = datetime.now(UTC) + timedelta(hours=8)
    target = beijing.replace(hour=hour, minute=minute, second=second, microsecond=0)
    return (target - beijing).total_seconds()


@pytest.mark.parametrize(
    ("at", "start", "expected"),
    [
        ((4, 48, 30), None, r"waiting for the sending window: opens 08:00 Beijing time "
                            r"\(in 3 h 1[01] min\)"),
        ((22, 30, 0), None, r"opens 08:00 Beijing time \(in 9 h [0-2]?\d min\)"),
        ((10, 0, 0), "2030-05-01 09:00", r"waiting for its start: 2030-05-01 09:00 Beijing time"),
        ((10, 0, 0), None, None),
    ],
)  # fmt: skip
def test_batch_status_says_what_a_batch_waits_for(
    tmp_path: Path, at: tuple[int, int, int], start: str | None, expected: str | None
) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    upgrade(url)
    sms = {"SMS_DATABASE_URL": url, "SMS_SDKAPPID": SDKAPPID, "SMS_APPKEY": APPKEY,
           CLOCK: str(offset_to_beijing(*at)), "COLUMNS": "200"}  # fmt: skip
    environment = child_environment(sms)
    rows = tmp_path / "vip.csv"
    rows.write_text("mobile\n+8613700000001\n", encoding="utf-8")

    def run(*args: str) -> str:
        done = subprocess.run(
            [SMS_WORKER, "batch", *args], env=environment, cwd=tmp_path, capture_output=True,
            text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    when = ["--start", start] if start else []
    run("create", str(rows), "--template", "100002", "--sign", SIGN, "--param", "x", *when)
    batch_id = run("list", "--format", "csv").splitlines()[1].split(",")[0]

    status = run("status", batch_id)

    waiting = [line for line in status.splitlines() if line.lstrip().startswith("waiting")]
    if expected is None:
        assert waiting == [], status
    else:
        assert len(waiting) == 1 and re.search(expected, waiting[0]), status
