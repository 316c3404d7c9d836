"""The callback receiver over real HTTP, on both dialects: fed by the simulator's own pushes
after real sends, and by hand-made bodies that must be refused without writing anything."""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from tests.fixtures.pipeline import child_environment
from tests.fixtures.receiver import (
    Receiver,
    gateway_sends,
    new_mobiles,
    record_sending,
    record_sent,
    report_rows,
    row_counts,
    statuses,
)
from tests.fixtures.simulator import SignedCaller
from worker.cli import main
from worker.ledger.db import make_engine, session_factory
from worker.ledger.migrate import upgrade
from worker.ledger.optouts import is_opted_out
from worker.ledger.schema import SmsReply
from worker.ledger.status import DELIVERED, SENT, UNDELIVERED
from worker.receiver import check_token
from worker.runners.processes import ManagedProcess
from worker.simulator.server import SimulatorServer

OK = {"result": 0, "errmsg": "OK"}
REPORT = {
    "user_receive_time": "2024-05-01 12:00:00",
    "nationcode": "86",
    "mobile": "13788888888",
    "report_status": "SUCCESS",
    "errmsg": "DELIVRD",
    "description": "用户短信送达成功",
    "sid": "8:receiver0001",
}
REPLY = {
    "extend": "",
    "mobile": "13788888888",
    "nationcode": "86",
    "sign": "腾讯云",
    "text": "TD",
    "time": 1714536000,
}


def test_reports_pushed_by_the_simulator_move_the_messages(
    receiver: Receiver, simulator: SimulatorServer
) -> None:
    mobiles = new_mobiles(24)
    simulator.control.set_reports(delay_seconds=3600, fail_ratio=0.5)  # drawn now, held back
    sids = gateway_sends(simulator, mobiles)
    ids = {mobile: record_sent(receiver.sessions, mobile, sid) for mobile, sid in sids.items()}
    simulator.control.set_reports(receiver.callback_url, delay_seconds=0)

    flushed = simulator.control.flush_reports()

    assert (flushed["pushed"], flushed["push_failures"]) == (24, 0)
    pulled = {item["sid"]: item for item in _pull_all(simulator)}
    expected = {
        ids[item["mobile"]]: DELIVERED if item["report_status"] == "SUCCESS" else UNDELIVERED
        for item in pulled.values()
    }
    assert statuses(receiver.sessions, list(ids.values())) == expected
    assert set(expected.values()) == {DELIVERED, UNDELIVERED}  # 2**-23 to fail by chance
    rows = report_rows(receiver.sessions)
    assert {(r.sid, r.report_status, r.errmsg) for r in rows} == {
        (sid, item["report_status"], item["errmsg"]) for sid, item in pulled.items()
    }
    assert all(r.message_id == ids[r.mobile] and r.source == "callback" for r in rows)


def test_a_td_reply_pushed_by_the_simulator_opts_the_number_out(
    receiver: Receiver, simulator: SimulatorServer
) -> None:
    simulator.control.set_reports(receiver.callback_url)

    answer = simulator.control.reply("13700000001", "  退订 ")
    simulator.control.reply("13700000002", "好的")

    assert answer["pushed"] is True
    with receiver.sessions() as session:
        assert is_opted_out(session, "86", "13700000001")
        assert not is_opted_out(session, "86", "13700000002")
        texts = set(session.scalars(select(SmsReply.text)))
    assert texts == {"  退订 ", "好的"}


@pytest.mark.parametrize("path", ["/status", ""])
def test_a_report_is_taken_on_either_route_and_a_repeat_changes_nothing(
    receiver: Receiver, path: str
) -> None:
    message_id = record_sent(receiver.sessions, REPORT["mobile"], REPORT["sid"])

    first = receiver.post(path, [REPORT])
    again = receiver.post(path, [REPORT, {**REPORT, "report_status": "FAIL", "errmsg": "X"}])

    assert (first.status_code, first.json()) == (200, OK)
    assert (again.status_code, again.json()) == (200, OK)
    assert row_counts(receiver.sessions) == (2, 0, 0)
    assert statuses(receiver.sessions, [message_id]) == {message_id: DELIVERED}


def test_an_orphan_report_is_kept_until_its_send_is_recorded(receiver: Receiver) -> None:
    message_id = record_sending(receiver.sessions, REPORT["mobile"])

    answer = receiver.post("/status", [REPORT])

    assert answer.json() == OK
    (row,) = report_rows(receiver.sessions)
    assert row.message_id is None
    assert statuses(receiver.sessions, [message_id]) == {message_id: "sending"}


