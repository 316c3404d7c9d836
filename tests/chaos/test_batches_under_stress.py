"""Marketing batches while beat misbehaves: two beats at once, and the clock reaching 22:00.

A batch goes out at its account's rate, a share per dispatcher tick, in group sends of up to 200
numbers. Two beats tick the dispatcher twice as often and at the same moments: the batch's lease
in the database gives each tick's share to one of them. At 22:00 Beijing time marketing stops
(the worker checks its clock at dispatch and at send time, the gateway refuses with 1029 after
it) and the rest waits for 08:00. The worker and the simulator run on a shifted clock
(``SMS_CLOCK_OFFSET_SECONDS``, the control API's clock) so 22:00 comes when the case wants it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from tests.chaos.harness import SIZE, ChaosRun, case_timeout, scaled
from tests.chaos.system import ChaosSystem, mainland_numbers
from tests.fixtures.simulator import MARKETING_PARAMS, SIGN, TPL_MARKETING
from worker.api.batches import Batches
from worker.ledger.schema import SmsMessage
from worker.ledger.status import BILLABLE, QUEUED, SENDING
from worker.tencent.types import BEIJING, MARKETING_CLOSES, MARKETING_OPENS

# How long a batch takes at its account's rate: several dispatcher ticks (5 s each).
BATCH_SECONDS = scaled(15, 60)
BATCH_RATE = SIZE / BATCH_SECONDS
SETTLE_SECONDS = BATCH_SECONDS * 2 + 120
STARTUP_ALLOWANCE_SECONDS = 10.0  # the workers are up by then (else they start again, later)
CLOCK_TRIES = 3
DAYTIME = 10  # Beijing time: well within marketing hours


def seconds_until(now: datetime, hour: int) -> float:
    """Seconds from ``now`` to the next ``hour``:00 Beijing time."""
    local = now.astimezone(BEIJING)
    target = local.replace(hour=hour, minute=0, second=0, microsecond=0)
    if target <= local:
        target += timedelta(days=1)
    return (target - local).total_seconds()


def create_batch(system: ChaosSystem, numbers: Sequence[str], start_at: datetime) -> uuid.UUID:
    report = Batches(system.settings, system.sessions).create(
        ["mobile", *numbers], template=TPL_MARKETING, sign=SIGN, params=MARKETING_PARAMS,
        start_at=start_at, window_end_at=start_at + timedelta(days=2),
    )  # fmt: skip
    assert (report.accepted, report.rejected) == (len(numbers), 0), report.first_rejections
    return report.batch_id


def in_hand(system: ChaosSystem) -> int:
    """Messages a worker or dispatcher holds: sending, or handed over under a lease."""
    statement = select(func.count()).where(
        (SmsMessage.status == SENDING) | SmsMessage.lease_until.is_not(None)
    )
    with system.sessions() as session:
        return session.scalar(statement) or 0


def dispatch_ticks(system: ChaosSystem) -> list[int]:
    """How often each beat published the dispatcher's task."""
    return [
        beat.log_path.read_text(errors="replace").count("Sending due task dispatch-marketing")
        for beat in system.beats
    ]


@pytest.mark.slow
@pytest.mark.timeout(case_timeout(240 + BATCH_SECONDS))
def test_two_beats_at_once_during_a_batch(chaos: ChaosRun) -> None:
    # 10:00 Beijing time on the workers' and the gateway's clocks, whenever the suite runs.
    offset = seconds_until(datetime.now(UTC), DAYTIME)
    chaos.servers.simulator.control.set_clock(offset=offset)
    system = chaos.system(send_rate=BATCH_RATE, beats=2, clock_offset=offset)
    system.start()
    chaos.mark_start()
    create_batch(system, mainland_numbers(6, SIZE), datetime.now(UTC) + timedelta(seconds=offset))

    audit = chaos.finish(system, SIZE, timeout=SETTLE_SECONDS)
    audit.notes.append(f"dispatcher ticks published by each beat: {dispatch_ticks(system)}")
    assert set(audit.statuses) <= BILLABLE, audit.statuses
    assert audit.ambiguous == 0
    # Both beats were dispatching, several ticks each, while the batch went out.
    assert min(dispatch_ticks(system)) >= 2, dispatch_ticks(system)


def start_before_22(system: ChaosSystem, lead: float) -> float:
    """Start the system with its clock ``lead`` seconds (and the start-up's allowance) before
    22:00; the clock offset it runs at. Started again with more allowance when it was late."""
    allowance = STARTUP_ALLOWANCE_SECONDS
    for _ in range(CLOCK_TRIES):
        began = time.monotonic()
        offset = seconds_until(datetime.now(UTC), MARKETING_CLOSES) - lead - allowance
        system.control.set_clock(offset=offset)
        system.restart_workers(SMS_CLOCK_OFFSET_SECONDS=str(offset))
        if time.monotonic() - began < allowance:
            return offset
        allowance *= 2
    raise AssertionError(f"the workers never started {lead:g} s before 22:00 on their clock")


@pytest.mark.slow
@pytest.mark.timeout(case_timeout(360 + BATCH_SECONDS))
def test_the_clock_reaching_22_during_a_batch(chaos: ChaosRun) -> None:
    lead = BATCH_SECONDS / 2  # 22:00 comes when about half the batch is out
    system = chaos.system(send_rate=BATCH_RATE)
    offset = start_before_22(system, lead)
    evening = datetime.now(UTC) + timedelta(seconds=offset)
    closes = evening + timedelta(seconds=seconds_until(evening, MARKETING_CLOSES))
    chaos.mark_start()
    create_batch(system, mainland_numbers(7, SIZE), closes - timedelta(seconds=lead))

    # Past 22:00 on both clocks, nothing in a worker's hands: what is not out waits.
    system.wait_until(
        lambda: (
            datetime.now(UTC) + timedelta(seconds=offset) > closes + timedelta(seconds=10)
            and in_hand(system) == 0
        ),
        timeout=BATCH_SECONDS + 60,
        what="a quiet night",
    )
    night = system.statuses()
    delivered_by_night = len(system.control.inbox())
    time.sleep(6.0)  # another dispatcher tick: still nothing goes out
    assert len(system.control.inbox()) == delivered_by_night
    assert night.get(QUEUED, 0) > 0, f"the batch finished before 22:00: {night}"
    assert delivered_by_night > 0, f"nothing went out before 22:00: {night}"

    # 08:00 the next morning, on both clocks: the rest goes out.
    now = datetime.now(UTC)
    morning = offset + seconds_until(now + timedelta(seconds=offset), MARKETING_OPENS) + 2.0
    system.control.set_clock(offset=morning)
    system.restart_workers(SMS_CLOCK_OFFSET_SECONDS=str(morning))

    audit = chaos.finish(system, SIZE, timeout=SETTLE_SECONDS)
    audit.notes.append(
        f"out before 22:00: {delivered_by_night}; waited for 08:00: {night.get(QUEUED, 0)}"
    )
    assert set(audit.statuses) <= BILLABLE, audit.statuses
    hours = {datetime.fromtimestamp(m.time, BEIJING).hour for m in system.control.inbox()}
    assert hours == {MARKETING_CLOSES - 1, MARKETING_OPENS}, hours  # none in the night
