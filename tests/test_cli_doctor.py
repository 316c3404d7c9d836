"""``sms-worker doctor`` against real parts: a per-run PostgreSQL database, a per-run Redis
database, the simulator on loopback, and ports where nothing listens."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from tests.fixtures.databases import fresh_postgresql_database
from tests.fixtures.simulator import APPKEY, SDKAPPID, CallbackReceiver
from worker.cli import main
from worker.ledger.migrate import upgrade
from worker.simulator.server import SimulatorServer

CHECKS = ["configuration", "database", "migrations", "broker", "gateway"]
WRONG_APPKEY = "0c7d3e5a9b1f4e2d8a6b4c2e0f1d3b5a"


@pytest.fixture(autouse=True)
def no_machine_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No SMS_* variable of the machine and no .env file: each test says what it runs with."""
    for name in [name for name in os.environ if name.startswith("SMS_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port bound but not listening: a connection to it is refused at once."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        yield holder.getsockname()[1]


@pytest.fixture
def healthy(
    ledger_postgresql_url: str, redis_url: str, simulator: SimulatorServer
) -> dict[str, str]:
    """Settings under which every check passes: each test breaks one of them."""
    return {
        "SMS_DATABASE_URL": ledger_postgresql_url,
        "SMS_BROKER_URL": redis_url,
        "SMS_GATEWAY_URL": simulator.url,
        "SMS_SDKAPPID": SDKAPPID,
        "SMS_APPKEY": APPKEY,
    }


def doctor(environment: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(
        main, ["doctor", "--timeout", "5", *args], env={"COLUMNS": "200", **environment}
    )


def checks(environment: dict[str, str]) -> tuple[int, dict[str, dict[str, Any]]]:
    """The exit code and the checks by name, read from --format json."""
    result = doctor(environment, "--format", "json")
    report = json.loads(result.stdout)
    assert report["ok"] is (result.exit_code == 0)
    return result.exit_code, {check["check"]: check for check in report["checks"]}


def statuses(found: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {name: check["status"] for name, check in found.items()}


def test_all_checks_pass_and_the_simulator_gets_one_signed_call(
    healthy: dict[str, str], simulator: SimulatorServer
) -> None:
    result = doctor(healthy)
    assert result.exit_code == 0, result.output
    assert "All 5 checks passed." in result.stdout
    for name in CHECKS:
        line = next(line for line in result.stdout.splitlines() if f" {name} " in line)
        assert " OK " in line, line

    code, found = checks(healthy)
    assert code == 0 and list(found) == CHECKS
    assert set(statuses(found).values()) == {"OK"}
    assert "signed test call" in found["gateway"]["detail"]
    calls = [request for request in simulator.control.requests() if request.api == "pullsendstatus"]
    assert len(calls) == 2 and all(call.sig_valid for call in calls)
    assert simulator.control.inbox() == []  # checked, nothing sent
    assert APPKEY not in result.output


def test_a_database_not_migrated_fails_with_the_migrate_hint(healthy: dict[str, str]) -> None:
    with fresh_postgresql_database() as url:
        result = doctor({**healthy, "SMS_DATABASE_URL": url})
        assert result.exit_code == 1, result.output
        line = next(line for line in result.stdout.splitlines() if " migrations " in line)
        assert " FAIL " in line and "run `sms-worker migrate`" in line
        code, found = checks({**healthy, "SMS_DATABASE_URL": url})
        assert code == 1
        assert statuses(found) == {**dict.fromkeys(CHECKS, "OK"), "migrations": "FAIL"}
        assert "never migrated" in found["migrations"]["detail"]

        upgrade(url)
        assert checks({**healthy, "SMS_DATABASE_URL": url})[0] == 0


def test_a_missing_sqlite_file_fails_and_is_not_created(
    healthy: dict[str, str], tmp_path: Path
) -> None:
    file = tmp_path / "nowhere.db"
    code, found = checks({**healthy, "SMS_DATABASE_URL": f"sqlite:///{file}"})
    assert code == 1
    assert (found["database"]["status"], found["migrations"]["status"]) == ("FAIL", "SKIP")
    assert "sms-worker migrate" in found["database"]["fix"]
    assert not file.exists()


def test_an_unreachable_database_fails_without_its_password(
    healthy: dict[str, str], closed_port: int
) -> None:
    url = f"postgresql://sms:hunter2@127.0.0.1:{closed_port}/sms"
    result = doctor({**healthy, "SMS_DATABASE_URL": url}, "--format", "json")
    assert result.exit_code == 1
    found = {check["check"]: check for check in json.loads(result.stdout)["checks"]}
    assert (found["database"]["status"], found["migrations"]["status"]) == ("FAIL", "SKIP")
    assert found["database"]["detail"].startswith(f"postgresql://sms:***@127.0.0.1:{closed_port}")
    assert "SMS_DATABASE_URL" in found["database"]["fix"]
    assert "hunter2" not in result.output


def test_an_unreachable_broker_fails(healthy: dict[str, str], closed_port: int) -> None:
    broker = f"redis://127.0.0.1:{closed_port}/0"
    code, found = checks({**healthy, "SMS_BROKER_URL": broker})
    assert code == 1
    assert statuses(found) == {**dict.fromkeys(CHECKS, "OK"), "broker": "FAIL"}
    assert found["broker"]["detail"].startswith(broker)
    assert "SMS_BROKER_URL" in found["broker"]["fix"]


def test_a_rabbitmq_broker_is_checked_through_kombu(
    healthy: dict[str, str], rabbitmq_url: str, closed_port: int
) -> None:
    code, found = checks({**healthy, "SMS_BROKER_URL": rabbitmq_url})
    assert code == 0 and found["broker"]["status"] == "OK"
    assert "guest:**@" in found["broker"]["detail"]  # the password hidden
    closed = f"amqp://guest:guest@127.0.0.1:{closed_port}//"
    code, found = checks({**healthy, "SMS_BROKER_URL": closed})
    assert code == 1 and found["broker"]["status"] == "FAIL"
    assert "refused" in found["broker"]["detail"].lower()


@pytest.mark.parametrize(
    ("setting", "value"),
    [("SMS_SEND_RATE", "fast"), ("SMS_BROKER_URL", "localhost"), ("SMS_SDKAPPID", "")],
)
def test_bad_configuration_exits_2_naming_the_setting(
    healthy: dict[str, str], setting: str, value: str
) -> None:
    environment = {name: v for name, v in healthy.items() if name != setting}
    if value:
        environment[setting] = value
    result = doctor(environment)
    assert result.exit_code == 2, result.output
    line = next(line for line in result.stdout.splitlines() if " configuration " in line)
    assert " FAIL " in line and setting in line
    assert "Traceback" not in result.output


def test_a_wrong_appkey_fails_the_signed_call_naming_the_setting(
    healthy: dict[str, str], simulator: SimulatorServer
) -> None:
    code, found = checks({**healthy, "SMS_APPKEY": WRONG_APPKEY})
    assert code == 1
    assert statuses(found) == {**dict.fromkeys(CHECKS, "OK"), "gateway": "FAIL"}
    assert "1001" in found["gateway"]["detail"] and "SMS_APPKEY" in found["gateway"]["fix"]
    assert WRONG_APPKEY not in json.dumps(found)
    (call,) = simulator.control.requests()
    assert (call.api, call.sig_valid) == ("pullsendstatus", False)


def test_a_gateway_that_is_not_the_simulator_only_gets_a_connection(
    healthy: dict[str, str], callback_receiver: CallbackReceiver
) -> None:
    # A loopback HTTP server without the simulator's control API stands in for a real gateway.
    gateway = callback_receiver.url.split("/sms/")[0]
    code, found = checks({**healthy, "SMS_GATEWAY_URL": gateway})
    assert code == 0
    assert found["gateway"]["status"] == "OK"
    assert "no test call was sent" in found["gateway"]["detail"]
    assert callback_receiver.bodies == []


def test_an_unreachable_gateway_fails(healthy: dict[str, str], closed_port: int) -> None:
    gateway = f"http://127.0.0.1:{closed_port}"
    code, found = checks({**healthy, "SMS_GATEWAY_URL": gateway})
    assert code == 1
    assert statuses(found) == {**dict.fromkeys(CHECKS, "OK"), "gateway": "FAIL"}
    assert "cannot connect" in found["gateway"]["detail"]
    assert "SMS_GATEWAY_URL" in found["gateway"]["fix"]
