"""``sms-worker doctor``, the installed command in a child process, against real parts: a per-run
PostgreSQL database, a per-run Redis database with a running worker, the simulator on loopback,
RabbitMQ, and ports where nothing listens."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.databases import fresh_postgresql_database
from tests.fixtures.pipeline import Pipeline, child_environment
from tests.fixtures.simulator import APPKEY, SDKAPPID, CallbackReceiver
from worker.celery.routing import QUEUE_MAINTENANCE, QUEUE_MARKETING, QUEUE_TRANSACTIONAL
from worker.ledger.migrate import upgrade
from worker.runners.processes import celery_worker
from worker.simulator.server import SimulatorServer

SMS_WORKER = str(Path(sys.executable).with_name("sms-worker"))
CHECKS = ["configuration", "database", "migrations", "broker", "throttle", "workers", "gateway"]
WRONG_APPKEY = "0c7d3e5a9b1f4e2d8a6b4c2e0f1d3b5a"
# Each check's bound: generous, so that a busy machine's slow answer is never read as none.
# Only a check that must fail (nothing listens, no worker answers) waits that long.
TIMEOUT = 30.0
COMMAND_TIMEOUT_SECONDS = 600  # a bound for a hung command, far above any busy machine's time
READY_TIMEOUT_SECONDS = 300.0


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port bound but not listening: a connection to it is refused at once."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        yield holder.getsockname()[1]


@pytest.fixture
def healthy(pipeline: Pipeline, simulator: SimulatorServer) -> dict[str, str]:
    """Settings under which every check passes (the pipeline's worker consumes every queue of
    its broker): each test breaks one of them."""
    return {
        "SMS_DATABASE_URL": pipeline.settings.database_url,
        "SMS_BROKER_URL": pipeline.settings.broker_url,
        "SMS_GATEWAY_URL": simulator.url,
        "SMS_SDKAPPID": SDKAPPID,
        "SMS_APPKEY": APPKEY,
    }


def doctor(
    environment: dict[str, str], folder: Path, *args: str, timeout: float = TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """``sms-worker doctor`` in ``folder`` (no .env there) with exactly these SMS_* settings."""
    return subprocess.run(
        [SMS_WORKER, "doctor", "--timeout", str(timeout), *args],
        cwd=folder,
        env={**child_environment(environment), "COLUMNS": "250"},
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_SECONDS,
        check=False,
    )


def checks(
    environment: dict[str, str], folder: Path, *, timeout: float = TIMEOUT
) -> tuple[int, dict[str, dict[str, Any]]]:
    """The exit code and the checks by name, read from --format json."""
    result = doctor(environment, folder, "--format", "json", timeout=timeout)
    assert "Traceback" not in result.stderr, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is (result.returncode == 0)
    return result.returncode, {check["check"]: check for check in report["checks"]}


def statuses(found: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {name: check["status"] for name, check in found.items()}


def all_ok_but(**others: str) -> dict[str, str]:
    return {**dict.fromkeys(CHECKS, "OK"), **others}


def test_all_checks_pass_and_the_simulator_gets_one_signed_call(
    healthy: dict[str, str], simulator: SimulatorServer, tmp_path: Path
) -> None:
    result = doctor(healthy, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"All {len(CHECKS)} checks passed." in result.stdout
    for name in CHECKS:
        line = next(line for line in result.stdout.splitlines() if f" {name} " in line)
        assert " OK " in line, line

    code, found = checks(healthy, tmp_path)
    assert code == 0 and list(found) == CHECKS
    assert set(statuses(found).values()) == {"OK"}
    assert "signed test call" in found["gateway"]["detail"]
    assert "(SMS_BROKER_URL) answers PING" in found["throttle"]["detail"]
    for queue in (QUEUE_TRANSACTIONAL, QUEUE_MARKETING, QUEUE_MAINTENANCE):
        assert queue in found["workers"]["detail"]
    calls = [request for request in simulator.control.requests() if request.api == "pullsendstatus"]
    assert len(calls) == 2 and all(call.sig_valid for call in calls)
    assert simulator.control.inbox() == []  # checked, nothing sent
    assert APPKEY not in result.stdout


def test_a_database_not_migrated_fails_with_the_migrate_hint(
    healthy: dict[str, str], tmp_path: Path
) -> None:
    with fresh_postgresql_database() as url:
        result = doctor({**healthy, "SMS_DATABASE_URL": url}, tmp_path)
        assert result.returncode == 1, result.stdout + result.stderr
        line = next(line for line in result.stdout.splitlines() if " migrations " in line)
        assert " FAIL " in line and "run `sms-worker migrate`" in line
        code, found = checks({**healthy, "SMS_DATABASE_URL": url}, tmp_path)
        assert code == 1
        assert statuses(found) == all_ok_but(migrations="FAIL")
        assert "never migrated" in found["migrations"]["detail"]

        upgrade(url)
        assert checks({**healthy, "SMS_DATABASE_URL": url}, tmp_path)[0] == 0


def test_a_missing_sqlite_file_fails_and_is_not_created(
    healthy: dict[str, str], tmp_path: Path
) -> None:
    file = tmp_path / "nowhere.db"
    code, found = checks({**healthy, "SMS_DATABASE_URL": f"sqlite:///{file}"}, tmp_path)
    assert code == 1
    assert (found["database"]["status"], found["migrations"]["status"]) == ("FAIL", "SKIP")
    assert "sms-worker migrate" in found["database"]["fix"]
    assert not file.exists()


def test_an_unreachable_database_fails_without_its_password(
    healthy: dict[str, str], closed_port: int, tmp_path: Path
) -> None:
    url = f"postgresql://sms:hunter2@127.0.0.1:{closed_port}/sms"
    result = doctor({**healthy, "SMS_DATABASE_URL": url}, tmp_path, "--format", "json")
    assert result.returncode == 1
    found = {check["check"]: check for check in json.loads(result.stdout)["checks"]}
    assert (found["database"]["status"], found["migrations"]["status"]) == ("FAIL", "SKIP")
    assert found["database"]["detail"].startswith(f"postgresql://sms:***@127.0.0.1:{closed_port}")
    assert "SMS_DATABASE_URL" in found["database"]["fix"]
    assert "hunter2" not in result.stdout + result.stderr


def test_an_unreachable_broker_fails(
    healthy: dict[str, str], closed_port: int, tmp_path: Path
) -> None:
    broker = f"redis://127.0.0.1:{closed_port}/0"
    code, found = checks({**healthy, "SMS_BROKER_URL": broker}, tmp_path)
    assert code == 1
    # The throttle would be in the broker's Redis, and the workers are asked through it.
    assert statuses(found) == all_ok_but(broker="FAIL", throttle="SKIP", workers="SKIP")
    assert found["broker"]["detail"].startswith(broker)
    assert "SMS_BROKER_URL" in found["broker"]["fix"]


def test_a_throttle_redis_that_does_not_answer_fails(
    healthy: dict[str, str], closed_port: int, tmp_path: Path
) -> None:
    throttle = f"redis://:hunter2@127.0.0.1:{closed_port}/1"
    code, found = checks({**healthy, "SMS_REDIS_URL": throttle}, tmp_path)
    assert code == 1
    assert statuses(found) == all_ok_but(throttle="FAIL")
    assert found["throttle"]["detail"].startswith(f"redis://:**@127.0.0.1:{closed_port}/1")
    assert "SMS_REDIS_URL" in found["throttle"]["detail"]
    assert found["throttle"]["fix"] == "start that Redis, or correct SMS_REDIS_URL"
    assert "hunter2" not in json.dumps(found)


def test_a_rabbitmq_broker_needs_a_throttle_redis(
    healthy: dict[str, str], rabbitmq_url: str, redis_url: str, closed_port: int, tmp_path: Path
) -> None:
    # Without SMS_REDIS_URL workers refuse to start on RabbitMQ: a configuration error (exit 2).
    # No worker consumes this run's RabbitMQ vhost: the workers check waits the whole timeout.
    code, found = checks({**healthy, "SMS_BROKER_URL": rabbitmq_url}, tmp_path, timeout=10)
    assert code == 2
    assert found["broker"]["status"] == "OK"
    assert "guest:**@" in found["broker"]["detail"]  # the password hidden
    assert found["throttle"]["status"] == "FAIL"
    assert found["throttle"]["detail"].startswith("SMS_REDIS_URL: not set")
    assert found["throttle"]["fix"].startswith("set SMS_REDIS_URL")

    with_redis = {**healthy, "SMS_BROKER_URL": rabbitmq_url, "SMS_REDIS_URL": redis_url}
    code, found = checks(with_redis, tmp_path, timeout=10)
    assert found["throttle"]["status"] == "OK"
    assert "(SMS_REDIS_URL) answers PING" in found["throttle"]["detail"]
    assert code == 1 and statuses(found) == all_ok_but(workers="FAIL")

    closed = f"amqp://guest:guest@127.0.0.1:{closed_port}//"
    code, found = checks({**with_redis, "SMS_BROKER_URL": closed}, tmp_path)
    assert code == 1 and found["broker"]["status"] == "FAIL"
    assert "refused" in found["broker"]["detail"].lower()
    assert found["workers"]["status"] == "SKIP"


def test_no_worker_on_the_broker_fails(
    healthy: dict[str, str], idle_broker_url: str, tmp_path: Path
) -> None:
    # Nothing consumes this Redis database: the failure does not depend on how long it waits.
    code, found = checks({**healthy, "SMS_BROKER_URL": idle_broker_url}, tmp_path, timeout=1)
    assert code == 1
    assert statuses(found) == all_ok_but(workers="FAIL")
    assert found["workers"]["detail"].startswith("no worker answered within 1 s")
    assert "celery -A worker worker" in found["workers"]["fix"]


def test_a_queue_no_worker_consumes_fails_naming_it(
    healthy: dict[str, str], idle_broker_url: str, tmp_path: Path
) -> None:
    environment = {**healthy, "SMS_BROKER_URL": idle_broker_url}
    worker = celery_worker(
        child_environment(environment), tmp_path / "worker.log", queues=[QUEUE_TRANSACTIONAL],
        concurrency=1, name="doctor-test", cwd=tmp_path,
    )  # fmt: skip
    with worker.start(READY_TIMEOUT_SECONDS):  # stopped on the way out, whatever happens
        code, found = checks(environment, tmp_path)
    assert code == 1
    assert statuses(found) == all_ok_but(workers="FAIL")
    detail = found["workers"]["detail"]
    assert detail.startswith(f"no worker consumes {QUEUE_MARKETING}, {QUEUE_MAINTENANCE}")
    assert f"{QUEUE_TRANSACTIONAL}: doctor-test@" in detail
    assert found["workers"]["fix"] == (
        f"start a worker for it: celery -A worker worker -Q {QUEUE_MARKETING},{QUEUE_MAINTENANCE}"
    )


@pytest.mark.parametrize(
    ("setting", "value"),
    [("SMS_SEND_RATE", "fast"), ("SMS_BROKER_URL", "localhost"), ("SMS_SDKAPPID", "")],
)
def test_bad_configuration_exits_2_naming_the_setting(
    healthy: dict[str, str], setting: str, value: str, tmp_path: Path
) -> None:
    environment = {name: v for name, v in healthy.items() if name != setting}
    if value:
        environment[setting] = value
    result = doctor(environment, tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    line = next(line for line in result.stdout.splitlines() if " configuration " in line)
    assert " FAIL " in line and setting in line
    assert "Traceback" not in result.stdout + result.stderr


def test_a_wrong_appkey_fails_the_signed_call_naming_the_setting(
    healthy: dict[str, str], simulator: SimulatorServer, tmp_path: Path
) -> None:
    code, found = checks({**healthy, "SMS_APPKEY": WRONG_APPKEY}, tmp_path)
    assert code == 1
    assert statuses(found) == all_ok_but(gateway="FAIL")
    assert "1001" in found["gateway"]["detail"]
    assert found["gateway"]["fix"].endswith("check SMS_APPKEY")
    assert WRONG_APPKEY not in json.dumps(found)
    (call,) = simulator.control.requests()
    assert (call.api, call.sig_valid) == ("pullsendstatus", False)


def test_a_wrong_appkey_read_from_a_file_names_the_file_setting(
    healthy: dict[str, str], tmp_path: Path
) -> None:
    key_file = tmp_path / "appkey"
    key_file.write_text(WRONG_APPKEY + "\n", encoding="utf-8")
    from_file = {k: v for k, v in healthy.items() if k != "SMS_APPKEY"}
    code, found = checks({**from_file, "SMS_APPKEY_FILE": str(key_file)}, tmp_path)
    assert code == 1 and found["gateway"]["status"] == "FAIL"
    assert found["gateway"]["fix"].endswith("check SMS_APPKEY_FILE")

    # The same for an account of an SMS_CONFIG file whose key is in a file of its own.
    accounts = tmp_path / "accounts.toml"
    accounts.write_text(
        f'[accounts.shop]\nsdkappid = {SDKAPPID}\nappkey_file = "appkey"\n', encoding="utf-8"
    )
    no_credentials = {k: v for k, v in from_file.items() if k != "SMS_SDKAPPID"}
    code, found = checks({**no_credentials, "SMS_CONFIG": str(accounts)}, tmp_path)
    assert code == 1 and found["gateway"]["status"] == "FAIL"
    assert found["gateway"]["fix"].endswith(
        "check accounts.shop.appkey_file in the SMS_CONFIG file"
    )
    assert WRONG_APPKEY not in json.dumps(found)


def test_a_gateway_that_is_not_the_simulator_only_gets_a_connection(
    healthy: dict[str, str], callback_receiver: CallbackReceiver, tmp_path: Path
) -> None:
    # A loopback HTTP server without the simulator's control API stands in for a real gateway.
    gateway = callback_receiver.url.split("/sms/")[0]
    code, found = checks({**healthy, "SMS_GATEWAY_URL": gateway}, tmp_path)
    assert code == 0
    assert found["gateway"]["status"] == "OK"
    assert "no test call was sent" in found["gateway"]["detail"]
    assert callback_receiver.bodies == []


def test_an_unreachable_gateway_fails(
    healthy: dict[str, str], closed_port: int, tmp_path: Path
) -> None:
    gateway = f"http://127.0.0.1:{closed_port}"
    code, found = checks({**healthy, "SMS_GATEWAY_URL": gateway}, tmp_path)
    assert code == 1
    assert statuses(found) == all_ok_but(gateway="FAIL")
    assert "cannot connect" in found["gateway"]["detail"]
    assert "SMS_GATEWAY_URL" in found["gateway"]["fix"]
