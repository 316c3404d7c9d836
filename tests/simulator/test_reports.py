"""Delivery reports and replies: pulled once, pushed to a callback; send statistics."""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta, timezone

from tests.fixtures.simulator import (
    LONG_PARAMS,
    MOBILE,
    TPL_LONG,
    CallbackReceiver,
    SignedCaller,
    beijing,
    template_body,
)
from worker.simulator.config import config_from_mapping
from worker.simulator.server import SimulatorServer

BEIJING_TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


def test_pullstatus_returns_each_report_once(
    simulator: SimulatorServer, sim_caller: SignedCaller
) -> None:
    sids = [sim_caller.send_template(f"1370000000{i}")["sid"] for i in range(3)]
    assert sim_caller.pull()["count"] == 0  # not due yet: the default delay is 2 s
    assert simulator.control.flush_reports()["released"] == 3

    first = sim_caller.pull(max_items=2)
    second = sim_caller.pull()
    assert (first["result"], first["count"], second["count"]) == (0, 2, 1)
    reports = first["data"] + second["data"]
    assert [r["sid"] for r in reports] == sids
    assert {(r["report_status"], r["errmsg"]) for r in reports} == {("SUCCESS", "DELIVRD")}
    assert all(BEIJING_TIME.fullmatch(r["user_receive_time"]) for r in reports)
    assert set(reports[0]) == {
        "user_receive_time",
        "nationcode",
        "mobile",
        "report_status",
        "errmsg",
        "description",
        "sid",
    }
    assert sim_caller.pull() == {"result": 0, "errmsg": "ok", "count": 0, "data": []}


def test_report_time_is_beijing_time_after_the_delay(
    simulator: SimulatorServer, sim_caller: SignedCaller
) -> None:
    sim_caller.follow(simulator.control.set_clock(now=beijing(2024, 5, 1, 23, 59) + 59))
    sim_caller.send_template()
    simulator.control.flush_reports()
    [report] = sim_caller.pull()["data"]
    [message] = simulator.control.inbox()
    received = datetime.fromtimestamp(message.time + 2.0, timezone(timedelta(hours=8)))
    assert report["user_receive_time"] == received.strftime("%Y-%m-%d %H:%M:%S")
    assert report["user_receive_time"].startswith("2024-05-02 00:00:")


def test_reports_come_out_by_themselves_after_the_delay(
    simulator: SimulatorServer, sim_caller: SignedCaller
) -> None:
    simulator.control.set_reports(delay_seconds=0.05)
    sid = sim_caller.send_template()["sid"]
    pulled: list[dict[str, object]] = []
    deadline = time.monotonic() + 10
    while not pulled and time.monotonic() < deadline:
        pulled = sim_caller.pull()["data"]
        time.sleep(0.02)
    assert [report["sid"] for report in pulled] == [sid]


def test_failed_deliveries_at_the_configured_ratio(
    simulator: SimulatorServer, sim_caller: SignedCaller
) -> None:
    simulator.control.set_reports(fail_ratio=1.0, fail_codes=["UNDELIV", "MX:0012"])
    for i in range(6):
        sim_caller.send_template(f"1370000000{i}")
    simulator.control.flush_reports()
    reports = sim_caller.pull()["data"]
    assert len(reports) == 6
    assert {r["report_status"] for r in reports} == {"FAIL"}
    assert {r["errmsg"] for r in reports} <= {"UNDELIV", "MX:0012"}


def test_pullstatus4mobile_filters_by_number_and_time(
    simulator: SimulatorServer, sim_caller: SignedCaller
) -> None:
    start = beijing(2024, 5, 1, 12)
    sim_caller.follow(simulator.control.set_clock(now=start))
    sim_caller.send_template(MOBILE)
    sim_caller.send_template("13700000001")
    sim_caller.follow(simulator.control.set_clock(now=start + 3600))
    later_sid = sim_caller.send_template(MOBILE)["sid"]
    simulator.control.flush_reports()

    both = sim_caller.pull_mobile(MOBILE, int(start), int(start) + 7200)
    assert both["count"] == 2 and {r["mobile"] for r in both["data"]} == {MOBILE}
    later = sim_caller.pull_mobile(MOBILE, int(start) + 1800, int(start) + 7200)
    assert [r["sid"] for r in later["data"]] == [later_sid]
    assert sim_caller.pull_mobile("13700000002", int(start), int(start) + 7200)["count"] == 0


def test_reports_are_pushed_to_the_callback_in_batches(
    simulator: SimulatorServer, sim_caller: SignedCaller, callback_receiver: CallbackReceiver
) -> None:
    simulator.control.set_reports(callback_receiver.url, batch_size=2)
    sids = [sim_caller.send_template(f"1370000000{i}")["sid"] for i in range(5)]
    flushed = simulator.control.flush_reports()

    assert (flushed["released"], flushed["pushed"], flushed["push_failures"]) == (5, 5, 0)
    assert sorted(r["sid"] for r in callback_receiver.reports) == sorted(sids)
    assert sorted(len(body) for body in callback_receiver.bodies) == [1, 2, 2]
    assert all(isinstance(body, list) for body in callback_receiver.bodies)


