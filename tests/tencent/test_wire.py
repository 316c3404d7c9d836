"""Request bodies as the gateway expects them, and lenient but safe response parsing."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.tencent import wire
from worker.tencent.types import (
    DeliveryReport,
    Phone,
    Reply,
    SendResult,
    Template,
    Text,
)
from worker.tencent.wire import MalformedResponse

CN = Phone("86", "13788888888")
US = Phone("1", "2015550123")


def decoded(body: wire.Body) -> object:
    return json.loads(wire.encode(body))


def test_encode_is_compact_utf8_without_escapes() -> None:
    raw = wire.encode({"msg": "【腾讯云】验证码"})
    assert raw == '{"msg":"【腾讯云】验证码"}'.encode()


def test_sendsms_template_body() -> None:
    body = wire.sendsms_body(CN, Template(1234, ("5678", "5"), "腾讯云"), sig="s", time=99)
    assert decoded(body) == {
        "tel": {"nationcode": "86", "mobile": "13788888888"},
        "tpl_id": 1234,
        "params": ["5678", "5"],
        "sign": "腾讯云",
        "sig": "s",
        "time": 99,
        "extend": "",
        "ext": "",
    }


def test_sign_is_left_out_when_not_given() -> None:
    body = wire.sendsms_body(CN, Template(7), sig="s", time=1)
    assert "sign" not in body
    assert body["params"] == []


def test_text_bodies_carry_type_and_msg() -> None:
    normal = wire.sendsms_body(CN, Text("【腾讯云】hello"), sig="s", time=1, ext="e", extend="12")
    assert (normal["type"], normal["msg"], normal["ext"], normal["extend"]) == (
        0,
        "【腾讯云】hello",
        "e",
        "12",
    )
    assert "tpl_id" not in normal
    marketing = wire.sendsms_body(CN, Text("sale", marketing=True), sig="s", time=1)
    assert marketing["type"] == 1


def test_sendisms_tel_is_the_e164_string() -> None:
    body = wire.sendisms_body(US, Template(1, ("x",)), sig="s", time=1)
    assert body["tel"] == "+12015550123"


def test_sendmultisms2_tel_is_a_list_in_order() -> None:
    other = Phone("86", "13788888889")
    body = wire.sendmultisms2_body([CN, other], Template(1), sig="s", time=1)
    assert body["tel"] == [
        {"nationcode": "86", "mobile": "13788888888"},
        {"nationcode": "86", "mobile": "13788888889"},
    ]


def test_pull_bodies() -> None:
    assert wire.pullstatus_body(sig="s", time=5, replies=True, max_items=10) == {
        "sig": "s",
        "time": 5,
        "type": 1,
        "max": 10,
    }
    mobile = wire.pullstatus4mobile_body(
        CN, sig="s", time=5, begin_time=100, end_time=200, replies=False, max_items=100
    )
    assert mobile == {
        "sig": "s",
        "time": 5,
        "type": 0,
        "max": 100,
        "begin_time": 100,
        "end_time": 200,
        "nationcode": "86",
        "mobile": "13788888888",
    }
    stats = wire.pullsendstatus_body(sig="s", time=5, begin_date=2024010100, end_date=2024010123)
    assert stats == {"sig": "s", "time": 5, "begin_date": 2024010100, "end_date": 2024010123}


def test_parse_single_send() -> None:
    body = b'{"result":0,"errmsg":"OK","ext":"x","fee":2,"sid":"8:abc"}'
    assert wire.parse_send(body) == SendResult(0, "OK", "x", 2, "8:abc")


def test_parse_sendisms_keeps_nationcode() -> None:
    body = '{"result":0,"errmsg":"OK","ext":"","nationcode":"1","fee":1,"sid":"8:x"}'
    assert wire.parse_send(body).nationcode == "1"


def test_parse_failure_without_optional_fields() -> None:
    refused = wire.parse_send(b'{"result":1016,"errmsg":"bad number"}')
    assert refused == SendResult(1016, "bad number")


def test_numbers_as_strings_and_msg_for_errmsg() -> None:
    result = wire.parse_send(b'{"result":"1024","msg":"hourly limit","fee":"0","ext":null}')
    assert (result.result, result.errmsg, result.fee, result.ext) == (1024, "hourly limit", 0, "")


def test_parse_group_detail() -> None:
    body = json.dumps({
        "result": 0, "errmsg": "OK", "ext": "",
        "detail": [
            {"result": 0, "errmsg": "OK", "mobile": "13788888888", "nationcode": "86",
             "sid": "8:a", "fee": 1},
            {"result": 1016, "errmsg": "bad", "mobile": "13788888889", "nationcode": "86"},
        ],
    })  # fmt: skip
    group = wire.parse_group(body)
    assert group.result == 0
    assert [d.result for d in group.detail] == [0, 1016]
    assert group.detail[0] == SendResult(0, "OK", "", 1, "8:a", "86", "13788888888")
    assert group.detail[1].fee == 0 and group.detail[1].sid == ""


@pytest.mark.parametrize("detail", ["", ',"detail":null', ',"detail":[]'])
def test_parse_group_refused_without_detail(detail: str) -> None:
    group = wire.parse_group(f'{{"result":1046,"errmsg":"too many"{detail}}}')
    assert (group.result, group.errmsg, group.detail) == (1046, "too many", ())


def test_parse_group_detail_item_needs_a_result() -> None:
    with pytest.raises(MalformedResponse, match="result"):
        wire.parse_group(b'{"result":0,"detail":[{"mobile":"1"}]}')


def test_parse_pull_reports() -> None:
    body = json.dumps({
        "result": 0, "errmsg": "ok", "count": 1,
        "data": [{
            "user_receive_time": "2024-01-02 03:04:05", "nationcode": "86",
            "mobile": "13788888888", "report_status": "SUCCESS", "errmsg": "DELIVRD",
            "description": "用户短信送达成功", "sid": "8:a",
        }],
    })  # fmt: skip
    pulled = wire.parse_pull(body, replies=False)
    assert pulled.count == 1
    assert pulled.reports[0] == DeliveryReport(
        "2024-01-02 03:04:05", "86", "13788888888", "SUCCESS", "DELIVRD", "用户短信送达成功", "8:a"
    )


def test_parse_pull_replies() -> None:
    body = json.dumps({
        "result": 0, "errmsg": "ok", "count": 1,
        "data": [{"extend": "", "mobile": "13788888888", "nationcode": "86", "sign": "腾讯云",
                  "text": "TD", "time": "1457336869"}],
    })  # fmt: skip
    pulled = wire.parse_pull(body, replies=True)
    assert pulled.replies == (Reply("", "13788888888", "86", "腾讯云", "TD", 1457336869),)
    assert pulled.reports == ()


def test_parse_pull_empty_and_failed() -> None:
    assert wire.parse_pull(b'{"result":0,"errmsg":"ok","count":0}', replies=False).count == 0
    assert (
        wire.parse_pull(b'{"result":1006,"msg":"no permission","data":null}', replies=True).errmsg
        == "no permission"
    )


def test_parse_send_stats() -> None:
    body = (
        b'{"result":0,"msg":"OK","data":{"request":100,"success":"98","bill_number":120,'
        b'"status":7,"note":"x"}}'
    )
    stats = wire.parse_send_stats(body)
    assert (stats.result, stats.errmsg, stats.request, stats.success, stats.bill_number) == (
        0,
        "OK",
        100,
        98,
        120,
    )
    assert stats.extra == {"status": 7}


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"<html>502</html>", "not JSON"),
        (b"", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "not an object"),
        (b'"ok"', "not an object"),
        (b'{"errmsg":"OK"}', "no result"),
        (b'{"result":null}', "result is not an integer"),
        (b'{"result":"OK"}', "result is not an integer"),
        (b'{"result":true}', "result is not an integer"),
        (b'{"result":0,"fee":"many"}', "fee is not an integer"),
    ],
)
def test_malformed_bodies(body: bytes, problem: str) -> None:
    with pytest.raises(MalformedResponse, match=problem):
        wire.parse_send(body)
    assert issubclass(MalformedResponse, ValueError)


def test_malformed_nested_shapes() -> None:
    with pytest.raises(MalformedResponse, match="detail"):
        wire.parse_group(b'{"result":0,"detail":{"a":1}}')
    with pytest.raises(MalformedResponse, match="data"):
        wire.parse_pull(b'{"result":0,"data":[1]}', replies=False)
    with pytest.raises(MalformedResponse, match="data"):
        wire.parse_send_stats(b'{"result":0,"data":[1]}')


@given(
    st.integers(min_value=-(2**31), max_value=2**31),
    st.text(max_size=30),
    st.integers(min_value=0, max_value=20),
    st.booleans(),
)
def test_parse_send_round_trips_whatever_the_number_spelling(
    result: int, errmsg: str, fee: int, as_strings: bool
) -> None:
    def spell(n: int) -> object:
        return str(n) if as_strings else n

    body = json.dumps({"result": spell(result), "errmsg": errmsg, "fee": spell(fee)})
    assert wire.parse_send(body) == SendResult(result, errmsg, fee=fee)


@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=10,
))  # fmt: skip
def test_arbitrary_json_parses_or_is_malformed(value: object) -> None:
    body = json.dumps(value)
    for parse in (
        wire.parse_send,
        wire.parse_group,
        wire.parse_send_stats,
        lambda b: wire.parse_pull(b, replies=False),
        lambda b: wire.parse_pull(b, replies=True),
    ):
        # Anything but MalformedResponse (a TypeError, a KeyError) fails the test.
        with contextlib.suppress(MalformedResponse):
            parse(body)
