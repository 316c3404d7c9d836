"""The control API fed hostile bodies over real HTTP: wrong types, NaN and Infinity, huge
numbers, nested junk, invalid UTF-8, empty and oversized bodies, chunked or trickled. Every
answer is 200, 400 naming the field, 413 or 408; never a 500, and the health check and
``/_sim/stats`` keep answering 200.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fixtures.simulator import MOBILE, SignedCaller, template_body
from tests.fixtures.slow_clients import connect, status_of, trickle
from worker.runners.limits import ServerLimits
from worker.simulator.server import SimulatorServer

TIMEOUT = 30
MIB = 1 << 20
WRITES = [
    ("POST", "/_sim/script"),
    ("PUT", "/_sim/faults"),
    ("PUT", "/_sim/clock"),
    ("PUT", "/_sim/limits"),
    ("PUT", "/_sim/reports"),
    ("POST", "/_sim/replies"),
]
HOSTILE_BODIES = [
    b"",
    b"null",
    b"[]",
    b'"text"',
    b"12",
    b"{",
    b"\xff\xfe\xfa",
    b'{"mobile": "\xff"}',
    b"[" * 100_000,
    b'{"a": ' * 5_000 + b"1" + b"}" * 5_000,
    b'{"now": NaN}',
    b'{"now": Infinity}',
    b'{"offset": -Infinity}',
    b'{"now": 1e999}',
    b'{"now": 1' + b"0" * 400 + b"}",
    b'{"now": 1' + b"0" * 5000 + b"}",
    b'{"mobile": ["x"], "steps": {"a": 1}, "rates": [], "balance": "x", "callback_url": 7}',
    b'{"\\ud800": "\\udfff"}',
]
# (method, path, body, a fragment the 400's error must hold: the field at fault)
NAMED = [
    ("PUT", "/_sim/clock", {"now": 10**400}, "now must be a number"),
    ("PUT", "/_sim/clock", {"now": -1}, "now must be a number"),
    ("PUT", "/_sim/clock", {"now": "soon"}, "now must be a number"),
    ("PUT", "/_sim/clock", {"now": True}, "now must be a number"),
    ("PUT", "/_sim/clock", {"offset": 1e300}, "offset must be a number"),
    ("PUT", "/_sim/clock", {"offset": 10**400}, "offset must be a number"),
    ("PUT", "/_sim/clock", {"real": False}, "real must be true"),
    ("PUT", "/_sim/clock", {"now": 1, "offset": 1}, 'give {"now"'),
    ("PUT", "/_sim/clock", {}, 'give {"now"'),
    ("PUT", "/_sim/faults", {"latency_ms": -1}, "latency_ms must be"),
    ("PUT", "/_sim/faults", {"slow_seconds": 1e308}, "slow_seconds must be"),
    ("PUT", "/_sim/faults", {"rates": {"1008": 2}}, "rates.1008 must be"),
    ("PUT", "/_sim/faults", {"rates": {"x" * 10_000: 0.1}}, "unknown fault"),
    ("PUT", "/_sim/limits", {"balance": 10**20}, "limits.balance must be"),
    ("PUT", "/_sim/limits", {"per_number_30s": -1}, "limits.per_number_30s must be"),
    ("PUT", "/_sim/limits", {"blacklist": "13700000001"}, "limits.blacklist must be"),
    ("PUT", "/_sim/reports", {"delay_seconds": 1e308}, "reports.delay_seconds must be"),
    ("PUT", "/_sim/reports", {"fail_ratio": -0.5}, "reports.fail_ratio must be"),
    ("PUT", "/_sim/reports", {"batch_size": 2.5}, "reports.batch_size must be"),
    ("PUT", "/_sim/reports", {"retries": 10**30}, "reports.retries must be"),
    ("PUT", "/_sim/reports", {"callback_url": "http://"}, "reports.callback_url must be"),
    ("PUT", "/_sim/reports", {"callback_url": "http://h:99999/"}, "reports.callback_url must"),
    ("PUT", "/_sim/reports", {"callback_url": "http://h/\n"}, "reports.callback_url must"),
    ("PUT", "/_sim/reports", {"callback_url": "ftp://h/"}, "reports.callback_url must"),
    ("PUT", "/_sim/reports", {"fail_codes": []}, "reports.fail_codes must be"),
    ("PUT", "/_sim/reports", {"y" * 10_000: 1}, "reports: unknown keys"),
    ("POST", "/_sim/script", {"mobile": "1", "steps": [10**10]}, "not a step"),
    ("POST", "/_sim/script", {"mobile": "1", "steps": [{"slow": 1e308}]}, "not a step"),
    ("POST", "/_sim/script", {"mobile": "", "steps": []}, "mobile must be"),
    ("POST", "/_sim/replies", {"mobile": "137", "text": "TD", "time": 1e300}, "time must be"),
    ("POST", "/_sim/replies", {"mobile": "137", "text": "TD", "time": -5}, "time must be"),
    ("POST", "/_sim/replies", {"mobile": "x", "text": "TD"}, "mobile must be"),
    ("POST", "/_sim/replies", {"mobile": "137", "text": 5}, "text must be"),
    ("POST", "/_sim/replies", {"mobile": "137", "text": "TD", "nationcode": "+86"}, "nationcode"),
    ("POST", "/_sim/replies", {"mobile": "137", "text": "TD", "sign": None}, "sign must be"),
    ("POST", "/_sim/replies", {"mobile": "137", "text": "TD", "spam": 1}, "unknown keys"),
]


@pytest.fixture(scope="module")
def own_simulator() -> Iterator[SimulatorServer]:
    """A simulator of its own: the bodies here change its settings."""
    with SimulatorServer() as server:
        yield server


@pytest.fixture
def sim(own_simulator: SimulatorServer) -> Iterator[SimulatorServer]:
    own_simulator.control.reset()
    yield own_simulator
    assert_still_healthy(own_simulator)


def assert_still_healthy(server: SimulatorServer) -> None:
    for path in ("/_sim/health", "/_sim/stats", "/_sim/clock", "/_sim/reports"):
        answer = requests.get(server.url + path, timeout=TIMEOUT)
        assert answer.status_code == 200, (path, answer.text)


@pytest.mark.parametrize(("method", "path"), WRITES)
@pytest.mark.parametrize("body", HOSTILE_BODIES, ids=range(len(HOSTILE_BODIES)))
def test_hostile_bodies_get_400(sim: SimulatorServer, method: str, path: str, body: bytes) -> None:
    answer = requests.request(method, sim.url + path, data=body, timeout=TIMEOUT)

    # An empty body is an empty object: the reports and limits settings take their defaults.
    if body == b"" and path in ("/_sim/faults", "/_sim/limits", "/_sim/reports"):
        assert answer.status_code == 200
    else:
        assert answer.status_code == 400, answer.text
        assert len(answer.json()["error"]) <= 300


@pytest.mark.parametrize(("method", "path", "body", "field"), NAMED)
def test_bad_values_get_400_naming_the_field(
    sim: SimulatorServer, method: str, path: str, body: dict[str, Any], field: str
) -> None:
    answer = requests.request(method, sim.url + path, json=body, timeout=TIMEOUT)

    assert answer.status_code == 400, answer.text
    assert field in answer.json()["error"]
    assert len(answer.json()["error"]) <= 300


@pytest.mark.parametrize(("method", "path"), WRITES)
def test_bodies_over_one_mib_get_413_declared_or_chunked(
    sim: SimulatorServer, method: str, path: str
) -> None:
    padded = json.dumps({"pad": "x" * (MIB + 10)}).encode()
    chunks = [padded[i : i + 65536] for i in range(0, len(padded), 65536)]

    declared = requests.request(method, sim.url + path, data=padded, timeout=TIMEOUT)
    chunked = requests.request(method, sim.url + path, data=iter(chunks), timeout=TIMEOUT)

    assert (declared.status_code, chunked.status_code) == (413, 413)
    assert "larger than 1048576 bytes" in chunked.json()["error"]


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    call=st.sampled_from(WRITES),
    body=st.one_of(
        st.binary(max_size=64),
        st.dictionaries(
            st.sampled_from(
                ["now", "offset", "real", "mobile", "text", "time", "steps", "rates", "balance",
                 "blacklist", "latency_ms", "delay_seconds", "batch_size", "fail_codes", "sign",
                 "nationcode", "per_number_day", "slow_seconds", "retries", "x"]
            ),
            st.recursive(
                st.none()
                | st.booleans()
                | st.integers(min_value=-(10**30), max_value=10**30)
                | st.floats()
                | st.text(max_size=12),
                lambda inner: st.lists(inner, max_size=3)
                | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                max_leaves=6,
            ),
            max_size=4,
        ).map(lambda value: json.dumps(value).encode()),  # NaN and Infinity as Python writes them
    ),
)  # fmt: skip
def test_fuzzed_bodies_never_get_a_500(
    sim: SimulatorServer, call: tuple[str, str], body: bytes
) -> None:
    method, path = call
    answer = requests.request(method, sim.url + path, data=body, timeout=TIMEOUT)

    assert answer.status_code in (200, 400), answer.text
    if answer.status_code == 400:
        assert answer.json()["error"]
    # A clock moved anywhere in range still shows; replies pushed nowhere (no callback URL).
    assert requests.get(sim.url + "/_sim/stats", timeout=TIMEOUT).status_code == 200
    sim.control.reset()


def test_a_trickled_body_is_cut_off_on_the_control_api_and_the_gateway() -> None:
    limits = ServerLimits(idle_timeout=1.0, read_timeout=1.0)
    with SimulatorServer(limits=limits) as server:
        answers = []
        for path in ("/_sim/faults", "/v5/tlssmssvr/sendsms?sdkappid=1400000000&random=1"):
            method = "PUT" if path.startswith("/_sim") else "POST"
            head = f"{method} {path} HTTP/1.1\r\nHost: sim\r\nContent-Length: 5000\r\n\r\n{{"
            with connect(server.url) as sock:
                answers.append(trickle(sock, head.encode(), byte=b" "))
        assert [status_of(answer) for answer in answers] == [408, 408]
        assert_still_healthy(server)


@pytest.mark.parametrize("field", ["ext", "sign", "params"])
def test_a_lone_surrogate_in_a_gateway_body_is_1004_not_a_500(
    sim: SimulatorServer, field: str
) -> None:
    caller = SignedCaller(sim.url)
    value: object = ["\udfff", "1234", "4"] if field == "params" else "\ud800"
    rnd, body = caller.signed({**template_body(), field: value}, f"&mobile={MOBILE}")

    answer = caller.post("sendsms", json.dumps(body).encode(), rnd=rnd)

    assert answer.status_code == 200, answer.text
    assert answer.json()["result"] == 1004
