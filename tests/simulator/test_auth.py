"""Refusals about the request itself: its shape (1004), account, sig and time, unknown APIs."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.fixtures.simulator import (
    CODE_PARAMS,
    MOBILE,
    NOTICE_PARAMS,
    SIGN,
    TPL_INTERNATIONAL,
    SignedCaller,
    result_of,
    template_body,
)
from worker.simulator.server import SimulatorServer

# --- 1004: the body's shape -------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        b"not json",
        b"[1, 2]",
        b'"text"',
        b"\xff\xfe{}",
        b"null",
        '{"tel": "中文"}'.encode("gb18030"),
    ],
    ids=["empty", "truncated", "text", "array", "string", "not-utf8", "null", "gb18030"],
)
def test_unparseable_body_is_1004(sim_caller: SignedCaller, raw: bytes) -> None:
    response = sim_caller.post("sendsms", raw)
    assert response.status_code == 200
    assert response.json() == {"result": 1004, "errmsg": response.json()["errmsg"], "ext": ""}
    assert response.json()["result"] == 1004


@pytest.mark.parametrize(
    "overrides",
    [
        {"tpl_id": "19"},
        {"tpl_id": True},
        {"params": [1234]},
        {"params": "1234"},
        {"tel": {"nationcode": "86"}},
        {"tel": {"nationcode": "86", "mobile": 13788888888}},
        {"tel": ["86", MOBILE]},
        {"tel": None},
        {"sign": 5},
        {"ext": 1},
        {"extend": "12a"},
        {"sig": 123},
    ],
    ids=lambda o: json.dumps(o, ensure_ascii=False),
)
def test_wrong_types_are_1004(sim_caller: SignedCaller, overrides: dict[str, Any]) -> None:
    assert result_of(sim_caller, template_body(**overrides)) == 1004


def test_missing_time_or_content_is_1004(sim_caller: SignedCaller) -> None:
    rnd, body = sim_caller.signed(template_body(), f"&mobile={MOBILE}")
    del body["time"]
    assert sim_caller.post("sendsms", body, rnd=rnd).json()["result"] == 1004
    body = {"tel": {"nationcode": "86", "mobile": MOBILE}, "sign": SIGN}
    assert result_of(sim_caller, body) == 1004
    assert result_of(sim_caller, template_body(time="1457336869")) == 1004


def test_non_numeric_random_is_1004(sim_caller: SignedCaller) -> None:
    _, body = sim_caller.signed(template_body(), f"&mobile={MOBILE}", rnd="12ab")
    assert sim_caller.post("sendsms", body, rnd="12ab").json()["result"] == 1004


def test_body_over_the_limit_is_1004_not_a_reset(sim_caller: SignedCaller) -> None:
    padding = "x" * (1024 * 1024 + 10)
    rnd, body = sim_caller.signed(template_body(ext=padding), f"&mobile={MOBILE}")
    response = sim_caller.post("sendsms", body, rnd=rnd)
    assert response.status_code == 200 and response.json()["result"] == 1004
    assert "larger than" in response.json()["errmsg"]


@pytest.mark.parametrize(
    ("api", "body"),
    [
        ("pullstatus", {"type": 0, "max": 101}),
        ("pullstatus", {"type": 2, "max": 10}),
        ("pullstatus", {"type": 0}),
        ("pullsendstatus", {"begin_date": 2024010100}),
        ("pullsendstatus", {"begin_date": 2024013225, "end_date": 2024020100}),
        ("pullstatus4mobile", {"type": 0, "max": 10, "begin_time": 0, "end_time": 1}),
    ],
)
def test_pull_and_stats_shapes_are_1004(
    sim_caller: SignedCaller, api: str, body: dict[str, Any]
) -> None:
    answer = sim_caller.call(api, body)
    assert answer["result"] == 1004 and "data" not in answer


# --- 1019, 1003, 1001, 1021: who is calling, and when -----------------------------------------


def test_unknown_or_missing_sdkappid_is_1019(sim_caller: SignedCaller) -> None:
    assert result_of(sim_caller, template_body(), sdkappid="1400999999") == 1019
    rnd, body = sim_caller.signed(template_body(), f"&mobile={MOBILE}")
    response = sim_caller.session.post(
        f"{sim_caller.url}/v5/tlssmssvr/sendsms?random={rnd}", data=json.dumps(body)
    )
    assert response.json()["result"] == 1019


@pytest.mark.parametrize("sig", [None, ""])
def test_missing_sig_is_1003(sim_caller: SignedCaller, sig: str | None) -> None:
    rnd, body = sim_caller.signed(template_body(), f"&mobile={MOBILE}")
    if sig is None:
        del body["sig"]
    else:
        body["sig"] = sig
    assert sim_caller.post("sendsms", body, rnd=rnd).json()["result"] == 1003


@pytest.mark.parametrize(
    "tail",
    ["&mobile=13788888889", "", "&tel=+8613788888888", "&mobile=+8613788888888"],
)
def test_sig_over_the_wrong_string_is_1001(sim_caller: SignedCaller, tail: str) -> None:
    assert result_of(sim_caller, template_body(), tail) == 1001


def test_sig_with_another_key_or_uppercase_is_1001(
    simulator: SimulatorServer, sim_caller: SignedCaller
) -> None:
    assert result_of(sim_caller, template_body(), appkey="0" * 32) == 1001
    rnd, body = sim_caller.signed(template_body(), f"&mobile={MOBILE}")
    body["sig"] = body["sig"].upper()
    assert sim_caller.post("sendsms", body, rnd=rnd).json()["result"] == 1001
    assert [r.sig_valid for r in simulator.control.requests()] == [False, False]
    assert simulator.control.inbox() == []


def test_group_sig_covers_numbers_in_request_order(sim_caller: SignedCaller) -> None:
    body = {
        "tel": [
            {"nationcode": "86", "mobile": "13700000001"},
            {"nationcode": "86", "mobile": "13700000002"},
        ],
        "tpl_id": 19,
        "params": NOTICE_PARAMS,
        "sign": SIGN,
    }
    swapped = sim_caller.call("sendmultisms2", body, "&mobile=13700000002,13700000001")
    assert swapped == {"result": 1001, "errmsg": swapped["errmsg"], "ext": ""}
    spaced = sim_caller.call("sendmultisms2", body, "&mobile=13700000001, 13700000002")
    assert spaced["result"] == 1001
    assert sim_caller.call("sendmultisms2", body, "&mobile=13700000001,13700000002")["result"] == 0


def test_sendisms_sig_covers_the_e164_tel(sim_caller: SignedCaller) -> None:
    body = {"tel": "+447911123456", "tpl_id": TPL_INTERNATIONAL, "params": CODE_PARAMS}
    assert sim_caller.call("sendisms", body, "&mobile=7911123456")["result"] == 1001
    assert sim_caller.call("sendisms", body, "&tel=447911123456")["result"] == 1001
    assert sim_caller.call("sendisms", body, "&tel=+447911123456")["result"] == 0


def test_pull_sig_has_nothing_appended(sim_caller: SignedCaller) -> None:
    assert sim_caller.call("pullstatus", {"type": 0, "max": 10}, "&mobile=")["result"] == 1001
    assert sim_caller.call("pullstatus", {"type": 0, "max": 10})["result"] == 0


@pytest.mark.parametrize(("skew", "code"), [(-601, 1021), (-590, 0), (590, 0), (601, 1021)])
def test_time_more_than_ten_minutes_off_is_1021(
    sim_caller: SignedCaller, skew: int, code: int
) -> None:
    assert result_of(sim_caller, template_body(time=sim_caller.now() + skew)) == code


def test_1021_follows_the_simulator_clock(
    simulator: SimulatorServer, sim_caller: SignedCaller
) -> None:
    simulator.control.set_clock(offset=3600)
    assert result_of(sim_caller, template_body()) == 1021
    sim_caller.clock_offset = 3600
    assert result_of(sim_caller, template_body()) == 0


def test_unknown_api_is_1011(sim_caller: SignedCaller) -> None:
    answer = sim_caller.call("sendvoice", {"tel": {"nationcode": "86", "mobile": MOBILE}})
    assert answer["result"] == 1011


def test_get_on_the_gateway_path_is_405(sim_caller: SignedCaller) -> None:
    assert sim_caller.session.get(f"{sim_caller.url}/v5/tlssmssvr/sendsms").status_code == 405
