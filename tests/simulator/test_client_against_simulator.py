"""Our client against the simulator, over real HTTP on loopback.

The two sides sign and bill with code written independently, so agreement here is evidence that
both follow the protocol, not that one function was checked against itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fixtures.simulator import APPKEY, SDKAPPID, SIGN
from worker.services.sending.policy import effective_outcome
from worker.simulator.server import SimulatorServer
from worker.tencent import (
    Outcome,
    SmsClient,
    Template,
    Text,
    count_segments,
    parse_phone,
    render,
    render_template,
)

CN = parse_phone("+8613788888888")
CN2 = parse_phone("+8613788888889")
UK = parse_phone("+447911123456")
CODE = Template(100001, ("482913", "5"), SIGN)
NOTICE_TEXT = "{1}为{2}，请于{3}分钟内填写。如非本人操作，请忽略本短信。"


@pytest.fixture
def client(simulator: SimulatorServer) -> Iterator[SmsClient]:
    # A generous read timeout: a loaded machine may take seconds to answer. The one test that is
    # about a read timeout uses a client of its own with a short one.
    with SmsClient(SDKAPPID, APPKEY, simulator.url, read_timeout=30.0) as client:
        yield client


def test_template_send_is_delivered_and_billed(client: SmsClient, simulator: SimulatorServer):
    exchange = client.send(CN, CODE, ext="order-7")
    assert exchange.outcome is Outcome.OK
    (result,) = exchange.results()
    (delivered,) = simulator.control.inbox()
    assert (result.sid, result.fee, result.ext) == (delivered.sid, delivered.fee, "order-7")
    assert delivered.text == "【腾讯云】您的验证码是482913，5分钟内有效，请勿泄露。"


def test_free_text_send(client: SmsClient, simulator: SimulatorServer) -> None:
    text = "【腾讯云】" + render_template(NOTICE_TEXT, ["验证码", "1234", "4"])
    exchange = client.send(CN, Text(text))
    assert exchange.outcome is Outcome.OK, exchange.error
    assert simulator.control.inbox()[0].text == text


def test_international_send_goes_by_sendisms(client: SmsClient, simulator: SimulatorServer):
    exchange = client.send(UK, Template(100004, ("731204", "10")))
    assert exchange.outcome is Outcome.OK, exchange.error
    assert exchange.request.api == "sendisms"
    assert simulator.control.requests()[0].api == "sendisms"


def test_client_bill_agrees_with_the_simulator(client: SmsClient, simulator: SimulatorServer):
    params = ("张先生", "20240501001", "5月1日", "顺丰速运", "SF1234567890")
    exchange = client.send(CN, Template(100003, params, SIGN))
    (delivered,) = simulator.control.inbox()
    assert exchange.results()[0].fee == delivered.fee == 2
    assert count_segments(delivered.text, domestic=True) == 2


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=st.text(
        alphabet=st.sampled_from("abcXYZ 0123{}[]^~|€\\éñ中文，。"), min_size=1, max_size=300
    ),
    domestic=st.booleans(),
)
def test_fee_matches_the_local_count_for_any_text(
    client: SmsClient, simulator: SimulatorServer, body: str, domestic: bool
) -> None:
    """Free text of any mix of alphabets: the simulator's fee equals our segment count."""
    simulator.control.reset()
    phone = CN if domestic else UK
    text = render(body, SIGN, domestic=True) if domestic else body
    exchange = client.send(phone, Text(text))
    if exchange.outcome is Outcome.OK:
        assert exchange.results()[0].fee == count_segments(text, domestic=domestic)
    else:  # refused for content the templates do not match: then nothing was billed
        assert exchange.results()[0].fee == 0


def test_group_send_with_a_refused_number(client: SmsClient, simulator: SimulatorServer):
    simulator.control.set_limits(blacklist=[CN2.mobile])
    exchange = client.send_group([CN, CN2], Template(19, ("验证码", "1234", "4"), SIGN))
    assert exchange.outcome is Outcome.OK
    by_mobile = {result.mobile: result for result in exchange.results()}
    assert by_mobile[CN.mobile].result == 0 and by_mobile[CN.mobile].sid
    assert by_mobile[CN2.mobile].result == 1015 and by_mobile[CN2.mobile].fee == 0
    assert [m.mobile for m in simulator.control.inbox()] == [CN.mobile]


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (Template(424242, ("1",), SIGN), 1014),  # unknown template
        (Template(100099, ("x",), SIGN), 1014),  # not approved
        (Template(100001, ("482913",), SIGN), 1014),  # wrong number of params
        (Template(100001, ("12345678", "5"), SIGN), 1038),  # code not 0-6 digits
        (Template(19, ("验证码", "1234567890123", "4"), SIGN), 1036),  # variable too long
        (Template(19, ("http://a.cn", "1", "4"), SIGN), 1048),  # URL in a variable
        (Template(100001, ("482913", "5"), "测试签名"), 1012),  # sign not approved
        (Text("【腾讯云】" + "长" * 450), 1017),  # too long
    ],
)
def test_content_refusals(
    client: SmsClient, simulator: SimulatorServer, content: Template | Text, code: int
) -> None:
    exchange = client.send(CN, content)
    assert (exchange.outcome, exchange.results()[0].result) == (Outcome.REJECTED, code)
    assert simulator.control.inbox() == []


