"""The control API and its Python client: what they show, and what reset clears."""

from __future__ import annotations

import pytest
import requests

from tests.fixtures.simulator import MOBILE, CallbackReceiver, SignedCaller
from worker.simulator.control import SimulatorControl, SimulatorControlError
from worker.simulator.server import SimulatorServer, SimulatorServerError


def test_request_log_records_every_request(
    simulator: SimulatorServer, sim_caller: SignedCaller
) -> None:
    ok = sim_caller.send_template()
    sim_caller.send_template(sign="测试签名")
    sim_caller.call(
        "sendsms", {"tel": {"nationcode": "86", "mobile": MOBILE}, "tpl_id": 19}, appkey="0" * 32
    )
    group = sim_caller.send_group(["13700000001", "12345678901"])
    sim_caller.pull()

    records = simulator.control.requests()
    assert [(r.api, r.result, r.sig_valid) for r in records] == [
        ("sendsms", 0, True),
        ("sendsms", 1012, True),
        ("sendsms", 1001, False),
        ("sendmultisms2", 0, True),
        ("pullstatus", 0, True),
    ]
    first = records[0]
    assert (first.sdkappid, first.numbers, first.http_status) == (
        "1400000000",
        ("+8613788888888",),
        200,
    )
    assert first.random.isdigit() and isinstance(first.time, int)
    assert first.sids == (ok["sid"],) and first.results[0].fee == 1
    assert [(r.mobile, r.result) for r in records[3].results] == [
        ("13700000001", 0),
        ("12345678901", 1016),
    ]
    assert records[3].sids == (group["detail"][0]["sid"],)
    assert records[0].received_at.endswith("+00:00")


def test_inbox_can_be_filtered_by_number(
    simulator: SimulatorServer, sim_caller: SignedCaller
) -> None:
    sim_caller.send_template(MOBILE)
    sim_caller.send_template("13700000001")
    assert [m.mobile for m in simulator.control.inbox(mobile="13700000001")] == ["13700000001"]
    assert len(simulator.control.inbox()) == 2


def test_reset_clears_everything(
    simulator: SimulatorServer, sim_caller: SignedCaller, callback_receiver: CallbackReceiver
) -> None:
    control = simulator.control
    control.set_reports(callback_receiver.url)
    sim_caller.send_template()
    control.script(MOBILE, [1008])
    control.set_faults({"1007": 0.5}, latency_ms=1)
    control.set_clock(offset=120)
    control.reply(MOBILE, "TD")
    control.reset()

    stats = control.stats()
    assert control.inbox() == [] and control.requests() == [] and control.scripts() == {}
    assert (stats["requests"], stats["delivered"], stats["billed_segments"]) == (0, 0, 0)
    assert stats["clock"]["offset"] == 0
    assert stats["reports"]["made"] == 0 and stats["reports"]["pending"] == 0
    assert stats["reports"]["settings"]["callback_url"] is None
    assert control.set_faults()["rates"] == {}
    assert sim_caller.pull()["count"] == 0 and sim_caller.pull(pull_type=1)["count"] == 0
    assert sim_caller.send_stats(2000010100, 2099123123)["data"]["request"] == 0
    assert sim_caller.send_template()["result"] == 0


def test_stats_count_results_and_bills(
    simulator: SimulatorServer, sim_caller: SignedCaller
) -> None:
    sim_caller.send_template()
    sim_caller.send_group(["13700000001", "12345678901"])
    sim_caller.send_template(tpl_id=5)
    stats = simulator.control.stats()
    assert stats["results"] == {"0": 2, "1014": 1, "1016": 1}
    assert (stats["delivered"], stats["billed_segments"]) == (2, 2)
    assert stats["requests_by_api"] == {"sendsms": 2, "sendmultisms2": 1}


def test_scripts_are_listed_until_used(simulator: SimulatorServer) -> None:
    taken = simulator.control.script(MOBILE, [1008, "drop", {"http": 503}, {"slow": 1.5}, "ok"])
    assert taken == [1008, "drop", {"http": 503}, {"slow": 1.5}, "ok"]
    assert simulator.control.scripts() == {MOBILE: taken}
    simulator.control.script(MOBILE, [])
    assert simulator.control.scripts() == {}


def test_clock_can_be_set_shifted_and_restored(simulator: SimulatorServer) -> None:
    assert simulator.control.set_clock(now=1_714_536_000)["beijing"].startswith("2024-05-01 12:00")
    assert simulator.control.set_clock(offset=-60)["offset"] == -60
    assert simulator.control.set_clock()["offset"] == 0


def test_config_shows_no_appkey(simulator: SimulatorServer) -> None:
    config = simulator.control.config()
    assert config["accounts"] == [{"sdkappid": "1400000000", "extend_allowed": False}]
    assert (
        "5f03a35d00ee52a21327ab048186a2c4"
        not in requests.get(simulator.url + "/_sim/config", timeout=10).text
    )
    assert {t["id"] for t in config["templates"]} >= {19, 100001}


def test_control_errors_are_raised_with_the_reason(simulator: SimulatorServer) -> None:
    with pytest.raises(SimulatorControlError, match="mobile"):
        simulator.control._call("POST", "/_sim/script", json={"steps": [1008]})
    with pytest.raises(SimulatorControlError, match="ConnectionError"):
        SimulatorControl("http://127.0.0.1:9", timeout=2).stats()


def test_server_runner_picks_a_port_and_stops() -> None:
    with SimulatorServer() as first, SimulatorServer() as second:
        assert first.port != second.port and first.port > 0
        assert first.url == f"http://127.0.0.1:{first.port}"
        assert first.control.stats()["requests"] == 0
        assert first.running
    assert not first.running
    with pytest.raises(requests.ConnectionError):
        requests.get(first.url + "/_sim/stats", timeout=2)


def test_server_on_a_busy_port_fails_clearly(simulator: SimulatorServer) -> None:
    with pytest.raises(SimulatorServerError, match="did not start"):
        SimulatorServer(port=simulator.port).start()


def test_blacklist_shortcut(sim_caller: SignedCaller) -> None:
    with SimulatorServer(blacklist=["+8613700000002"]) as server:
        caller = SignedCaller(server.url)
        answer = caller.send_group(["13700000001", "13700000002"])
        assert [d["result"] for d in answer["detail"]] == [0, 1015]
