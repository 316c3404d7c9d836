"""Successful answers of every API, over real HTTP, signed by hand."""

from __future__ import annotations

import json
import re

import pytest

from tests.fixtures.simulator import (
    CODE_PARAMS,
    LONG_PARAMS,
    MOBILE,
    SIGN,
    TPL_CODE,
    TPL_LONG,
    SignedCaller,
    beijing,
    hand_sig,
)
from worker.simulator.server import SimulatorServer

SID = re.compile(r"8:[A-Za-z0-9]{20}\d{8}")


def test_template_send_is_delivered_billed_and_logged(
    simulator: SimulatorServer, sim_caller: SignedCaller
) -> None:
    answer = sim_caller.send_template(ext="order-42")

    assert answer["result"] == 0 and answer["errmsg"] == "OK"
    assert answer["ext"] == "order-42" and answer["fee"] == 1
    assert SID.fullmatch(answer["sid"])
    [message] = simulator.control.inbox()
    assert (message.nationcode, message.mobile, message.sid, message.fee) == (
        "86",
        MOBILE,
        answer["sid"],
        1,
    )
    assert message.text == "【腾讯云】验证码为1234，请于4分钟内填写。如非本人操作，请忽略本短信。"
    [record] = simulator.control.requests()
    assert (record.api, record.sig_valid, record.result, record.sids) == (
        "sendsms",
        True,
        0,
        (answer["sid"],),
    )


def test_every_send_gets_its_own_sid(sim_caller: SignedCaller) -> None:
    sids = {sim_caller.send_template(mobile=f"1370000{i:04d}")["sid"] for i in range(20)}
    assert len(sids) == 20


def test_long_template_bills_two_segments(sim_caller: SignedCaller) -> None:
    answer = sim_caller.send_template(tpl_id=TPL_LONG, params=LONG_PARAMS)
    assert (answer["result"], answer["fee"]) == (0, 2)


def test_sign_left_out_uses_the_default_sign(
    simulator: SimulatorServer, sim_caller: SignedCaller
) -> None:
    assert sim_caller.send_template(tpl_id=TPL_CODE, params=CODE_PARAMS, sign=None)["result"] == 0
    assert simulator.control.inbox()[0].text.startswith(f"【{SIGN}】您的验证码是123456")


def test_free_text_matching_a_template_goes_out_as_sent(
    simulator: SimulatorServer, sim_caller: SignedCaller
) -> None:
    msg = "【腾讯云】您的验证码是654321，5分钟内有效，请勿泄露。"
    answer = sim_caller.send_text(msg)
    assert (answer["result"], answer["fee"]) == (0, 1)
    assert simulator.control.inbox()[0].text == msg


def test_marketing_free_text_as_type_1(
    sim_caller: SignedCaller, simulator: SimulatorServer
) -> None:
    sim_caller.follow(simulator.control.set_clock(now=beijing(2024, 5, 1, 12)))
    msg = "【腾讯云】亲爱的李先生，您的会员积分即将到期，本周末全场9折，欢迎选购。拒收请回复R"
    assert sim_caller.send_text(msg, marketing=True)["result"] == 0
    assert sim_caller.send_text(msg, marketing=False)["result"] == 1014


def test_international_send_with_e164_tel(
    simulator: SimulatorServer, sim_caller: SignedCaller
) -> None:
    answer = sim_caller.send_international("+447911123456")
    assert answer["result"] == 0 and answer["nationcode"] == "44" and answer["ext"] == "i"
    [message] = simulator.control.inbox()
    assert (message.nationcode, message.mobile) == ("44", "7911123456")
    assert message.text == "Your verification code is 123456, valid for 5 minutes."


def test_international_sign_uses_square_brackets(
    simulator: SimulatorServer, sim_caller: SignedCaller
) -> None:
    assert sim_caller.send_international("+14155550123", sign=SIGN)["result"] == 0
    assert simulator.control.inbox()[0].text.startswith("[腾讯云]Your verification code")


def test_international_number_through_sendsms(sim_caller: SignedCaller) -> None:
    answer = sim_caller.send_template("4155550123", 100004, CODE_PARAMS, nationcode="1", sign=None)
    assert answer["result"] == 0 and "nationcode" not in answer


def test_group_send_answers_each_number(
    simulator: SimulatorServer, sim_caller: SignedCaller
) -> None:
    mobiles = ["13700000001", "13700000002", "13700000003"]
    answer = sim_caller.send_group(mobiles, ext="batch-1")

    assert (answer["result"], answer["errmsg"], answer["ext"]) == (0, "OK", "batch-1")
    assert [(d["mobile"], d["nationcode"], d["result"], d["fee"]) for d in answer["detail"]] == [
        (m, "86", 0, 1) for m in mobiles
    ]
    assert len({d["sid"] for d in answer["detail"]}) == 3
    assert sorted(m.mobile for m in simulator.control.inbox()) == mobiles


def test_group_nationcode_as_a_json_number_is_accepted(sim_caller: SignedCaller) -> None:
    # The official Python SDK sends a group's nationcode unquoted.
    body = {
        "tel": [{"nationcode": 86, "mobile": MOBILE}],
        "tpl_id": 19,
        "params": ["验证码", "1234", "4"],
        "sign": SIGN,
    }
    assert sim_caller.call("sendmultisms2", body, f"&mobile={MOBILE}")["detail"][0]["result"] == 0


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Content-Type": "application/x-www-form-urlencoded"},
        {"Conetent-Type": "application/json"},
        {"Content-Type": "text/plain"},
    ],
)
def test_body_is_json_whatever_the_content_type(
    sim_caller: SignedCaller, headers: dict[str, str]
) -> None:
    rnd, body = sim_caller.signed(
        {
            "tel": {"nationcode": "86", "mobile": MOBILE},
            "tpl_id": 19,
            "params": ["验证码", "1234", "4"],
            "sign": SIGN,
        },
        f"&mobile={MOBILE}",
    )
    response = sim_caller.post("sendsms", json.dumps(body).encode(), rnd=rnd, headers=headers)
    assert response.status_code == 200 and response.json()["result"] == 0
    assert response.headers["content-type"].startswith("application/json")


def test_documented_ten_digit_random_is_accepted(sim_caller: SignedCaller) -> None:
    rnd = "7226249334"
    now = sim_caller.now()
    body = {
        "tel": {"nationcode": "86", "mobile": MOBILE},
        "tpl_id": 19,
        "params": ["验证码", "1234", "4"],
        "sign": SIGN,
        "time": now,
        "sig": hand_sig(sim_caller.appkey, rnd, now, f"&mobile={MOBILE}"),
    }
    assert sim_caller.post("sendsms", body, rnd=rnd).json()["result"] == 0


def test_second_account_from_config_signs_with_its_own_key() -> None:
    from worker.simulator.config import config_from_mapping

    other_key = "0123456789abcdef0123456789abcdef"
    config = config_from_mapping({"accounts": [{"sdkappid": "1400000001", "appkey": other_key}]})
    with SimulatorServer(config) as server:
        caller = SignedCaller(server.url, sdkappid="1400000001", appkey=other_key)
        assert caller.send_template()["result"] == 0
        assert SignedCaller(server.url, sdkappid="1400000001").send_template()["result"] == 1001
        assert SignedCaller(server.url).send_template()["result"] == 0  # the default one stays
