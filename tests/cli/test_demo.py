"""``sms-worker demo`` beside a real setup: the installed command in a subprocess.

It must not be changed by a ``.env`` or settings it did not write, must not share queues with a
deployment's worker on the same Redis, must exit 1 (naming each message) when a message did not
end as it should, and must leave no folder, process or Redis claim behind however it ends.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest
from redis import Redis

from tests.fixtures.pipeline import child_environment, pipeline_environment, settings_under
from tests.fixtures.redis import redis_database_url
from worker.celery.application import make_app
from worker.celery.routing import QUEUE_MAINTENANCE, TASK_SWEEP
from worker.cli.demo_broker import OWNER_KEY
from worker.ledger.migrate import upgrade
from worker.runners.processes import celery_worker

SMS_WORKER = str(Path(sys.executable).parent / "sms-worker")
RUN_TIMEOUT_SECONDS = 600  # a bound for a hung demo, never expected to be reached
SUCCESS = "Handsets received 7 SMS"
BROKER_LINE = re.compile(r"^Broker\s+(\S+)", re.MULTILINE)
PIDS_LINE = re.compile(r"^Worker\s+pid (\d+); beat pid (\d+)", re.MULTILINE)
CLOSED_PORT_URL = "redis://127.0.0.1:1/0"
PROBLEM_LINE = re.compile(
    r"(Did not finish|Ended unexpectedly): \+\d+ \(.+\) is \w+, expected sent or delivered: .+"
)


@dataclass
class DemoRun:
    folder: Path  # its working directory
    tmpdir: Path  # TMPDIR: where its temporary folder goes
    out: Path
    err: Path
    process: subprocess.Popen[bytes]

    @property
    def stdout(self) -> str:
        return self.out.read_text("utf-8", errors="replace")

    @property
    def stderr(self) -> str:
        return self.err.read_text("utf-8", errors="replace")

    def wait(self) -> int:
        return self.process.wait(timeout=RUN_TIMEOUT_SECONDS)

    def wait_for_output(self, pattern: re.Pattern[str]) -> re.Match[str]:
        deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            found = pattern.search(self.stdout)
            if found:
                return found
            assert self.process.poll() is None, f"the demo ended early:\n{self.stderr[-3000:]}"
            time.sleep(0.2)
        raise AssertionError(f"no {pattern.pattern!r} in the demo's output")

    def left_behind(self) -> list[str]:
        return sorted(path.name for path in self.tmpdir.iterdir())


class StartDemo(Protocol):
    def __call__(
        self, *args: str, env: dict[str, str] | None = None, dotenv: str = ""
    ) -> DemoRun: ...


@pytest.fixture
def start_demo(tmp_path: Path) -> Iterator[StartDemo]:
    runs: list[DemoRun] = []

    def start(*args: str, env: dict[str, str] | None = None, dotenv: str = "") -> DemoRun:
        folder = tmp_path / f"run-{len(runs)}"
        tmpdir = folder / "tmp"
        tmpdir.mkdir(parents=True)
        if dotenv:
            (folder / ".env").write_text(dotenv, encoding="utf-8")
        environment = child_environment(
            {"SMS_BROKER_URL": redis_database_url(0), **(env or {})}, without=("TMPDIR",)
        )
        environment["TMPDIR"] = str(tmpdir)
        out, err = folder / "stdout.txt", folder / "stderr.txt"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            process = subprocess.Popen(
                [SMS_WORKER, "demo", *args], cwd=folder, env=environment, stdout=stdout,
                stderr=stderr,
            )  # fmt: skip
        runs.append(DemoRun(folder, tmpdir, out, err, process))
        return runs[-1]

    yield start
    for run in runs:  # a failed test still stops its demo (which then stops its children)
        if run.process.poll() is None:
            run.process.send_signal(signal.SIGTERM)
            run.process.wait(timeout=RUN_TIMEOUT_SECONDS)


def assert_gone(pid: int) -> None:
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def assert_redis_released(run: DemoRun) -> None:
    """The Redis database the demo claimed (if it used Redis) is no longer marked as its own."""
    broker = BROKER_LINE.search(run.stdout)
    assert broker, run.stdout[:500]
    if broker[1].startswith("redis://"):
        with Redis.from_url(broker[1]) as client:
            owner = client.get(OWNER_KEY) or b""
        assert f"pid {run.process.pid} ".encode() not in owner


def test_a_hostile_env_file_and_a_real_setups_variables_change_nothing(
    start_demo: StartDemo, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere.db"
    metrics = tmp_path / "deployment-metrics"
    metrics.mkdir()
    (metrics / "counter_1.db").write_bytes(b"a deployment's samples")
    dotenv = "\n".join(
        [
            f"SMS_DATABASE_URL=sqlite:///{elsewhere}",
            "SMS_SEND_RATE=abc",
            f"SMS_BROKER_URL={CLOSED_PORT_URL}",
            "SMS_APPKEY_FILE=secrets/sms_appkey",  # the README's Procfile .env
            "SMS_CONFIG=accounts.toml",
            "SMS_RECEIVER_TOKEN=short",
        ]
    )
    environment = {
        # A shell set up for a deployment: none of it may reach the demo's processes.
        "SMS_APPKEY_FILE": str(tmp_path / "missing-key"),
        "SMS_DATABASE_URL": f"sqlite:///{elsewhere}",
        "SMS_GATEWAY_URL": "http://127.0.0.1:9",
        "CELERY_BROKER_URL": CLOSED_PORT_URL,
        "PROMETHEUS_MULTIPROC_DIR": str(metrics),
    }
    run = start_demo("--timeout", "600", env=environment, dotenv=dotenv)
    assert run.wait() == 0, run.stderr[-3000:]
    assert SUCCESS in run.stdout
    broker = BROKER_LINE.search(run.stdout)
    assert broker and "a database of its own" in run.stdout, run.stdout[:500]
    assert not elsewhere.exists()
    assert (metrics / "counter_1.db").exists()  # a worker empties its metrics folder at start
    assert run.left_behind() == []
    assert_redis_released(run)


def test_a_deployments_worker_on_the_same_redis_takes_none_of_the_demos_tasks(
    start_demo: StartDemo, tmp_path: Path, idle_broker_url: str
) -> None:
    # A database no other worker of this run consumes: the rival must be the only taker there.
    shared = idle_broker_url
    ledger = f"sqlite:///{tmp_path / 'deployment.db'}"
    upgrade(ledger)
    deployment = pipeline_environment(ledger, shared, "http://127.0.0.1:9")
    rival = celery_worker(
        child_environment(deployment), tmp_path / "rival.log", concurrency=2, name="rival",
        cwd=tmp_path,
    )  # fmt: skip
    with rival:
        run = start_demo("--timeout", "600", env={"SMS_BROKER_URL": shared})
        assert run.wait() == 0, run.stderr[-3000:]
        assert SUCCESS in run.stdout
        broker = BROKER_LINE.search(run.stdout)
        assert broker and broker[1] != shared
        assert " received" not in rival.log_path.read_text(errors="replace")
        # ...and it was consuming there all along: a task published there now reaches it.
        publisher = make_app(settings_under(deployment))
        publisher.send_task(TASK_SWEEP, queue=QUEUE_MAINTENANCE)
        deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
        while f"{TASK_SWEEP}[" not in rival.log_path.read_text(errors="replace"):
            assert time.monotonic() < deadline, "the rival worker never took a task"
            time.sleep(0.2)
    assert_redis_released(run)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_mid_run_stops_everything_and_removes_the_folder(
    start_demo: StartDemo, stop: signal.Signals
) -> None:
    # The gateway answers 503 to everything: the demo is still waiting when the signal comes.
    run = start_demo("--gateway-outage", "--timeout", "600")
    pids = run.wait_for_output(PIDS_LINE)
    run.wait_for_output(re.compile("Enqueued"))
    assert run.left_behind() != []
    run.process.send_signal(stop)
    assert run.wait() == 1
    assert f"stopped by {stop.name}" in run.stderr
    assert run.left_behind() == []
    for pid in pids.groups():
        assert_gone(int(pid))
    assert_redis_released(run)


def test_a_message_that_did_not_finish_is_named_and_the_exit_code_is_1(
    start_demo: StartDemo,
) -> None:
    run = start_demo("--gateway-outage", "--timeout", "3")
    assert run.wait() == 1
    lines = run.stderr.splitlines()
    named = [line for line in lines if PROBLEM_LINE.fullmatch(line)]
    # Every message the gateway should have accepted is named with why (7 of the 8: the one it
    # refuses still ends as expected), whether still waiting or already given up.
    assert len(named) == 7, run.stderr[-3000:]
    assert any("(international)" in line for line in named)
    assert lines[-1] == (
        "sms-worker demo: 7 message(s) did not end as expected within 3 s "
        "(each is named above, with why)"
    )
    assert run.left_behind() == []
    assert_redis_released(run)


def test_a_setting_it_takes_that_is_bad_ends_it_cleanly_with_exit_code_2(
    start_demo: StartDemo,
) -> None:
    run = start_demo(env={"SMS_CLOCK_OFFSET_SECONDS": "abc"})
    assert run.wait() == 2
    assert "SMS_CLOCK_OFFSET_SECONDS" in run.stderr.splitlines()[-1]
    assert run.left_behind() == []


def test_without_redis_it_runs_on_a_folder_and_removes_it(start_demo: StartDemo) -> None:
    run = start_demo("--timeout", "600", env={"SMS_BROKER_URL": CLOSED_PORT_URL})
    assert run.wait() == 0, run.stderr[-3000:]
    assert "using kombu's filesystem transport" in run.stdout
    assert SUCCESS in run.stdout
    assert run.left_behind() == []