@pytest.mark.parametrize("path", ["/reply", ""])
def test_a_reply_is_taken_on_either_route(receiver: Receiver, path: str) -> None:
    answer = receiver.post(path, REPLY)

    assert (answer.status_code, answer.json()) == (200, OK)
    assert row_counts(receiver.sessions) == (0, 1, 1)


def test_a_wrong_token_is_a_path_that_does_not_exist(receiver: Receiver) -> None:
    record_sent(receiver.sessions, REPORT["mobile"], REPORT["sid"])
    wrong = secrets.token_urlsafe(24)
    nowhere = receiver.http.post(f"{receiver.server.url}/nowhere", json=[REPORT], timeout=30)

    answers = [
        receiver.post("/status", [REPORT], token=wrong),
        receiver.post("/reply", REPLY, token=wrong),
        receiver.post("", [REPORT], token=wrong),
        receiver.post("/status", [REPORT], token=receiver.token[:-1]),
        receiver.post("/status", [REPORT], token=receiver.token + "x"),
        receiver.post("/status", [REPORT], token="%E2%82%AC" * 8),
    ]

    for answer in answers:
        assert (answer.status_code, answer.text) == (404, nowhere.text) == (404, "Not Found")
    assert row_counts(receiver.sessions) == (0, 0, 0)
    assert receiver.http.get(f"{receiver.server.url}/healthz", timeout=30).status_code == 200


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/status", b"", "body is empty"),
        ("/status", b"[{]", "body is not JSON"),
        ("/status", b"\xff\xfe\x00", "body is not JSON"),
        ("/status", b"[" * 50_000, "nested too deeply"),
        ("/status", {"sid": "x"}, "body must be a JSON array of delivery reports, got an object"),
        ("/status", [REPORT, "x"], "item 1: must be a JSON object"),
        ("/status", [REPORT, {**REPORT, "sid": None}], "item 1: sid must be a string, got null"),
        ("/status", [REPORT, {k: v for k, v in REPORT.items() if k != "sid"}], "item 1: sid is"),
        ("/status", [REPORT, {**REPORT, "mobile": ["1"]}], "item 1: mobile must be a string"),
        ("/status", [REPORT, {**REPORT, "report_status": "OK"}], "item 1: report_status must"),
        ("/status", [REPORT, {**REPORT, "user_receive_time": 1}], "item 1: user_receive_time"),
        ("/status", [REPORT, {**REPORT, "sid": "s" * 65}], "item 1: sid is longer than 64"),
        ("/status", [REPORT, {**REPORT, "errmsg": "\u0000"}], "item 1: errmsg contains a NUL"),
        ("/reply", [REPLY], "body must be a JSON object (a reply), got an array"),
        ("/reply", {**REPLY, "time": "soon"}, "time must be Unix seconds"),
        ("/reply", {**REPLY, "time": True}, "time must be Unix seconds"),
        ("/reply", {**REPLY, "time": 10**15}, "time must be Unix seconds"),
        ("/reply", {k: v for k, v in REPLY.items() if k != "text"}, "text is missing"),
        ("", "TD", "body must be a JSON array (delivery reports) or a JSON object (a reply)"),
        ("", {**REPLY, "mobile": ""}, "mobile must not be empty"),
    ],
)
def test_a_malformed_body_is_refused_and_nothing_is_written(
    receiver: Receiver, path: str, body: Any, message: str
) -> None:
    message_id = record_sent(receiver.sessions, REPORT["mobile"], REPORT["sid"])

    answer = receiver.post(path, body)

    assert answer.status_code == 400
    assert answer.json()["result"] == 1004
    assert message in answer.json()["errmsg"]
    assert row_counts(receiver.sessions) == (0, 0, 0)
    assert statuses(receiver.sessions, [message_id]) == {message_id: SENT}


def test_a_body_over_the_limit_is_refused_without_being_read(receiver: Receiver) -> None:
    huge = json.dumps([REPORT] * 12_000).encode()  # about 2 MiB, well-formed
    assert len(huge) > 1 << 20

    declared = receiver.post("/status", huge)
    streamed = receiver.http.post(
        f"{receiver.callback_url}/status",
        data=iter([huge[i : i + 65536] for i in range(0, len(huge), 65536)]),
        timeout=30,
    )

    for answer in (declared, streamed):
        assert answer.status_code == 413
        assert answer.json()["result"] == 1004
    assert row_counts(receiver.sessions) == (0, 0, 0)


