"""The simulator's control API as a hostile network would try it: a token beyond loopback, no
secret in any answer, 1 MiB bodies, values checked, and no 500 whatever the body.

The command runs as users run it (``sms-worker simulator`` in a subprocess); the guarded server
listens on loopback with a token set, which the token then guards exactly as it would on
0.0.0.0. Nothing here listens beyond loopback: refusing to start is checked before binding.
"""

from __future__ import annotations

import logging
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests.fixtures.pipeline import child_environment
from tests.fixtures.simulator import SignedCaller
from worker import clock
from worker.runners.processes import ManagedProcess
from worker.simulator.config import ConfigError, on_worker_clock
from worker.simulator.control_auth import is_loopback
from worker.simulator.server import SimulatorServer

SMS_WORKER = str(Path(sys.executable).with_name("sms-worker"))
TIMEOUT = 30
MIB = 1 << 20
# Every control route and method; a body only where the route reads one.
CONTROL_CALLS = [
    ("GET", "/_sim/inbox", None),
    ("GET", "/_sim/requests", None),
    ("GET", "/_sim/script", None),
    ("POST", "/_sim/script", {"mobile": "13700000001", "steps": [1008]}),
    ("GET", "/_sim/faults", None),
    ("PUT", "/_sim/faults", {"rates": {"1008": 1.0}}),
    ("GET", "/_sim/clock", None),
    ("PUT", "/_sim/clock", {"now": 1_700_000_000}),
    ("GET", "/_sim/limits", None),
    ("PUT", "/_sim/limits", {"balance": 0}),
    ("GET", "/_sim/reports", None),
    ("PUT", "/_sim/reports", {"callback_url": "http://127.0.0.1:9/callbacks/x"}),
    ("POST", "/_sim/reports/flush", None),
    ("POST", "/_sim/replies", {"mobile": "13700000001", "text": "TD"}),
    ("GET", "/_sim/stats", None),
    ("GET", "/_sim/config", None),
    ("POST", "/_sim/reset", None),
    ("GET", "/_sim/nowhere", None),
]


