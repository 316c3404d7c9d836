"""The receiver under hostile clients, over real loopback sockets: idle and trickling
connections are closed, connections are bounded, and every refused callback leaves one log line
and a count, never the token.

The servers here run with limits of about a second; every wait is for the server to answer or
close, bounded by a minute (tests/fixtures/slow_clients.py), never a measured duration.
"""

from __future__ import annotations

import logging
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client import REGISTRY

from tests.fixtures.databases import empty_ledger_tables
from tests.fixtures.pipeline import child_environment
from tests.fixtures.receiver import Receiver, row_counts
from tests.fixtures.slow_clients import (
    BOUND_SECONDS,
    connect,
    read_until_closed,
    status_of,
    trickle,
    trickle_after_answer,
)
from worker.ledger.db import make_engine, session_factory
from worker.receiver import AsgiServer, make_receiver_app
from worker.runners.limits import ServerLimits
from worker.runners.processes import ManagedProcess

QUICK = ServerLimits(max_connections=3, idle_timeout=1.0, read_timeout=1.0)
REPORT = {
    "user_receive_time": "2024-05-01 12:00:00",
    "nationcode": "86",
    "mobile": "13788888888",
    "report_status": "SUCCESS",
    "errmsg": "DELIVRD",
    "description": "用户短信送达成功",
    "sid": "8:limits0001",
}


def serve_receiver(url: str, limits: ServerLimits) -> Iterator[Receiver]:
    engine = make_engine(url)
    token = secrets.token_urlsafe(24)
    app = make_receiver_app(session_factory(engine), token)
    with AsgiServer(app, limits=limits) as server, requests.Session() as http:
        yield Receiver(server, token, session_factory(engine), http)
    engine.dispose()


@pytest.fixture
def quick_receiver(ledger_sqlite_url: str) -> Iterator[Receiver]:
    """A receiver closing idle and slow connections after a second, at most 3 connections."""
    empty_ledger_tables(ledger_sqlite_url)
    yield from serve_receiver(ledger_sqlite_url, QUICK)


@pytest.fixture
def patient_receiver(ledger_sqlite_url: str) -> Iterator[Receiver]:
    """At most 3 connections, but idle ones are kept a minute: only the bound closes them."""
    empty_ledger_tables(ledger_sqlite_url)
    limits = ServerLimits(max_connections=3, idle_timeout=BOUND_SECONDS, read_timeout=60.0)
    yield from serve_receiver(ledger_sqlite_url, limits)


def refused(reason: str) -> float:
    return REGISTRY.get_sample_value("sms_callbacks_refused_total", {"reason": reason}) or 0.0


def test_an_idle_connection_is_closed(quick_receiver: Receiver) -> None:
    with connect(quick_receiver.server.url) as idle:
        assert read_until_closed(idle) == b""


def test_an_idle_keep_alive_connection_is_closed_after_its_answer(
    quick_receiver: Receiver,
) -> None:
    with connect(quick_receiver.server.url) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: receiver\r\n\r\n")
        answer = read_until_closed(sock)
    assert status_of(answer) == 200 and answer.endswith(b'{"status":"ok"}')


def test_headers_sent_a_byte_at_a_time_are_cut_off(quick_receiver: Receiver) -> None:
    head = b"POST /callbacks/x/status HTTP/1.1\r\nHost: receiver\r\nX-Slow: "
    with connect(quick_receiver.server.url) as sock:
        answer = trickle(sock, head)
    assert status_of(answer) == 408


def test_leading_blank_lines_cannot_hold_a_connection(quick_receiver: Receiver) -> None:
    with connect(quick_receiver.server.url) as sock:
        answer = trickle(sock, b"\r\n", byte=b"\r\n")
    assert answer == b"" or status_of(answer) in (400, 408)