def test_wrong_appkey_is_refused_1001(simulator: SimulatorServer) -> None:
    with SmsClient(SDKAPPID, "0" * 32, simulator.url) as wrong:
        exchange = wrong.send(CN, CODE)
    assert exchange.results()[0].result == 1001
    assert exchange.outcome is Outcome.REJECTED


def test_unknown_sdkappid_is_refused_1019(simulator: SimulatorServer) -> None:
    with SmsClient("1400999999", APPKEY, simulator.url) as stranger:
        assert stranger.send(CN, CODE).results()[0].result == 1019


def test_skewed_clock_is_transient_once_then_rejected(simulator: SimulatorServer) -> None:
    with SmsClient(SDKAPPID, APPKEY, simulator.url, clock=lambda: 1_000_000_000.0) as skewed:
        first = skewed.send(CN, CODE)
        again = skewed.execute(skewed.prepare_send(CN, CODE))
    assert (first.results()[0].result, first.outcome) == (1021, Outcome.TRANSIENT)
    # The second 1021 for one message is the send policy's to turn permanent.
    assert effective_outcome(again.outcome, 1021, {1021: 1}) is Outcome.REJECTED


def test_marketing_outside_hours_is_throttled(client: SmsClient, simulator: SimulatorServer):
    # 23:30 Beijing time; the client signs with the real clock, so move ours along.
    night = datetime(2026, 11, 24, 15, 30, tzinfo=UTC).timestamp()
    simulator.control.set_clock(now=night)
    with SmsClient(SDKAPPID, APPKEY, simulator.url, clock=lambda: night) as late:
        exchange = late.send(CN, Template(100002, ("张女士", "8"), SIGN))
    assert (exchange.results()[0].result, exchange.outcome) == (1029, Outcome.THROTTLED)


@pytest.mark.parametrize(
    ("step", "outcome", "delivered"),
    [
        (1008, Outcome.TRANSIENT, 0),
        (60008, Outcome.TRANSIENT, 0),
        (1007, Outcome.TRANSIENT, 0),
        ({"http": 502}, Outcome.TRANSIENT, 0),
        ({"http": 503}, Outcome.TRANSIENT, 0),
        ("drop", Outcome.AMBIGUOUS, 0),
        ("drop_after", Outcome.AMBIGUOUS, 1),
        ({"slow": 4}, Outcome.AMBIGUOUS, 1),  # past the 2 s read timeout of the faulted send
    ],
)
def test_each_fault_is_classified(
    client: SmsClient, simulator: SimulatorServer, step: object, outcome: Outcome, delivered: int
) -> None:
    simulator.control.script(CN.mobile, [step])
    with SmsClient(SDKAPPID, APPKEY, simulator.url, read_timeout=2.0) as impatient:
        faulted = impatient if isinstance(step, dict) and "slow" in step else client
        assert faulted.send(CN, CODE).outcome is outcome
    assert len(simulator.control.inbox()) == delivered
    # The script is spent: the next request goes through normally.
    assert client.send(CN, CODE).outcome is Outcome.OK


def test_connect_failure_is_network_not_ambiguous() -> None:
    with SimulatorServer() as server:
        url = server.url
    with SmsClient(SDKAPPID, APPKEY, url, connect_timeout=1.0) as client:
        exchange = client.send(CN, CODE)
    assert exchange.outcome is Outcome.NETWORK
    assert exchange.http_status is None


def test_every_request_is_signed_afresh(client: SmsClient, simulator: SimulatorServer) -> None:
    for _ in range(5):
        client.send(CN, CODE)
    randoms = [record.random for record in simulator.control.requests()]
    assert len(set(randoms)) == 5
    assert all(record.sig_valid for record in simulator.control.requests())


def test_pull_reports_and_statistics(client: SmsClient, simulator: SimulatorServer) -> None:
    simulator.control.set_reports(None, delay_seconds=0, fail_ratio=0)
    sent = [client.send(phone, CODE).results()[0] for phone in (CN, CN2)]
    simulator.control.flush_reports()
    pulled = client.pull_status()
    assert {report.sid for report in pulled.reports} == {result.sid for result in sent}
    assert all(report.errmsg == "DELIVRD" for report in pulled.reports)
    assert client.pull_status().reports == ()  # consumed once
    now = datetime.now(UTC)
    stats = client.pull_send_stats(now - timedelta(hours=1), now + timedelta(hours=1))
    assert (stats.request, stats.success, stats.bill_number) == (2, 2, 2)
