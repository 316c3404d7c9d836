"""Faults on demand: scripts per number, random rates, and what each one delivers."""

from __future__ import annotations

import pytest
import requests

from tests.fixtures.simulator import MOBILE, SignedCaller
from worker.simulator.control import SimulatorControlError
from worker.simulator.server import SimulatorServer


def test_scripted_codes_then_normal(simulator: SimulatorServer, sim_caller: SignedCaller) -> None:
    simulator.control.script(MOBILE, [1008, 60008, 1007])
    answers = [sim_caller.send_template() for _ in range(4)]

    assert [a["result"] for a in answers] == [1008, 60008, 1007, 0]
    assert all("sid" not in a and "fee" not in a for a in answers[:3])
    # Gateway-side failures deliver nothing: one message in the inbox, from the 4th request.
    assert [m.sid for m in simulator.control.inbox()] == [answers[3]["sid"]]
    assert simulator.control.scripts() == {}
    faults = [r.fault for r in simulator.control.requests()]
    assert faults == ["scripted: 1008", "scripted: 60008", "scripted: 1007", None]


def test_script_concerns_only_its_number(
    simulator: SimulatorServer, sim_caller: SignedCaller
) -> None:
    simulator.control.script("13700000001", [1008])
    assert sim_caller.send_template(MOBILE)["result"] == 0
    assert sim_caller.send_template("13700000001")["result"] == 1008
    assert sim_caller.send_template("13700000001")["result"] == 0


def test_scripted_http_status_delivers_nothing(
    simulator: SimulatorServer, sim_caller: SignedCaller
) -> None:
    simulator.control.script(MOBILE, [{"http": 503}, {"http": 502}])
    rnd, body = sim_caller.signed(
        {
            "tel": {"nationcode": "86", "mobile": MOBILE},
            "tpl_id": 19,
            "params": ["验证码", "1234", "4"],
            "sign": "腾讯云",
        },
        f"&mobile={MOBILE}",
    )
    assert sim_caller.post("sendsms", body, rnd=rnd).status_code == 503
    assert sim_caller.post("sendsms", body, rnd=rnd).status_code == 502
    assert simulator.control.inbox() == []
    assert [r.http_status for r in simulator.control.requests()] == [503, 502]


def test_drop_cuts_the_connection_before_processing(
    simulator: SimulatorServer, sim_caller: SignedCaller
) -> None:
    simulator.control.script(MOBILE, ["drop"])
    with pytest.raises(requests.ConnectionError):
        sim_caller.send_template()
    assert simulator.control.inbox() == []
    [record] = simulator.control.requests()
    assert (record.http_status, record.fault) == (None, "scripted: drop")
    assert sim_caller.send_template()["result"] == 0  # the retry is safe and goes out once
    assert len(simulator.control.inbox()) == 1


def test_drop_after_delivers_then_cuts_the_connection(
    simulator: SimulatorServer, sim_caller: SignedCaller
) -> None:
    simulator.control.script(MOBILE, ["drop_after"])
    with pytest.raises(requests.ConnectionError):
        sim_caller.send_template()
    [delivered] = simulator.control.inbox()
    [record] = simulator.control.requests()
    assert record.http_status is None and record.sids == (delivered.sid,)
    # The client cannot know, retries, and the handset gets it twice.
    assert sim_caller.send_template()["result"] == 0
    assert len(simulator.control.inbox()) == 2


def test_slow_delivers_then_answers_after_the_read_timeout(
    simulator: SimulatorServer, sim_caller: SignedCaller
) -> None:
    simulator.control.script(MOBILE, [{"slow": 5}])
    sim_caller.timeout = 0.5
    with pytest.raises(requests.ReadTimeout):
        sim_caller.send_template()
    assert len(simulator.control.inbox()) == 1


def test_scripted_slow_that_the_client_waits_for_still_answers(
    simulator: SimulatorServer, sim_caller: SignedCaller
) -> None:
    simulator.control.script(MOBILE, [{"slow": 0.2}])
    assert sim_caller.send_template()["result"] == 0


def test_group_script_fails_one_detail_entry(
    simulator: SimulatorServer, sim_caller: SignedCaller
) -> None:
    simulator.control.script("13700000002", [1008])
    answer = sim_caller.send_group(["13700000001", "13700000002", "13700000003"])
    assert answer["result"] == 0
    assert [d["result"] for d in answer["detail"]] == [0, 1008, 0]
    assert len(simulator.control.inbox()) == 2


def test_group_script_drop_cuts_the_whole_request(
    simulator: SimulatorServer, sim_caller: SignedCaller
) -> None:
    simulator.control.script("13700000003", ["ok", "drop"])
    assert sim_caller.send_group(["13700000001", "13700000003"])["result"] == 0
    with pytest.raises(requests.ConnectionError):
        sim_caller.send_group(["13700000001", "13700000003"])
    assert len(simulator.control.inbox()) == 2


