"""A client we did not write: the official Python SDK (qcloudsms_py) against the simulator.

Its bundled response reader calls ``json.loads(..., encoding=...)``, which Python 3.9 removed, so
the test hands it an HTTP client of its own through the SDK's documented ``httpclient`` hook
instead of patching the SDK's internals.
"""

from __future__ import annotations

import json
from typing import Any

import requests
from qcloudsms_py import SmsMultiSender, SmsSingleSender
from qcloudsms_py.httpclient import HTTPClientInterface, HTTPResponse

from tests.fixtures.simulator import APPKEY, SDKAPPID, SIGN
from worker.simulator.server import SimulatorServer


class _Response(HTTPResponse):  # type: ignore[misc]
    def json(self) -> Any:
        return json.loads(self.body)


class RequestsHttpClient(HTTPClientInterface):  # type: ignore[misc]
    """Sends the SDK's requests as they are (headers, body) with requests."""

    def __init__(self) -> None:
        self.session = requests.Session()

    def fetch(self, req: Any) -> _Response:
        answer = self.session.request(
            req.method, req.url, data=req.body, headers=req.headers or {}, timeout=10
        )
        return _Response(req, answer.status_code, answer.content, dict(answer.headers))


def _url(server: SimulatorServer, api: str) -> str:
    return f"{server.url}/v5/tlssmssvr/{api}"


def test_template_single_send_is_accepted(simulator: SimulatorServer) -> None:
    sender = SmsSingleSender(SDKAPPID, APPKEY, httpclient=RequestsHttpClient())
    answer = sender.send_with_param(
        86, "13788888888", 100001, ["482913", "5"], sign=SIGN, url=_url(simulator, "sendsms")
    )
    assert answer["result"] == 0, answer
    (delivered,) = simulator.control.inbox()
    assert (answer["sid"], answer["fee"]) == (delivered.sid, delivered.fee)


def test_group_send_is_accepted(simulator: SimulatorServer) -> None:
    """The SDK sends `nationcode` as a JSON number in group sends; the gateway accepts it."""
    sender = SmsMultiSender(SDKAPPID, APPKEY, httpclient=RequestsHttpClient())
    answer = sender.send_with_param(
        86,
        ["13788888888", "13788888889"],
        19,
        ["验证码", "1234", "4"],
        sign=SIGN,
        url=_url(simulator, "sendmultisms2"),
    )
    assert answer["result"] == 0, answer
    assert sorted(item["mobile"] for item in answer["detail"]) == ["13788888888", "13788888889"]
    assert all(item["result"] == 0 and item["fee"] == 1 for item in answer["detail"])
    assert len(simulator.control.inbox()) == 2


def test_wrong_appkey_gets_1001(simulator: SimulatorServer) -> None:
    sender = SmsSingleSender(SDKAPPID, "f" * 32, httpclient=RequestsHttpClient())
    answer = sender.send_with_param(
        86, "13788888888", 100001, ["482913", "5"], sign=SIGN, url=_url(simulator, "sendsms")
    )
    assert answer["result"] == 1001
    assert simulator.control.inbox() == []