def run_simulator(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``sms-worker simulator`` that is expected to exit by itself (a refusal to start)."""
    return subprocess.run(
        [SMS_WORKER, "simulator", "--port", "0", *args],
        env=child_environment(env or {}),
        capture_output=True,
        text=True,
        timeout=60,
    )


StartSimulator = Callable[[dict[str, str]], str]


@pytest.fixture
def start_simulator(tmp_path: Path) -> Iterator[StartSimulator]:
    """Start ``sms-worker simulator`` on loopback with ``env``; its base URL."""
    started: list[ManagedProcess] = []

    def start(env: dict[str, str]) -> str:
        log = tmp_path / f"simulator-{len(started)}.log"
        command = [SMS_WORKER, "simulator", "--port", "0", "--log-level", "warning"]
        process = ManagedProcess("simulator", command, child_environment(env), log,
                                 "stop with Ctrl-C", cwd=tmp_path)  # fmt: skip
        started.append(process.start(timeout=60))
        return log.read_text().split("listening on ")[1].split()[0]

    yield start
    for process in started:
        process.stop()


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "sim.example.com"])
def test_beyond_loopback_the_command_will_not_start_without_a_token(host: str) -> None:
    done = run_simulator("--host", host)

    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1
    assert "SMS_SIMULATOR_CONTROL_TOKEN_FILE" in done.stderr
    assert "secrets.token_urlsafe(32)" in done.stderr
    assert "listening" not in done.stdout


def test_the_python_server_will_not_start_beyond_loopback_without_a_token() -> None:
    with pytest.raises(ConfigError, match="SMS_SIMULATOR_CONTROL_TOKEN"):
        SimulatorServer(host="0.0.0.0")
    assert [is_loopback(h) for h in ("127.0.0.1", "127.3.4.5", "::1", "[::1]", "localhost")] == [
        True
    ] * 5
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.1", "sim.example.com"))


def test_a_guessable_or_doubled_control_token_is_refused(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(secrets.token_urlsafe(32), encoding="utf-8")
    weak = "a" * 16
    cases = [
        run_simulator("--host", "0.0.0.0", env={"SMS_SIMULATOR_CONTROL_TOKEN": weak}),
        run_simulator(env={"SMS_SIMULATOR_CONTROL_TOKEN": "abcdefghijklmnopqrstuvwxyz"}),
        run_simulator(
            env={
                "SMS_SIMULATOR_CONTROL_TOKEN": secrets.token_urlsafe(32),
                "SMS_SIMULATOR_CONTROL_TOKEN_FILE": str(token_file),
            }
        ),
        run_simulator(env={"SMS_SIMULATOR_CONTROL_TOKEN_FILE": str(tmp_path / "missing")}),
    ]
    for done in cases:
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1 and weak not in done.stderr
    assert "too easy to guess" in cases[0].stderr and "token_urlsafe(32)" in cases[0].stderr
    assert "give the control token once" in cases[2].stderr


def test_with_a_token_every_control_route_needs_it(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    token = secrets.token_urlsafe(32)
    token_file = tmp_path / "control-token"
    token_file.write_text(f"{token}\n", encoding="utf-8")
    url = start_simulator({"SMS_SIMULATOR_CONTROL_TOKEN_FILE": str(token_file)})
    wrong_headers = [
        {},
        {"Authorization": f"Bearer {secrets.token_urlsafe(32)}"},
        {"Authorization": f"Bearer {token}x"},
        {"Authorization": f"Bearer {token[:-1]}"},
        {"Authorization": token},
        {"Authorization": f"Basic {token}"},
        {"Authorization": f"bearer  {token}"},
    ]

    with requests.Session() as http:
        for method, path, body in CONTROL_CALLS:
            for headers in wrong_headers:
                answer = http.request(method, url + path, json=body, headers=headers, timeout=30)
                assert answer.status_code == 401, (method, path, headers)
                assert token not in answer.text
                assert "Authorization: Bearer" in answer.json()["error"]
        clock = http.get(f"{url}/_sim/clock", headers=bearer(token), timeout=TIMEOUT).json()
        stats = http.get(f"{url}/_sim/stats", headers=bearer(token), timeout=TIMEOUT).json()
        health = http.get(f"{url}/_sim/health", timeout=TIMEOUT)

    # Nothing the refused calls asked for happened.
    assert abs(clock["offset"]) < 1 and stats["reports"]["settings"]["callback_url"] is None
    assert stats["balance"] is None and stats["scripted_numbers"] == 0
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    # The gateway is not behind the token: its requests are signed with the appkey.
    assert SignedCaller(url).send_template()["result"] == 0


def test_the_simulator_clock_follows_sms_clock_offset_seconds(
    start_simulator: StartSimulator,
) -> None:
    url = start_simulator({"SMS_CLOCK_OFFSET_SECONDS": "7200"})
    on_the_shifted_clock = SignedCaller(url, clock_offset=7200)
    on_the_real_clock = SignedCaller(url)

    assert on_the_shifted_clock.send_template()["result"] == 0
    assert on_the_real_clock.send_template("13700000002")["result"] == 1021
    with requests.Session() as http:
        assert http.get(f"{url}/_sim/clock", timeout=TIMEOUT).json()["offset"] == 7200
        moved = http.put(f"{url}/_sim/clock", json={"offset": 0}, timeout=TIMEOUT)
        assert moved.json()["offset"] == 0
        assert on_the_real_clock.send_template("13700000003")["result"] == 0
        back = http.put(f"{url}/_sim/clock", json={"real": True}, timeout=TIMEOUT)
        assert back.json()["offset"] == 7200
        http.put(f"{url}/_sim/clock", json={"offset": -50}, timeout=TIMEOUT)
        http.post(f"{url}/_sim/reset", timeout=TIMEOUT)
        assert http.get(f"{url}/_sim/clock", timeout=TIMEOUT).json()["offset"] == 7200
    assert on_the_shifted_clock.send_template("13700000004")["result"] == 0


def test_a_simulator_beside_workers_runs_on_their_clock() -> None:
    """What the demo does: the simulator in the workers' process, on worker.clock."""
    before = clock.offset_seconds()
    clock.set_offset(7200)
    try:
        with SimulatorServer(on_worker_clock()) as server:
            assert SignedCaller(server.url, clock_offset=7200).send_template()["result"] == 0
            assert SignedCaller(server.url).send_template("13700000002")["result"] == 1021
    finally:
        clock.set_offset(before)


def test_an_offset_beyond_the_dates_the_simulator_can_show_is_refused() -> None:
    done = run_simulator(env={"SMS_CLOCK_OFFSET_SECONDS": "1e12"})
    assert done.returncode == 2 and "SMS_CLOCK_OFFSET_SECONDS" in done.stderr


def test_no_answer_or_log_line_shows_a_url_secret(
    simulator: SimulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    token, password, key = (secrets.token_urlsafe(24) for _ in range(3))
    # A closed port on loopback: the push fails and is logged.
    callback = f"http://user:{password}@127.0.0.1:9/callbacks/{token}/status?key={key}#{key}"
    answers = [simulator.control.set_reports(callback, delay_seconds=0, retries=0)]
    with caplog.at_level(logging.INFO):
        simulator.control.reply("13700000001", "TD")
        simulator.control.flush_reports()
    with requests.Session() as http:
        for path in ("/_sim/reports", "/_sim/stats", "/_sim/config", "/_sim/requests"):
            answers.append(http.get(simulator.url + path, timeout=TIMEOUT).json())
    shown = repr(answers) + caplog.text

    for secret in (token, password, key):
        assert secret not in shown
    masked = "http://********@127.0.0.1:9/callbacks/********/status?********#********"
    assert answers[0]["callback_url"] == masked
    assert answers[2]["reports"]["settings"]["callback_url"] == masked
    assert "callback to 127.0.0.1:9 failed" in caplog.text


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
