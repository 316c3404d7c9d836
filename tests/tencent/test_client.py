"""The client against a scripted loopback HTTP server: what it sends, and how it reads answers."""

from __future__ import annotations

import hashlib
import json
import pickle
import secrets
import socket
import threading
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from worker.tencent import (
    Api,
    Exchange,
    GatewayError,
    InvalidInput,
    Outcome,
    Phone,
    SendResult,
    SmsClient,
    Template,
    Text,
)

SDKAPPID = "1400000000"
APPKEY = "5f03a35d00ee52a21327ab048186a2c4"
NOW = 1_700_000_000.75
CN = Phone("86", "13788888888")
CN2 = Phone("86", "13788888889")
US = Phone("1", "2015550123")
CODE = Template(1234, ("5678",), "腾讯云")
OK = (200, b'{"result":0,"errmsg":"OK","ext":"","fee":1,"sid":"8:abc"}')


class Gateway:
    """Answers POSTs from a script of (status, body) and records what it received."""

    def __init__(self) -> None:
        self.script: list[tuple[int, bytes]] = []
        self.received: list[tuple[str, dict[str, list[str]], Any]] = []
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                url = urlsplit(self.path)
                gateway.received.append((url.path, parse_qs(url.query), json.loads(raw)))
                status, body = gateway.script.pop(0) if gateway.script else OK
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def body(self, index: int = -1) -> Any:
        return self.received[index][2]


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    instance = Gateway()
    thread = threading.Thread(target=instance.server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield instance
    instance.server.shutdown()
    instance.server.server_close()
    thread.join(timeout=10)


@pytest.fixture
def client(gateway: Gateway) -> Iterator[SmsClient]:
    with SmsClient(SDKAPPID, APPKEY, gateway.url, read_timeout=30.0, clock=lambda: NOW) as instance:
        yield instance


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def expected_sig(random: int, time: int, tail: str = "") -> str:
    return hashlib.sha256(f"appkey={APPKEY}&random={random}&time={time}{tail}".encode()).hexdigest()


def test_prepare_domestic_send(client: SmsClient, gateway: Gateway) -> None:
    request = client.prepare_send(CN, CODE, ext="order-1")
    assert request.api is Api.SENDSMS
    assert 10**9 <= request.random < 10**10
    assert request.time == int(NOW)
    assert request.url == (
        f"{gateway.url}/v5/tlssmssvr/sendsms?sdkappid={SDKAPPID}&random={request.random}"
    )
    body = json.loads(request.body)
    assert body["tel"] == {"nationcode": "86", "mobile": "13788888888"}
    assert body["sig"] == expected_sig(request.random, request.time, "&mobile=13788888888")
    assert body["time"] == request.time
    assert (body["tpl_id"], body["params"], body["sign"]) == (1234, ["5678"], "腾讯云")
    assert (body["ext"], body["extend"]) == ("order-1", "")
    assert "sdkappid" not in body and "random" not in body
    assert request.phones == (CN,)


def test_prepare_international_send_uses_sendisms(client: SmsClient) -> None:
    request = client.prepare_send(US, Text("[Acme] code 1234"))
    body = json.loads(request.body)
    assert request.api is Api.SENDISMS
    assert body["tel"] == "+12015550123"
    assert body["sig"] == expected_sig(request.random, request.time, "&tel=+12015550123")
    assert (body["type"], body["msg"]) == (0, "[Acme] code 1234")


def test_prepare_group(client: SmsClient) -> None:
    request = client.prepare_group([CN, CN2], CODE)
    body = json.loads(request.body)
    assert request.api is Api.SENDMULTISMS2
    assert [tel["mobile"] for tel in body["tel"]] == ["13788888888", "13788888889"]
    tail = "&mobile=13788888888,13788888889"
    assert body["sig"] == expected_sig(request.random, request.time, tail)


def test_prepare_group_checks_the_group(client: SmsClient) -> None:
    with pytest.raises(InvalidInput) as caught:
        client.prepare_group([CN, US], CODE)
    assert caught.value.code == 1034


def test_every_request_gets_a_fresh_random(client: SmsClient) -> None:
    randoms = {client.prepare_send(CN, CODE).random for _ in range(50)}
    assert len(randoms) == 50


def test_time_is_taken_at_prepare_time(gateway: Gateway) -> None:
    ticks = iter([100.9, 200.2])
    with SmsClient(SDKAPPID, APPKEY, gateway.url, clock=lambda: next(ticks)) as client:
        assert client.prepare_send(CN, CODE).time == 100
        assert client.prepare_send(CN, CODE).time == 200


def test_successful_send(client: SmsClient, gateway: Gateway) -> None:
    exchange = client.send(CN, CODE)
    assert exchange.outcome is Outcome.OK
    assert (exchange.http_status, exchange.error) == (200, "")
    assert exchange.response == SendResult(0, "OK", "", 1, "8:abc", "86", "13788888888")
    assert exchange.results() == (exchange.response,)
    assert exchange.latency_ms >= 0
    assert exchange.started_at.tzinfo is UTC
    path, query, body = gateway.received[0]
    assert path == "/v5/tlssmssvr/sendsms"
    assert query == {"sdkappid": [SDKAPPID], "random": [str(exchange.request.random)]}
    assert body == json.loads(exchange.request.body)


def test_execute_sends_the_prepared_bytes_once(client: SmsClient, gateway: Gateway) -> None:
    request = client.prepare_send(CN, CODE)
    client.execute(request)
    assert len(gateway.received) == 1
    assert gateway.body() == json.loads(request.body)


def test_result_code_is_classified_from_the_answer_alone(
    client: SmsClient, gateway: Gateway
) -> None:
    # The client knows no message's history: a 1021 is transient every time it comes; the send
    # policy turns it permanent the second time for one message (tests/services/sending).
    stale = (200, b'{"result":1021,"errmsg":"request time out of range"}')
    gateway.script = [stale, stale]
    first = client.send(CN, CODE)
    assert first.outcome is Outcome.TRANSIENT
    assert first.error == "request time out of range"
    request = client.prepare_send(CN, CODE)
    assert client.execute(request).outcome is Outcome.TRANSIENT


def test_missing_errmsg_falls_back_to_the_meaning(client: SmsClient, gateway: Gateway) -> None:
    gateway.script = [(200, b'{"result":1024}')]
    exchange = client.send(CN, CODE)
    assert exchange.outcome is Outcome.THROTTLED
    assert exchange.error == "per-number limit in 1 h"


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(502, Outcome.TRANSIENT), (429, Outcome.THROTTLED), (403, Outcome.REJECTED)],
)
def test_http_errors(client: SmsClient, gateway: Gateway, status: int, outcome: Outcome) -> None:
    gateway.script = [(status, b'{"result":0}')]
    exchange = client.send(CN, CODE)
    assert (exchange.outcome, exchange.http_status, exchange.error) == (
        outcome,
        status,
        f"HTTP {status}",
    )
    assert exchange.response is None and exchange.results() == ()


