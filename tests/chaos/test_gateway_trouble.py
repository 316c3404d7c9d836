"""The gateway in trouble: unreachable for a while, then back; or erring and timing out all along.

An unreachable gateway refuses connections (a request that never left: retried freely) and cuts
the ones open at that moment (a request that may have arrived: ambiguous). A gateway in a bad
mood answers 20% of sends with a transient error (1008, 60008, HTTP 503: nothing delivered) and
holds 5% past the workers' read timeout (delivered, but the worker cannot know: ambiguous). The
notifications resend what is ambiguous, so their only duplicates are those the ledger explains.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
from sqlalchemy import select

from tests.chaos.gateway_proxy import GatewayProxy
from tests.chaos.harness import GATEWAY_LATENCY_MS, SIZE, ChaosRun, case_timeout, scaled
from tests.chaos.system import ChaosSystem, Load, mainland_numbers
from worker.ledger.schema import SmsAttempt
from worker.ledger.status import BILLABLE
from worker.tencent.codes import Outcome

LOAD_SECONDS = scaled(6, 30)
SETTLE_SECONDS = 120 + SIZE * 0.05
OUTAGE_SECONDS = scaled(10, 30)
BACKLOG = 10
# 20% transient errors and 5% timeouts; a timeout holds the answer past the 2 s read timeout.
FAULT_RATES = {"1008": 0.07, "60008": 0.07, "http_503": 0.06, "slow": 0.05}
SLOW_SECONDS = 3.0


def outcomes(system: ChaosSystem) -> Counter[str]:
    with system.sessions() as session:
        return Counter(session.scalars(select(SmsAttempt.outcome)))


def in_full_swing(system: ChaosSystem, load: Load) -> None:
    system.wait_until(
        lambda: load.done_waves >= len(load.waves) // 3, timeout=LOAD_SECONDS + 30, what="a third"
    )
    system.when_backlogged(BACKLOG, timeout=LOAD_SECONDS)


@pytest.mark.slow
@pytest.mark.timeout(case_timeout(300 + OUTAGE_SECONDS))
def test_gateway_unreachable_then_back(chaos: ChaosRun) -> None:
    control = chaos.servers.simulator.control
    with GatewayProxy("127.0.0.1", chaos.servers.simulator.port) as proxy:
        system = chaos.system(gateway_url=proxy.url)
        system.start()
        load = chaos.load(system, mainland_numbers(4, SIZE), seconds=LOAD_SECONDS)
        in_full_swing(system, load)
        proxy.cut()
        time.sleep(1.0)  # what was already on its way arrives
        reached_before = control.stats()["log_size"]
        time.sleep(OUTAGE_SECONDS - 1.0)
        reached_during = control.stats()["log_size"] - reached_before
        unsettled = system.unsettled()
        proxy.restore()
        ids = load.wait(timeout=LOAD_SECONDS + OUTAGE_SECONDS + 60)

        audit = chaos.finish(system, len(ids), timeout=SETTLE_SECONDS + OUTAGE_SECONDS)
    audit.notes.append(f"unreachable {OUTAGE_SECONDS:.0f} s; {unsettled} messages waited for it")
    assert reached_during == 0, "requests reached the gateway while it was unreachable"
    assert unsettled > 0, "nothing was waiting for the gateway to come back"
    assert outcomes(system)[Outcome.NETWORK] > 0, "no worker found the gateway unreachable"
    assert set(audit.statuses) <= BILLABLE, audit.statuses  # all went once it was back


@pytest.mark.slow
@pytest.mark.timeout(case_timeout(300))
def test_gateway_erring_and_timing_out_throughout(chaos: ChaosRun) -> None:
    chaos.servers.simulator.control.set_faults(
        FAULT_RATES, latency_ms=GATEWAY_LATENCY_MS, slow_seconds=SLOW_SECONDS
    )
    system = chaos.system()
    system.start()
    load = chaos.load(system, mainland_numbers(5, SIZE), seconds=LOAD_SECONDS)
    ids = load.wait(timeout=LOAD_SECONDS + 60)

    audit = chaos.finish(system, len(ids), timeout=SETTLE_SECONDS)
    seen = outcomes(system)
    audit.notes.append(f"attempt outcomes: {dict(sorted(seen.items()))}")
    assert seen[Outcome.TRANSIENT] > 0 and seen[Outcome.AMBIGUOUS] > 0, seen
    assert audit.ambiguous > 0
    assert set(audit.statuses) <= BILLABLE, audit.statuses  # retried until they went
