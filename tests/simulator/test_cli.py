"""``sms-worker simulator``: options, environment names, exit codes, and a real run."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.fixtures.simulator import SignedCaller
from worker.cli import main
from worker.simulator.server import SimulatorServer

OPTIONS = [
    "--host",
    "--port",
    "--sdkappid",
    "--appkey",
    "--appkey-file",
    "--config",
    "--callback-url",
    "--log-level",
]
OTHER_KEY = "0123456789abcdef0123456789abcdef"


def test_help_explains_every_option_with_an_example() -> None:
    result = CliRunner().invoke(main, ["simulator", "--help"])
    assert result.exit_code == 0
    for option in OPTIONS:
        assert option in result.output
    options_part = result.output.split("Options:")[1]
    assert options_part.count("Example") >= len(OPTIONS)
    for name in ("SMS_SDKAPPID", "SMS_APPKEY", "SMS_APPKEY_FILE"):
        assert name in result.output


def test_bad_config_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[limits]\nbalance = -3\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["simulator", "--config", str(config)])
    assert result.exit_code == 2 and "balance" in result.output


def test_empty_appkey_file_exits_2(tmp_path: Path) -> None:
    empty = tmp_path / "appkey"
    empty.write_text("\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["simulator", "--appkey-file", str(empty)])
    assert result.exit_code == 2 and "empty" in result.output


def test_busy_port_exits_1(simulator: SimulatorServer) -> None:
    result = CliRunner().invoke(
        main, ["simulator", "--port", str(simulator.port), "--log-level", "error"]
    )
    assert result.exit_code == 1 and "port" in result.output


@pytest.fixture
def running_cli(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``sms-worker simulator`` in its own process, on a free port, keyed from a file."""
    key_file = tmp_path / "appkey"
    key_file.write_text(f"  {OTHER_KEY}\n", encoding="utf-8")
    env = {**os.environ, "SMS_SDKAPPID": "1400123456", "SMS_APPKEY_FILE": str(key_file)}
    env.pop("SMS_APPKEY", None)
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from worker.cli import main; main()",
            "simulator",
            "--port",
            "0",
            "--log-level",
            "warning",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    stdout = process.stdout
    threading.Thread(target=lambda: [lines.put(line) for line in stdout], daemon=True).start()
    try:
        first = lines.get(timeout=30)
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", first)
        assert match, first
        yield match.group(1), process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


def test_cli_serves_with_the_account_from_the_environment(
    running_cli: tuple[str, subprocess.Popen[str]],
) -> None:
    url, process = running_cli
    caller = SignedCaller(url, sdkappid="1400123456", appkey=OTHER_KEY)
    assert caller.send_template()["result"] == 0
    assert SignedCaller(url, sdkappid="1400123456").send_template()["result"] == 1001
    assert SignedCaller(url, appkey=OTHER_KEY).send_template()["result"] == 1019
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=15) == 0