def test_a_failing_callback_is_retried(
    simulator: SimulatorServer, sim_caller: SignedCaller, callback_receiver: CallbackReceiver
) -> None:
    callback_receiver.fail_next = 2
    simulator.control.set_reports(callback_receiver.url, retries=3)
    sid = sim_caller.send_template()["sid"]
    assert simulator.control.flush_reports()["pushed"] == 1
    assert [r["sid"] for r in callback_receiver.reports] == [sid]


def test_an_unreachable_callback_never_breaks_the_gateway(
    simulator: SimulatorServer, sim_caller: SignedCaller, callback_receiver: CallbackReceiver
) -> None:
    callback_receiver.fail_next = 100
    simulator.control.set_reports(callback_receiver.url, retries=1)
    sim_caller.send_template()
    flushed = simulator.control.flush_reports()
    assert (flushed["pushed"], flushed["push_failures"]) == (0, 1)
    assert sim_caller.send_template()["result"] == 0
    simulator.control.flush_reports()
    assert len(sim_caller.pull()["data"]) == 2  # pulling still works


def test_replies_are_pushed_as_one_object_and_pulled_as_type_1(
    simulator: SimulatorServer, sim_caller: SignedCaller, callback_receiver: CallbackReceiver
) -> None:
    simulator.control.set_reports(callback_receiver.url)
    answer = simulator.control.reply(MOBILE, "TD")
    assert answer["pushed"] is True
    [pushed] = callback_receiver.replies
    assert (pushed["mobile"], pushed["text"], pushed["nationcode"], pushed["sign"]) == (
        MOBILE,
        "TD",
        "86",
        "腾讯云",
    )
    assert set(pushed) == {"extend", "mobile", "nationcode", "sign", "text", "time"}
    pulled = sim_caller.pull(pull_type=1)
    assert [(r["mobile"], r["text"]) for r in pulled["data"]] == [(MOBILE, "TD")]
    assert sim_caller.pull(pull_type=1)["count"] == 0
    assert sim_caller.pull(pull_type=0)["count"] == 0  # replies are not reports
    now = int(time.time())
    by_number = sim_caller.pull_mobile(MOBILE, now - 60, now + 60, pull_type=1)
    assert by_number["count"] == 1


def test_pullsendstatus_matches_what_was_billed(
    simulator: SimulatorServer, sim_caller: SignedCaller
) -> None:
    sim_caller.follow(simulator.control.set_clock(now=beijing(2024, 5, 1, 12, 30)))
    sim_caller.send_template()  # 1 segment
    sim_caller.send_template(tpl_id=TPL_LONG, params=LONG_PARAMS)  # 2 segments
    sim_caller.send_group(["13700000001", "12345678901", "13700000003"])  # 2 of 3, 1 each
    sim_caller.send_template(tpl_id=424242)  # refused after authentication: a request, no success
    sim_caller.send_template(time=0)  # refused before authentication: not counted
    simulator.control.script(MOBILE, [1008, {"http": 503}])
    sim_caller.send_template()  # a gateway failure: a request, no success
    rnd, body = sim_caller.signed(template_body(), f"&mobile={MOBILE}")
    assert sim_caller.post("sendsms", body, rnd=rnd).status_code == 503  # never reached it

    figures = sim_caller.send_stats(2024050112, 2024050112)
    assert figures == {
        "result": 0,
        "errmsg": "OK",
        "data": {"request": 7, "success": 4, "bill_number": 5},
    }
    billed = sum(message.fee for message in simulator.control.inbox())
    assert figures["data"]["bill_number"] == billed
    assert sim_caller.send_stats(2024050100, 2024050123)["data"] == figures["data"]
    assert sim_caller.send_stats(2024050113, 2024050123)["data"] == {
        "request": 0,
        "success": 0,
        "bill_number": 0,
    }


def test_pullsendstatus_stays_exact_beyond_the_log_bound() -> None:
    with SimulatorServer(config_from_mapping({"log_limit": 10})) as server:
        caller = SignedCaller(server.url)
        for i in range(15):
            assert caller.send_template(f"137000000{i:02d}")["result"] == 0
        assert len(server.control.requests()) == 10

        def beijing_hour(unix: float) -> int:
            return int(time.strftime("%Y%m%d%H", time.gmtime(unix + 8 * 3600)))

        now = time.time()
        figures = caller.send_stats(beijing_hour(now - 3600), beijing_hour(now + 3600))["data"]
        assert figures == {"request": 15, "success": 15, "bill_number": 15}