def test_non_json_200_is_transient(client: SmsClient, gateway: Gateway) -> None:
    gateway.script = [(200, b"<html>busy</html>")]
    exchange = client.send(CN, CODE)
    assert (exchange.outcome, exchange.error, exchange.response) == (
        Outcome.TRANSIENT,
        "body is not JSON",
        None,
    )


def test_refused_connection_is_network() -> None:
    with SmsClient(SDKAPPID, APPKEY, closed_port_url()) as client:
        exchange = client.send(CN, CODE)
    assert (exchange.outcome, exchange.error, exchange.http_status) == (
        Outcome.NETWORK,
        "connection refused",
        None,
    )


def test_read_timeout_is_ambiguous() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with SmsClient(SDKAPPID, APPKEY, url, read_timeout=0.2) as client:
            exchange = client.send(CN, CODE)
    assert (exchange.outcome, exchange.error) == (Outcome.AMBIGUOUS, "read timeout after 0.2s")


def test_group_results_come_from_detail(client: SmsClient, gateway: Gateway) -> None:
    detail = [
        {"result": 0, "errmsg": "OK", "mobile": CN.mobile, "nationcode": "86", "sid": "8:a",
         "fee": 1},
        {"result": 1015, "errmsg": "blacklisted", "mobile": CN2.mobile, "nationcode": "86"},
    ]  # fmt: skip
    gateway.script = [(200, json.dumps({"result": 0, "errmsg": "OK", "detail": detail}).encode())]
    exchange = client.send_group([CN, CN2], CODE)
    assert exchange.outcome is Outcome.OK
    assert [(r.mobile, r.result, r.fee) for r in exchange.results()] == [
        (CN.mobile, 0, 1),
        (CN2.mobile, 1015, 0),
    ]
    assert gateway.received[0][0] == "/v5/tlssmssvr/sendmultisms2"


def test_group_refused_whole(client: SmsClient, gateway: Gateway) -> None:
    gateway.script = [(200, b'{"result":1046,"errmsg":"too many numbers"}')]
    exchange = client.send_group([CN, CN2], CODE)
    assert exchange.outcome is Outcome.REJECTED
    assert exchange.results() == ()


def test_pull_status(client: SmsClient, gateway: Gateway) -> None:
    report = {
        "user_receive_time": "2024-01-02 03:04:05",
        "nationcode": "86",
        "mobile": CN.mobile,
        "report_status": "SUCCESS",
        "errmsg": "DELIVRD",
        "description": "ok",
        "sid": "8:a",
    }
    gateway.script = [(200, json.dumps({"result": 0, "errmsg": "ok", "count": 1,
                                        "data": [report]}).encode())]  # fmt: skip
    pulled = client.pull_status(max_items=10)
    assert [r.sid for r in pulled.reports] == ["8:a"]
    path, query, body = gateway.received[0]
    assert path == "/v5/tlssmssvr/pullstatus"
    random = int(query["random"][0])
    assert body == {"sig": expected_sig(random, int(NOW)), "time": int(NOW), "type": 0, "max": 10}