@pytest.mark.parametrize(("rate", "result"), [("1008", 1008), ("60008", 60008), ("1007", 1007)])
def test_random_result_codes(
    simulator: SimulatorServer, sim_caller: SignedCaller, rate: str, result: int
) -> None:
    simulator.control.set_faults({rate: 1.0})
    assert [sim_caller.send_template()["result"] for _ in range(3)] == [result] * 3
    assert simulator.control.inbox() == []
    simulator.control.set_faults({})
    assert sim_caller.send_template()["result"] == 0


@pytest.mark.parametrize("status", [502, 503])
def test_random_http_errors(
    simulator: SimulatorServer, sim_caller: SignedCaller, status: int
) -> None:
    simulator.control.set_faults({f"http_{status}": 1.0})
    rnd, body = sim_caller.signed(
        {
            "tel": {"nationcode": "86", "mobile": MOBILE},
            "tpl_id": 19,
            "params": ["验证码", "1234", "4"],
            "sign": "腾讯云",
        },
        f"&mobile={MOBILE}",
    )
    response = sim_caller.post("sendsms", body, rnd=rnd)
    assert response.status_code == status
    assert not response.headers["content-type"].startswith("application/json")


@pytest.mark.parametrize(("fault", "delivered"), [("drop", 0), ("drop_after", 1)])
def test_random_drops(
    simulator: SimulatorServer, sim_caller: SignedCaller, fault: str, delivered: int
) -> None:
    simulator.control.set_faults({fault: 1.0})
    with pytest.raises(requests.ConnectionError):
        sim_caller.send_template()
    assert len(simulator.control.inbox()) == delivered


def test_random_slow(simulator: SimulatorServer, sim_caller: SignedCaller) -> None:
    simulator.control.set_faults({"slow": 1.0}, slow_seconds=5)
    sim_caller.timeout = 0.5
    with pytest.raises(requests.ReadTimeout):
        sim_caller.send_template()
    assert len(simulator.control.inbox()) == 1


def test_random_rates_mix_in_the_right_kinds(
    simulator: SimulatorServer, sim_caller: SignedCaller
) -> None:
    simulator.control.set_faults({"1008": 0.5, "60008": 0.5})
    results = {sim_caller.send_template()["result"] for _ in range(40)}
    assert results <= {1008, 60008} and results  # never delivered, never another code
    assert simulator.control.inbox() == []


def test_latency_settings_are_applied_and_reported(
    simulator: SimulatorServer, sim_caller: SignedCaller
) -> None:
    settings = simulator.control.set_faults(latency_ms=20, jitter_ms=10)
    assert (settings["latency_ms"], settings["jitter_ms"]) == (20.0, 10.0)
    assert sim_caller.send_template()["result"] == 0
    assert sim_caller.call("pullstatus", {"type": 0, "max": 1})["result"] == 0


def test_scripts_take_precedence_over_random_faults(
    simulator: SimulatorServer, sim_caller: SignedCaller
) -> None:
    simulator.control.set_faults({"1008": 1.0})
    simulator.control.script(MOBILE, ["ok"])
    assert sim_caller.send_template()["result"] == 0
    assert sim_caller.send_template()["result"] == 1008


def test_faults_do_not_hide_authentication_errors(
    simulator: SimulatorServer, sim_caller: SignedCaller
) -> None:
    simulator.control.script(MOBILE, [1008])
    assert sim_caller.send_template(time=sim_caller.now() - 3600)["result"] == 1021
    assert sim_caller.send_template()["result"] == 1008  # the step was still waiting


@pytest.mark.parametrize(
    "steps",
    [
        ["sometimes"],
        [{"http": 99}],
        [{"slow": -1}],
        [True],
        ["1008"],
        [-1],
        [{"http": 503, "slow": 1}],
    ],
)
def test_bad_scripts_are_refused(simulator: SimulatorServer, steps: object) -> None:
    with pytest.raises(SimulatorControlError, match="HTTP 400"):
        simulator.control.script(MOBILE, steps)  # type: ignore[arg-type]


def test_steps_must_be_a_list(simulator: SimulatorServer) -> None:
    response = requests.post(
        f"{simulator.url}/_sim/script", json={"mobile": MOBILE, "steps": 1008}, timeout=10
    )
    assert response.status_code == 400 and "list" in response.json()["error"]


@pytest.mark.parametrize(
    "rates", [{"1009": 0.1}, {"1008": 1.5}, {"1008": 0.6, "1007": 0.6}, {"drop": "often"}]
)
def test_bad_fault_rates_are_refused(simulator: SimulatorServer, rates: dict[str, object]) -> None:
    with pytest.raises(SimulatorControlError, match="HTTP 400"):
        simulator.control.set_faults(rates)  # type: ignore[arg-type]
