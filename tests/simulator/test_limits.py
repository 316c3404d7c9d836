"""Per-number frequency limits, the blacklist and the prepaid balance."""

from __future__ import annotations

from tests.fixtures.simulator import LONG_PARAMS, MOBILE, TPL_LONG, SignedCaller, beijing
from worker.simulator.server import SimulatorServer


def test_limits_are_off_by_default(sim_caller: SignedCaller) -> None:
    assert {sim_caller.send_template()["result"] for _ in range(15)} == {0}


def test_per_number_30_seconds_is_1023(
    simulator: SimulatorServer, sim_caller: SignedCaller
) -> None:
    sim_caller.follow(simulator.control.set_clock(now=beijing(2024, 5, 1, 12)))
    simulator.control.set_limits(per_number_30s=1)
    assert sim_caller.send_template()["result"] == 0
    assert sim_caller.send_template()["result"] == 1023
    assert sim_caller.send_template("13700000001")["result"] == 0  # other numbers are free
    sim_caller.follow(simulator.control.set_clock(now=beijing(2024, 5, 1, 12) + 31))
    assert sim_caller.send_template()["result"] == 0
    assert len(simulator.control.inbox(mobile=MOBILE)) == 2


def test_per_number_hour_is_1024(simulator: SimulatorServer, sim_caller: SignedCaller) -> None:
    start = beijing(2024, 5, 1, 12)
    simulator.control.set_limits(per_number_hour=2)
    results = []
    for minute in (0, 10, 20, 61):
        sim_caller.follow(simulator.control.set_clock(now=start + minute * 60))
        results.append(sim_caller.send_template()["result"])
    assert results == [0, 0, 1024, 0]


def test_per_number_day_is_1025_until_beijing_midnight(
    simulator: SimulatorServer, sim_caller: SignedCaller
) -> None:
    simulator.control.set_limits(per_number_day=2)
    results = []
    for hour, minute in ((9, 0), (15, 0), (23, 59), (0, 1)):
        day = 2 if (hour, minute) == (0, 1) else 1
        sim_caller.follow(simulator.control.set_clock(now=beijing(2024, 5, day, hour, minute)))
        results.append(sim_caller.send_template()["result"])
    assert results == [0, 0, 1025, 0]


def test_refused_sends_do_not_count_against_the_limit(
    simulator: SimulatorServer, sim_caller: SignedCaller
) -> None:
    simulator.control.set_limits(per_number_hour=1)
    simulator.control.script(MOBILE, [1008])
    assert sim_caller.send_template()["result"] == 1008
    assert sim_caller.send_template()["result"] == 0
    assert sim_caller.send_template()["result"] == 1024


def test_blacklisted_number_is_1015(simulator: SimulatorServer, sim_caller: SignedCaller) -> None:
    simulator.control.set_limits(blacklist=["13700000009", "+8613700000008"])
    assert sim_caller.send_template("13700000009")["result"] == 1015
    assert sim_caller.send_template("13700000008")["result"] == 1015
    answer = sim_caller.send_group(["13700000009", "13700000001"])
    assert [d["result"] for d in answer["detail"]] == [1015, 0]
    assert [m.mobile for m in simulator.control.inbox()] == ["13700000001"]


def test_prepaid_balance_runs_out_with_1031(
    simulator: SimulatorServer, sim_caller: SignedCaller
) -> None:
    simulator.control.set_limits(balance=3)
    assert sim_caller.send_template(tpl_id=TPL_LONG, params=LONG_PARAMS)["fee"] == 2
    # 1 segment left: a 2-segment message does not fit, a 1-segment one does.
    assert sim_caller.send_template(tpl_id=TPL_LONG, params=LONG_PARAMS)["result"] == 1031
    assert sim_caller.send_template()["result"] == 0
    assert sim_caller.send_template()["result"] == 1031
    assert simulator.control.stats()["balance"] == 0
    assert simulator.control.stats()["billed_segments"] == 3


def test_balance_in_a_group_fails_the_numbers_past_it(
    simulator: SimulatorServer, sim_caller: SignedCaller
) -> None:
    simulator.control.set_limits(balance=2)
    answer = sim_caller.send_group(["13700000001", "13700000002", "13700000003"])
    assert answer["result"] == 0
    assert [d["result"] for d in answer["detail"]] == [0, 0, 1031]


def test_reset_restores_the_configured_limits(
    simulator: SimulatorServer, sim_caller: SignedCaller
) -> None:
    simulator.control.set_limits(balance=0, blacklist=[MOBILE])
    assert sim_caller.send_template()["result"] == 1015
    simulator.control.reset()
    assert sim_caller.send_template()["result"] == 0