def test_pull_status_for_mobile(client: SmsClient, gateway: Gateway) -> None:
    gateway.script = [(200, b'{"result":0,"errmsg":"ok","count":0,"data":[]}')]
    begin = datetime(2024, 1, 1, tzinfo=UTC)
    pulled = client.pull_status_for_mobile(CN, begin, begin + timedelta(hours=1), replies=True)
    assert pulled.count == 0
    body = gateway.body()
    assert (body["type"], body["begin_time"], body["end_time"]) == (1, 1704067200, 1704070800)
    assert (body["nationcode"], body["mobile"]) == ("86", CN.mobile)


def test_pull_arguments_are_checked(client: SmsClient) -> None:
    with pytest.raises(InvalidInput, match="max"):
        client.pull_status(max_items=101)
    with pytest.raises(InvalidInput, match="timezone-aware"):
        client.pull_status_for_mobile(CN, datetime(2024, 1, 1), datetime(2024, 1, 2))
    with pytest.raises(InvalidInput, match="after"):
        now = datetime.now(UTC)
        client.pull_send_stats(now, now - timedelta(hours=1))


def test_pull_send_stats_in_beijing_hours(client: SmsClient, gateway: Gateway) -> None:
    gateway.script = [(200, b'{"result":0,"msg":"OK","data":{"request":3,"success":2,'
                            b'"bill_number":4}}')]  # fmt: skip
    begin = datetime(2024, 1, 1, 16, 30, tzinfo=UTC)  # 2024-01-02 00:30 in Beijing
    stats = client.pull_send_stats(begin, begin + timedelta(hours=23))
    assert (stats.request, stats.success, stats.bill_number) == (3, 2, 4)
    body = gateway.body()
    assert (body["begin_date"], body["end_date"]) == (2024010200, 2024010223)
    assert body["sig"] == expected_sig(int(gateway.received[0][1]["random"][0]), int(NOW))


def test_pull_failures_raise_gateway_error(client: SmsClient, gateway: Gateway) -> None:
    gateway.script = [
        (200, b'{"result":1006,"errmsg":"no permission"}'),
        (503, b""),
        (200, b"not json"),
    ]
    with pytest.raises(GatewayError) as refused:
        client.pull_status()
    assert (refused.value.result, refused.value.errmsg) == (1006, "no permission")
    assert refused.value.outcome is Outcome.REJECTED
    with pytest.raises(GatewayError, match="HTTP 503") as unavailable:
        client.pull_status()
    assert unavailable.value.result is None
    with pytest.raises(GatewayError, match="not JSON"):
        client.pull_status()


def test_pull_transport_failure_raises_gateway_error() -> None:
    with (
        SmsClient(SDKAPPID, APPKEY, closed_port_url()) as client,
        pytest.raises(GatewayError, match="connection refused") as caught,
    ):
        client.pull_status()
    assert caught.value.outcome is Outcome.NETWORK


@pytest.mark.parametrize("base_url", ["ftp://x", "yun.tim.qq.com", "http://", "http://h/?a=1"])
def test_bad_base_url_is_refused(base_url: str) -> None:
    with pytest.raises(ValueError, match="base_url"):
        SmsClient(SDKAPPID, APPKEY, base_url)


def test_the_appkey_never_shows() -> None:
    appkey = secrets.token_hex(16)
    shown: list[str] = []

    def show(error: BaseException) -> None:
        shown.extend([str(error), repr(error), *traceback.format_exception(error)])

    for base_url in (closed_port_url(), "http://bad host"):
        with SmsClient(SDKAPPID, appkey, base_url) as client:
            exchange: Exchange = client.send(CN, CODE)
            assert exchange.outcome is Outcome.NETWORK
            shown.extend([repr(client), str(client), repr(exchange), exchange.error])
            with pytest.raises(GatewayError) as pulled:
                client.pull_status()
            show(pulled.value)
    with pytest.raises(ValueError) as bad_url:
        SmsClient(SDKAPPID, appkey, "not a url")
    show(bad_url.value)
    with pytest.raises(InvalidInput) as bad_group:
        SmsClient(SDKAPPID, appkey).prepare_group([], CODE)
    show(bad_group.value)
    assert "invalid URL" in shown  # the second client's exchange error
    assert [text for text in shown if appkey in text] == []


def test_gateway_error_survives_pickling() -> None:
    error = pickle.loads(
        pickle.dumps(GatewayError(None, "pullstatus: HTTP 429", Outcome.THROTTLED))
    )
    assert (error.result, error.errmsg, error.outcome) == (
        None,
        "pullstatus: HTTP 429",
        Outcome.THROTTLED,
    )
    assert str(error) == "pullstatus: HTTP 429"
    assert str(GatewayError(1006, "no permission")) == "result 1006: no permission"
