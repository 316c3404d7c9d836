"""Refusals about the content: template, sign, variables, numbers, group, length, hours;
and the order the gateway checks in."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures.simulator import (
    CODE_PARAMS,
    MARKETING_PARAMS,
    MOBILE,
    TPL_CODE,
    TPL_INTERNATIONAL,
    TPL_MARKETING,
    TPL_PENDING,
    SignedCaller,
    beijing,
    hand_sig,
    result_of,
    template_body,
)
from worker.simulator.config import config_from_mapping
from worker.simulator.server import SimulatorServer
from worker.tencent.codes import code_info

# --- 1014, 1012, 1036/1038/1048: content -------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"tpl_id": 424242},
        {"tpl_id": TPL_PENDING, "params": ["x"]},
        {"params": ["验证码", "1234"]},
        {"params": ["验证码", "1234", "4", "5"]},
        {"params": []},
        {"tpl_id": TPL_INTERNATIONAL, "params": CODE_PARAMS},
    ],
    ids=["unknown", "pending", "too-few", "too-many", "none", "international-to-mainland"],
)
def test_template_problems_are_1014(sim_caller: SignedCaller, overrides: dict[str, Any]) -> None:
    assert result_of(sim_caller, template_body(**overrides)) == 1014


def test_mainland_template_to_a_foreign_number_is_1014(sim_caller: SignedCaller) -> None:
    answer = sim_caller.send_template("4155550123", nationcode="1")
    assert answer["result"] == 1014


@pytest.mark.parametrize(
    "msg",
    [
        "【腾讯云】您的验证码是1234，请勿泄露。",
        "【腾讯云】随便写点什么",
        "【腾讯云】您的账户ab已开通。",
    ],
    ids=["altered", "free", "pending-template"],
)
def test_free_text_not_matching_an_approved_template_is_1014(
    sim_caller: SignedCaller, msg: str
) -> None:
    assert sim_caller.send_text(msg)["result"] == 1014


@pytest.mark.parametrize("sign", ["测试签名", "不存在的签名"])
def test_unapproved_or_unknown_sign_is_1012(sim_caller: SignedCaller, sign: str) -> None:
    assert result_of(sim_caller, template_body(sign=sign)) == 1012


def test_free_text_without_an_approved_sign_is_1012(sim_caller: SignedCaller) -> None:
    assert sim_caller.send_text("您的验证码是654321，5分钟内有效，请勿泄露。")["result"] == 1012
    assert (
        sim_caller.send_text("【测试签名】您的验证码是654321，5分钟内有效，请勿泄露。")["result"]
        == 1012
    )
    # The sign may also close a mainland message.
    assert (
        sim_caller.send_text("您的验证码是654321，5分钟内有效，请勿泄露。【腾讯云】")["result"] == 0
    )


@pytest.mark.parametrize(
    ("tpl_id", "params", "code"),
    [
        (19, ["验证码", "1234567890123", "4"], 1036),
        (19, ["验证码", "123456789012", "4"], 0),
        (TPL_CODE, ["1234567", "5"], 1038),
        (TPL_CODE, ["12345a", "5"], 1038),
        (TPL_CODE, ["", "5"], 0),
        (TPL_CODE, ["123456", "5"], 0),
        (19, ["验证码", "http://a.cn", "4"], 1048),
        (19, ["见www.qq", "1", "4"], 1048),
        (19, ["点击t.cn/x", "1", "4"], 1048),
        (19, ["验证码", "1.5", "4"], 0),
    ],
)
def test_variable_rules(
    sim_caller: SignedCaller, tpl_id: int, params: list[str], code: int
) -> None:
    assert result_of(sim_caller, template_body(tpl_id=tpl_id, params=params)) == code


def test_extend_without_permission_is_1006(sim_caller: SignedCaller) -> None:
    assert result_of(sim_caller, template_body(extend="01")) == 1006


# --- numbers, groups, length, hours ----------------------------------------------------------


@pytest.mark.parametrize("mobile", ["12345678901", "1378888888", "137888888889", "1378888888a", ""])
def test_invalid_mainland_number_is_1016(sim_caller: SignedCaller, mobile: str) -> None:
    assert result_of(sim_caller, template_body(mobile), f"&mobile={mobile}") == 1016


def test_invalid_international_number_is_1016(sim_caller: SignedCaller) -> None:
    assert sim_caller.send_international("+4412")["result"] == 1016
    assert sim_caller.send_international("447911123456")["result"] == 1016
    assert (
        sim_caller.send_template("415555012", 100004, CODE_PARAMS, nationcode="1", sign=None)[
            "result"
        ]
        == 1016
    )


def test_group_with_a_bad_number_fails_only_that_number(
    simulator: SimulatorServer, sim_caller: SignedCaller
) -> None:
    answer = sim_caller.send_group(["13700000001", "12345678901", "13700000003"])
    assert answer["result"] == 0
    assert [(d["mobile"], d["result"]) for d in answer["detail"]] == [
        ("13700000001", 0),
        ("12345678901", 1016),
        ("13700000003", 0),
    ]
    failed = answer["detail"][1]
    assert "sid" not in failed and "fee" not in failed
    assert failed["errmsg"].startswith(code_info(1016).meaning)
    assert sorted(m.mobile for m in simulator.control.inbox()) == ["13700000001", "13700000003"]


def test_group_over_200_numbers_is_1046_without_detail(sim_caller: SignedCaller) -> None:
    answer = sim_caller.send_group([f"1370000{i:04d}" for i in range(201)])
    assert answer == {"result": 1046, "errmsg": answer["errmsg"], "ext": ""}
    assert sim_caller.send_group([f"1370000{i:04d}" for i in range(200)])["result"] == 0


def test_mixed_group_is_1034(sim_caller: SignedCaller) -> None:
    answer = sim_caller.send_group(["13700000001", ("1", "4155550123")])
    assert answer["result"] == 1034 and "detail" not in answer


def test_too_long_is_1017() -> None:
    # The built-in templates cannot reach 450 characters: use two that can.
    config = config_from_mapping(
        {
            "templates": [
                {"id": 7, "text": "通" * 433 + "{1}"},
                {"id": 8, "text": "通" * 434 + "{1}"},
            ]
        }
    )
    with SimulatorServer(config) as server:
        caller = SignedCaller(server.url)
        # 【腾讯云】 is 5 characters: 5 + 433 + 12 = 450 is allowed, 451 is not.
        assert caller.send_template(tpl_id=7, params=["一" * 12]) == {
            "result": 0,
            "errmsg": "OK",
            "ext": "",
            "fee": 7,
            "sid": server.control.inbox()[0].sid,
        }
        assert len(server.control.inbox()[0].text) == 450
        assert caller.send_template(tpl_id=8, params=["一" * 12])["result"] == 1017
        assert caller.send_template(tpl_id=8, params=["一" * 11])["result"] == 0


@pytest.mark.parametrize(
    ("hour", "minute", "code"),
    [
        (7, 59, 1029),
        (8, 0, 0),
        (12, 0, 0),
        (21, 59, 0),
        (22, 0, 1029),
        (23, 30, 1029),
        (3, 0, 1029),
    ],
)
def test_marketing_only_between_8_and_22_beijing_time(
    simulator: SimulatorServer, sim_caller: SignedCaller, hour: int, minute: int, code: int
) -> None:
    sim_caller.follow(simulator.control.set_clock(now=beijing(2024, 5, 1, hour, minute)))
    answer = sim_caller.send_template(tpl_id=TPL_MARKETING, params=MARKETING_PARAMS)
    assert answer["result"] == code
    assert sim_caller.send_template()["result"] == 0  # notifications go out at any hour


# --- order ---------------------------------------------------------------------------------------


def test_checks_come_in_the_gateways_order(sim_caller: SignedCaller) -> None:
    now = sim_caller.now()
    stale = now - 3600
    body = template_body(tpl_id=424242, sign="测试签名")
    # A shape problem outranks an unknown account.
    assert result_of(sim_caller, {**body, "tpl_id": "x"}, sdkappid="1") == 1004
    # An unknown account outranks a missing sig.
    rnd = "123456"
    unsigned = {**body, "time": now}
    assert sim_caller.post("sendsms", unsigned, rnd=rnd, sdkappid="1").json()["result"] == 1019
    # A missing sig outranks a stale time; a bad sig outranks it too.
    assert sim_caller.post("sendsms", {**body, "time": stale}, rnd=rnd).json()["result"] == 1003
    assert (
        sim_caller.post("sendsms", {**body, "time": stale, "sig": "0" * 64}, rnd=rnd).json()[
            "result"
        ]
        == 1001
    )
    # A stale time outranks the template; the template outranks the sign.
    signed_stale = {
        **body,
        "time": stale,
        "sig": hand_sig(sim_caller.appkey, rnd, stale, f"&mobile={MOBILE}"),
    }
    assert sim_caller.post("sendsms", signed_stale, rnd=rnd).json()["result"] == 1021
    assert result_of(sim_caller, body) == 1014
    # The sign outranks a variable; a variable outranks the number.
    assert (
        result_of(sim_caller, template_body(sign="测试签名", params=["x" * 13, "1", "4"])) == 1012
    )
    bad_number = template_body("12345678901", params=["x" * 13, "1", "4"])
    assert result_of(sim_caller, bad_number, "&mobile=12345678901") == 1036
