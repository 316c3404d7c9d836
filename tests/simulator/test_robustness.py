"""Whatever arrives, the simulator answers like the gateway: a JSON result, never a 500."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fixtures.simulator import MOBILE, SignedCaller
from worker.simulator.server import SimulatorServer

APIS = ["sendsms", "sendisms", "sendmultisms2", "pullstatus", "pullstatus4mobile", "pullsendstatus"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
field_names = st.sampled_from(
    [
        "tel",
        "tpl_id",
        "params",
        "sign",
        "msg",
        "type",
        "sig",
        "time",
        "ext",
        "extend",
        "max",
        "begin_time",
        "end_time",
        "nationcode",
        "mobile",
        "begin_date",
        "end_date",
    ]
)
bodies = st.dictionaries(field_names, json_values, max_size=8)


@pytest.fixture(scope="module")
def server() -> Any:
    with SimulatorServer() as running:
        yield running


def assert_gateway_answer(response: requests.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    assert isinstance(answer["result"], int) and isinstance(answer["errmsg"], str)
    return answer


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(api=st.sampled_from(APIS), body=bodies, signed=st.booleans())
def test_any_json_object_gets_a_gateway_answer(
    server: SimulatorServer, api: str, body: dict[str, Any], signed: bool
) -> None:
    caller = SignedCaller(server.url)
    if signed:
        rnd, body = caller.signed(body, f"&mobile={MOBILE}")
    else:
        rnd = "123456"
    with caller.session:
        answer = assert_gateway_answer(caller.post(api, body, rnd=rnd))
    assert answer["result"] != 0 or api.startswith("pull")


@settings(max_examples=100, deadline=None)
@given(raw=st.binary(max_size=200), api=st.sampled_from(APIS))
def test_any_bytes_get_a_gateway_answer(server: SimulatorServer, raw: bytes, api: str) -> None:
    with requests.Session() as session:
        response = session.post(
            f"{server.url}/v5/tlssmssvr/{api}?sdkappid=1400000000&random=1", data=raw, timeout=10
        )
    answer = assert_gateway_answer(response)
    assert answer["result"] in (1004, 1001, 1003, 1019, 1021)


@settings(max_examples=50, deadline=None)
@given(query=st.text(max_size=40))
def test_any_query_string_gets_a_gateway_answer(server: SimulatorServer, query: str) -> None:
    with requests.Session() as session:
        response = session.post(
            f"{server.url}/v5/tlssmssvr/sendsms?{query}", data=b"{}", timeout=10
        )
    assert assert_gateway_answer(response)["result"] == 1004


def test_huge_body_is_1004_and_the_server_keeps_serving(
    server: SimulatorServer,
) -> None:
    caller = SignedCaller(server.url)
    response = caller.post("sendsms", b"{" + b" " * (3 * 1024 * 1024) + b"}")
    assert assert_gateway_answer(response)["result"] == 1004
    assert caller.send_template()["result"] == 0


def test_deeply_nested_json_is_1004(server: SimulatorServer) -> None:
    caller = SignedCaller(server.url)
    raw = b'{"tel": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert assert_gateway_answer(caller.post("sendsms", raw))["result"] == 1004


def test_many_requests_on_one_keep_alive_connection(server: SimulatorServer) -> None:
    caller = SignedCaller(server.url)
    answers = [caller.send_template(f"137000{i:05d}") for i in range(100)]
    assert {a["result"] for a in answers} == {0}
    caller.session.close()


def test_control_api_refuses_bad_json_with_400(server: SimulatorServer) -> None:
    for path, method in [
        ("/_sim/script", "POST"),
        ("/_sim/faults", "PUT"),
        ("/_sim/clock", "PUT"),
        ("/_sim/limits", "PUT"),
        ("/_sim/reports", "PUT"),
        ("/_sim/replies", "POST"),
    ]:
        response = requests.request(method, server.url + path, data=b"{nope", timeout=10)
        assert response.status_code == 400, path
        response = requests.request(method, server.url + path, data=b"[1]", timeout=10)
        assert response.status_code == 400, path
    assert (
        requests.put(server.url + "/_sim/clock", json={"now": "soon"}, timeout=10).status_code
        == 400
    )
    assert requests.get(server.url + "/_sim/nothing", timeout=10).status_code == 404


@pytest.mark.parametrize("body", [{"real": True}, {"offset": 0}])
def test_clock_answers_its_state(server: SimulatorServer, body: dict[str, Any]) -> None:
    answer = requests.put(server.url + "/_sim/clock", data=json.dumps(body), timeout=10).json()
    assert answer["offset"] == 0 and isinstance(answer["now"], float)