def test_a_body_sent_a_byte_at_a_time_is_cut_off_and_counted(
    quick_receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    before = refused("incomplete_body")
    head = (
        f"POST /callbacks/{quick_receiver.token}/status HTTP/1.1\r\nHost: receiver\r\n"
        "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n["
    ).encode()
    with caplog.at_level(logging.WARNING), connect(quick_receiver.server.url) as sock:
        answer = trickle(sock, head, byte=b" ")

    assert status_of(answer) == 408
    assert b"connection: close" in answer.lower()
    wait_for(lambda: refused("incomplete_body") == before + 1)
    lines = [r.getMessage() for r in caplog.records if "incomplete_body" in r.getMessage()]
    assert len(lines) == 1 and "127.0.0.1" in lines[0]
    assert quick_receiver.token not in caplog.text
    assert row_counts(quick_receiver.sessions) == (0, 0, 0)


def test_the_rest_of_a_body_refused_early_cannot_trickle_in_for_ever(
    quick_receiver: Receiver,
) -> None:
    head = (
        f"POST /callbacks/{quick_receiver.token}/status HTTP/1.1\r\nHost: receiver\r\n"
        f"Content-Length: {2 << 20}\r\n\r\n"
    ).encode()
    with connect(quick_receiver.server.url) as sock:
        answer = trickle_after_answer(sock, head)
    assert status_of(answer) == 413


def test_headers_too_large_are_refused(quick_receiver: Receiver) -> None:
    padding = b"X-Pad: " + b"a" * 1000 + b"\r\n"
    with connect(quick_receiver.server.url) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: receiver\r\n")
        try:
            for _ in range(200):  # 200 KB of headers, beyond the 64 KiB limit
                sock.sendall(padding)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = read_until_closed(sock)
    assert answer == b"" or status_of(answer) == 431


def test_connections_beyond_the_limit_are_refused_until_one_closes(
    patient_receiver: Receiver,
) -> None:
    url = patient_receiver.server.url
    held = [connect(url) for _ in range(3)]
    try:
        # Each held connection has been accepted once it answers a request.
        for sock in held:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: receiver\r\n\r\n")
            assert status_of(sock.recv(65536)) == 200
        with connect(url) as extra:
            answer = read_until_closed(extra)
        assert status_of(answer) == 503 and b"too many connections" in answer
    finally:
        held.pop().close()
    try:
        # The server learns of the close in its own time: ask again until it has room.
        wait_for(lambda: _health_over_a_new_connection(url) == 200)
    finally:
        for sock in held:
            sock.close()


def test_every_refused_callback_is_logged_once_and_counted_without_the_token(
    quick_receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = secrets.token_urlsafe(24)
    reasons = ("wrong_token", "unknown_path", "bad_body", "too_large")
    before = {reason: refused(reason) for reason in reasons}
    base = quick_receiver.server.url
    with caplog.at_level(logging.WARNING):
        answers = [
            quick_receiver.post("/status", [REPORT], token=wrong),
            quick_receiver.http.post(f"{base}/callback/{wrong}/status", json=[REPORT], timeout=30),
            quick_receiver.post("/status", b"[{"),
            quick_receiver.post("/status", b"[" + b" " * (2 << 20) + b"]"),
        ]

    assert [answer.status_code for answer in answers] == [404, 404, 400, 413]
    assert {reason: refused(reason) - before[reason] for reason in reasons} == dict.fromkeys(
        reasons, 1.0
    )
    lines = [
        r.getMessage() for r in caplog.records if r.getMessage().startswith("callback refused")
    ]
    assert [line.split("(")[1].split(")")[0] for line in lines] == list(reasons)
    assert all("from 127.0.0.1" in line for line in lines)
    assert quick_receiver.token not in caplog.text and wrong not in caplog.text
    assert row_counts(quick_receiver.sessions) == (0, 0, 0)


def test_the_command_takes_its_limits_from_the_environment(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    token = secrets.token_urlsafe(24)
    log = tmp_path / "receiver.log"
    environment = child_environment(
        {
            "SMS_DATABASE_URL": url,
            "SMS_RECEIVER_TOKEN": token,
            "SMS_RECEIVER_IDLE_TIMEOUT": "1",
            "SMS_RECEIVER_READ_TIMEOUT": "1",
            "SMS_RECEIVER_MAX_CONNECTIONS": "2",
        }
    )
    command = [str(Path(sys.executable).with_name("sms-worker")), "receiver", "--port", "0"]
    process = ManagedProcess("receiver", command, environment, log, "stop with Ctrl-C",
                             cwd=tmp_path)  # fmt: skip
    with process.start(timeout=30):
        base = log.read_text().split("listening on ")[1].split()[0]
        with connect(base) as idle:
            assert read_until_closed(idle) == b""
        head = f"POST /callbacks/{token}/status HTTP/1.1\r\nHost: r\r\nContent-Length: 99\r\n\r\n"
        with connect(base) as slow:
            assert status_of(trickle(slow, head.encode())) == 408
        requests.post(f"{base}/callbacks/{token}x/status", json=[REPORT], timeout=30)
    printed = log.read_text()
    assert "callback refused (incomplete_body) from 127.0.0.1" in printed
    assert "callback refused (wrong_token) from 127.0.0.1" in printed
    assert token not in printed


def test_the_command_refuses_a_guessable_token_with_the_way_to_make_one(tmp_path: Path) -> None:
    for token in ("a" * 16, "abcdefghijklmnopqrstuvwxyz", "password1234567890"):
        done = subprocess.run(
            [str(Path(sys.executable).with_name("sms-worker")), "receiver"],
            env=child_environment({"SMS_RECEIVER_TOKEN": token}),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1 and token not in done.stderr
        assert "too easy to guess" in done.stderr
        assert "secrets.token_urlsafe(32)" in done.stderr


def _health_over_a_new_connection(url: str) -> int:
    with connect(url) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: receiver\r\nConnection: close\r\n\r\n")
        answer = read_until_closed(sock)
    return status_of(answer) if answer else 0


def wait_for(condition: Callable[[], bool], bound: float = BOUND_SECONDS) -> None:
    deadline = time.monotonic() + bound
    while not condition():
        assert time.monotonic() < deadline, "the condition did not come true within the bound"
        time.sleep(0.05)