def test_a_weak_token_is_refused() -> None:
    for token in ("", "short", "a" * 15, "has/slash" * 3, "has space" * 3, "令牌" * 10):
        with pytest.raises(ValueError, match="at least 16 characters"):
            check_token(token)
    guessable = ["a" * 16, "x" * 24, "abcdefghijklmnop", "A-z_0.9~" * 2, "password1234567890"]
    for token in guessable:
        with pytest.raises(ValueError, match="too easy to guess") as refused:
            check_token(token)
        assert token not in str(refused.value)
        assert "secrets.token_urlsafe(32)" in str(refused.value)
    for _ in range(2000):
        token = secrets.token_urlsafe(16)
        assert check_token(token) == token
    assert check_token("Zq3-xT9_vB7.kW2~") == "Zq3-xT9_vB7.kW2~"


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
ODD = st.one_of(st.just("2024-05-01 12:00:00"), st.sampled_from(["SUCCESS", "FAIL"]), JSON)
MISSING = object()


def near(valid: dict[str, Any], **varied: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Objects like ``valid``: each field mostly valid (or from ``varied``), else odd or missing."""

    def field(name: str) -> st.SearchStrategy[Any]:
        good = varied.get(name, st.just(valid[name]))
        return st.integers(0, 9).flatmap(
            lambda n: good if n < 8 else ODD if n < 9 else st.just(MISSING)
        )

    shaped = st.fixed_dictionaries({name: field(name) for name in valid})
    return shaped.map(lambda item: {k: v for k, v in item.items() if v is not MISSING})


NEAR_REPORT = near(REPORT, sid=st.text(min_size=1, max_size=70))
NEAR_REPLY = near(REPLY, text=st.text(max_size=20), time=st.integers(-10, 2**40))


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    body=st.one_of(JSON, st.lists(NEAR_REPORT, min_size=1, max_size=3), NEAR_REPLY),
    path=st.sampled_from(["/status", "/reply", ""]),
)
def test_any_json_gets_a_4xx_or_ok_and_writes_only_when_ok(
    receiver: Receiver, body: Any, path: str
) -> None:
    before = row_counts(receiver.sessions)

    answer = receiver.post(path, body)

    assert answer.status_code in (200, 400), answer.text
    assert answer.json()["result"] == (0 if answer.status_code == 200 else 1004)
    if answer.status_code != 200:
        assert row_counts(receiver.sessions) == before
    elif isinstance(body, list):
        assert row_counts(receiver.sessions)[1:] == before[1:]
        assert row_counts(receiver.sessions)[0] - before[0] <= len(body)
    else:
        assert row_counts(receiver.sessions)[0] == before[0]


def test_the_command_serves_the_ledger_and_never_prints_its_token(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    upgrade(url)
    token = secrets.token_urlsafe(24)
    environment = child_environment({"SMS_DATABASE_URL": url, "SMS_RECEIVER_TOKEN": token})
    command = [str(Path(sys.executable).with_name("sms-worker")), "receiver", "--port", "0"]
    process = ManagedProcess("receiver", command, environment, tmp_path / "receiver.log",
                             "stop with Ctrl-C", cwd=tmp_path)  # fmt: skip
    with process.start(timeout=30):
        printed = (tmp_path / "receiver.log").read_text()
        base = printed.split("listening on ")[1].split()[0]
        taken = requests.post(f"{base}/callbacks/{token}/status", json=[REPORT], timeout=30)
        refused = requests.post(f"{base}/callbacks/{token}/status", json={}, timeout=30)
    printed = (tmp_path / "receiver.log").read_text()

    assert (taken.status_code, refused.status_code) == (200, 400)
    assert f"{base}/callbacks/********/status" in printed
    assert token not in printed
    engine = make_engine(url)
    try:
        assert report_rows(session_factory(engine))[0].sid == REPORT["sid"]
    finally:
        engine.dispose()


def test_the_command_needs_a_strong_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no .env
    for name in [name for name in os.environ if name.startswith("SMS_")]:
        monkeypatch.delenv(name)

    missing = CliRunner().invoke(main, ["receiver"])
    weak = CliRunner().invoke(main, ["receiver", "--token", "tooweak"])

    assert (missing.exit_code, weak.exit_code) == (2, 2)
    assert "no token: set SMS_RECEIVER_TOKEN" in missing.output
    assert "at least 16 characters" in weak.output
    assert "tooweak" not in weak.output


def _pull_all(simulator: SimulatorServer) -> list[dict[str, Any]]:
    """What the simulator made, read back from its pull queue (it pushed the same)."""
    caller = SignedCaller(simulator.url)
    items: list[dict[str, Any]] = []
    for _ in range(20):
        page = caller.pull(0, 100)["data"]
        items += page
        if len(page) < 100:
            return items
    raise AssertionError("the pull queue did not drain")
