"""A bad or conflicting SMS_* setting, met the way users meet it: the installed ``sms-worker`` and
``celery -A worker`` in child processes. Each answers with one line on stderr naming the setting,
exit code 2, no traceback; ``--help`` and ``--version`` work whatever the settings; doctor shows
the setting as a FAIL row; importing the package reads no setting at all.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path

import click
import pytest

from tests.cli_process import subcommands
from tests.fixtures.pipeline import child_environment
from tests.fixtures.simulator import APPKEY, SDKAPPID
from worker.cli import main

BIN = Path(sys.executable).parent
SMS_WORKER = str(BIN / "sms-worker")
CELERY = str(BIN / "celery")
PYTHON = sys.executable
COMMAND_TIMEOUT_SECONDS = 300  # a bound for a hung command, far above any busy machine's time
SECRET = "hunter2"  # a password in a bad URL: never shown back

# Settings that work, each bad setting below replaces or adds to them.
GOOD = {"SMS_DATABASE_URL": "sqlite:///ledger.db", "SMS_SDKAPPID": SDKAPPID, "SMS_APPKEY": APPKEY}

# (the bad setting(s), the name the one line must start with). Files named here are made by
# the `folder` fixture: broken.toml (not TOML), binary.toml (not UTF-8), key.txt (a key).
BAD_SETTINGS: list[tuple[dict[str, str], str]] = [
    ({"SMS_SEND_RATE": "abc"}, "SMS_SEND_RATE"),  # a word for a number
    ({"SMS_SEND_RATE": "-3"}, "SMS_SEND_RATE"),  # out of range, below
    ({"SMS_LEASE_SECONDS": "1e300"}, "SMS_LEASE_SECONDS"),  # out of range, above
    ({"SMS_MAX_DELIVERIES": "2.5"}, "SMS_MAX_DELIVERIES"),  # not whole
    ({"SMS_METRICS_PORT": "70000"}, "SMS_METRICS_PORT"),
    ({"SMS_CLOCK_OFFSET_SECONDS": "inf"}, "SMS_CLOCK_OFFSET_SECONDS"),
    ({"SMS_RECEIVER_METRICS": "maybe"}, "SMS_RECEIVER_METRICS"),  # not a boolean
    ({"SMS_LOG_FORMAT": "xml"}, "SMS_LOG_FORMAT"),  # not one of the choices
    ({"SMS_SDKAPPID": "app-1"}, "SMS_SDKAPPID"),
    ({"SMS_DATABASE_URL": f"mysql://sms:{SECRET}@db/sms"}, "SMS_DATABASE_URL"),  # scheme
    ({"SMS_DATABASE_URL": "sqlite+nodriver:///ledger.db"}, "SMS_DATABASE_URL"),  # driver
    ({"SMS_BROKER_URL": f"foo://u:{SECRET}@localhost"}, "SMS_BROKER_URL"),  # scheme
    ({"SMS_BROKER_URL": "redis://localhost:99999/0"}, "SMS_BROKER_URL"),  # port
    ({"SMS_BROKER_URL": "redis://localhost:6379/zero"}, "SMS_BROKER_URL"),  # database
    ({"SMS_REDIS_URL": f"http://u:{SECRET}@localhost:6379/1"}, "SMS_REDIS_URL"),  # scheme
    ({"SMS_GATEWAY_URL": "ftp://yun.tim.qq.com"}, "SMS_GATEWAY_URL"),  # scheme
    ({"SMS_APPKEY_FILE": "key.txt"}, "SMS_APPKEY_FILE"),  # beside SMS_APPKEY: a conflict
    ({"SMS_CONFIG": "accounts.toml", "SMS_SDKAPPID": SDKAPPID}, "SMS_SDKAPPID"),  # a conflict
    ({"SMS_CONFIG": "missing.toml"}, "SMS_CONFIG"),
    ({"SMS_CONFIG": "broken.toml"}, "SMS_CONFIG"),
    ({"SMS_CONFIG": "binary.toml"}, "SMS_CONFIG"),
]
BAD_IDS = [" ".join(f"{k}={v}" for k, v in bad.items()) for bad, _ in BAD_SETTINGS]

# Each command the way a user could call it, options valid, so that only the settings are wrong.
INVOCATIONS = {
    "send": "send --to +8613788888888 --template 100001",
    "batch create": "batch create customers.csv --template 100002",
    "batch list": "batch list",
    "batch status": "batch status 3f2a",
    "batch rejections": "batch rejections 3f2a",
    "batch pause": "batch pause 3f2a",
    "batch resume": "batch resume 3f2a",
    "batch cancel": "batch cancel 3f2a",
    "optout add": "optout add +8613788888888",
    "optout remove": "optout remove +8613788888888",
    "optout list": "optout list",
    "ledger summary": "ledger summary --from 2026-05-01 --to 2026-05-31",
    "ledger export": "ledger export --from 2026-05-01 --to 2026-05-31 --what messages",
    "ledger reconcile": "ledger reconcile --from 2026-05-01 --to 2026-05-31",
    "ledger rollup": "ledger rollup",
    "accounts": "accounts",
    "accounts list": "accounts list",
    "accounts pause": "accounts pause default --reason renewal",
    "accounts resume": "accounts resume default",
    "migrate": "migrate",
    "receiver": "receiver --port 0",
    "simulator": "simulator --port 0",
}

# Celery's own commands that read the app's configuration.
CELERY_COMMANDS = [
    ["worker", "--pool", "solo"],
    ["beat"],
    ["inspect", "ping"],
    ["status"],
    ["purge", "-f"],
    ["call", "sms.sweep"],
    ["control", "shutdown"],
    ["report"],
]


def leaf_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> set[str]:
    """Every command of ``group`` that runs code of its own, as the words that call it."""
    found = set()
    for name, command in subcommands(group):
        path = (*prefix, name)
        if isinstance(command, click.Group):
            found |= leaf_commands(command, path)
            if command.invoke_without_command:
                found.add(" ".join(path))
        else:
            found.add(" ".join(path))
    return found


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A working folder without a .env, holding the files the bad settings name."""
    (tmp_path / "customers.csv").write_text("mobile\n+8613788888888\n", encoding="utf-8")
    (tmp_path / "key.txt").write_text(APPKEY, encoding="utf-8")
    (tmp_path / "accounts.toml").write_text(
        f'[accounts.shop]\nsdkappid = 1400000001\nappkey = "{APPKEY}"\n', encoding="utf-8"
    )
    (tmp_path / "broken.toml").write_text("[accounts.shop\n", encoding="utf-8")
    (tmp_path / "binary.toml").write_bytes(b"[accounts.\xff]\n")
    return tmp_path


def run(
    program: str, args: list[str], folder: Path, settings: Mapping[str, str]
) -> subprocess.CompletedProcess[str]:
    """``program ARGS`` in ``folder`` with exactly ``settings`` as its SMS_* variables."""
    return subprocess.run(
        [program, *args],
        cwd=folder,
        env={**child_environment(settings), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_SECONDS,
        check=False,
    )


def settings_with(bad: Mapping[str, str]) -> dict[str, str]:
    """The good settings with ``bad`` in; with SMS_CONFIG the credentials are in its file."""
    if "SMS_CONFIG" in bad:
        return {"SMS_DATABASE_URL": GOOD["SMS_DATABASE_URL"], **bad}
    return {**GOOD, **bad}


def assert_refused(result: subprocess.CompletedProcess[str], program: str, setting: str) -> None:
    """Exit code 2 and exactly one line on stderr: ``PROGRAM COMMAND: SETTING: what is wrong``."""
    lines = result.stderr.splitlines()
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    assert len(lines) == 1, result.stderr[-3000:]
    (line,) = lines
    assert line.startswith(program) and f": {setting}: " in line, line
    assert len(line.split(f": {setting}: ", 1)[1]) > 10, line  # it says what is wrong
    assert "Traceback" not in result.stderr + result.stdout
    assert SECRET not in result.stderr + result.stdout
    assert APPKEY not in result.stderr + result.stdout


def test_every_command_is_in_the_table() -> None:
    assert leaf_commands(main) == {*INVOCATIONS, "doctor", "demo"}


@pytest.mark.parametrize(
    ("command", "bad", "setting"),
    # Each command meets another bad setting: together they meet every kind.
    [
        (command, *BAD_SETTINGS[index % len(BAD_SETTINGS)])
        for index, command in enumerate(sorted(INVOCATIONS))
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_every_command_answers_a_bad_setting_with_one_line_and_exit_2(
    folder: Path, command: str, bad: dict[str, str], setting: str
) -> None:
    result = run(SMS_WORKER, INVOCATIONS[command].split(), folder, settings_with(bad))
    assert_refused(result, f"sms-worker {command.split()[0]}", setting)


def test_the_demo_refuses_a_bad_setting_it_takes(folder: Path) -> None:
    # The demo takes only SMS_CLOCK_OFFSET_SECONDS and SMS_LOG_FORMAT from its environment (it
    # runs the same whatever a deployment's other settings are).
    result = run(SMS_WORKER, ["demo"], folder, settings_with({"SMS_LOG_FORMAT": "xml"}))
    assert_refused(result, "sms-worker demo", "SMS_LOG_FORMAT")


@pytest.mark.parametrize(("bad", "setting"), BAD_SETTINGS, ids=BAD_IDS)
def test_doctor_shows_a_bad_setting_as_a_fail_row(
    folder: Path, bad: dict[str, str], setting: str
) -> None:
    result = run(SMS_WORKER, ["doctor", "--format", "json"], folder, settings_with(bad))
    assert result.returncode == 2, result.stderr
    assert result.stderr == ""
    report = json.loads(result.stdout)
    assert report["ok"] is False
    first = report["checks"][0]
    assert (first["check"], first["status"]) == ("configuration", "FAIL")
    assert first["detail"].startswith(f"{setting}: ") and setting in first["fix"]
    assert {check["status"] for check in report["checks"][1:]} == {"SKIP"}
    assert SECRET not in result.stdout and APPKEY not in result.stdout


@pytest.mark.parametrize(("bad", "setting"), BAD_SETTINGS[::8], ids=BAD_IDS[::8])
def test_doctor_shows_a_bad_setting_in_its_table(
    folder: Path, bad: dict[str, str], setting: str
) -> None:
    result = run(SMS_WORKER, ["doctor"], folder, settings_with(bad))
    assert result.returncode == 2 and "Traceback" not in result.stderr + result.stdout
    row = next(line for line in result.stdout.splitlines() if " configuration " in line)
    assert " FAIL " in row and setting in row


@pytest.mark.parametrize(
    ("command", "bad", "setting"),
    # Every bad setting, each met by another of Celery's commands in turn.
    [
        (CELERY_COMMANDS[index % len(CELERY_COMMANDS)], *bad)
        for index, bad in enumerate(BAD_SETTINGS)
    ],
    ids=[f"{CELERY_COMMANDS[i % len(CELERY_COMMANDS)][0]}-{id_}" for i, id_ in enumerate(BAD_IDS)],
)
def test_celery_commands_answer_a_bad_setting_with_one_line_and_exit_2(
    folder: Path, command: list[str], bad: dict[str, str], setting: str
) -> None:
    result = run(CELERY, ["-A", "worker", *command], folder, settings_with(bad))
    assert_refused(result, f"celery {command[0]}", setting)


def test_a_celery_worker_without_a_shared_throttle_is_refused_in_one_line(folder: Path) -> None:
    # RabbitMQ as the broker and no SMS_REDIS_URL: each worker would throttle on its own. The
    # broker's port is closed: the settings are refused before any connection is tried.
    amqp = {"SMS_BROKER_URL": "amqp://guest:guest@127.0.0.1:1//"}
    result = run(CELERY, ["-A", "worker", "worker", "--pool", "solo"], folder, settings_with(amqp))
    assert_refused(result, "celery worker", "SMS_REDIS_URL")


# The group, commands of their own, groups, and commands of a group: each is parsed its way.
HELP_CALLS = ["--help", "--version", "send --help", "doctor --help", "demo --help",
              "receiver --help", "simulator --help", "batch --help", "batch create --help",
              "accounts --help", "accounts pause --help", "ledger export --help"]  # fmt: skip


@pytest.mark.parametrize("args", [call.split() for call in HELP_CALLS], ids=HELP_CALLS)
def test_help_and_version_work_whatever_the_settings(folder: Path, args: list[str]) -> None:
    bad = {"SMS_SEND_RATE": "abc", "SMS_CONFIG": "broken.toml", "SMS_APPKEY_FILE": "key.txt"}
    result = run(SMS_WORKER, args, folder, settings_with(bad))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert ("Usage:" in result.stdout) or ("version" in result.stdout)


def test_celery_help_works_whatever_the_settings(folder: Path) -> None:
    bad = settings_with({"SMS_SEND_RATE": "abc"})
    for args in (["--help"], ["worker", "--help"], ["beat", "--help"]):
        result = run(CELERY, ["-A", "worker", *args], folder, bad)
        assert result.returncode == 0, result.stderr
        assert "Usage:" in result.stdout and "Traceback" not in result.stderr


def test_importing_the_package_reads_no_setting(folder: Path) -> None:
    """Importing worker, worker.tencent, the Celery app and the CLI neither calls
    load_settings nor opens the .env file or the SMS_CONFIG file, however bad they are."""
    (folder / ".env").write_text("SMS_SEND_RATE=abc\n", encoding="utf-8")
    script = textwrap.dedent(
        """
        import os, sys
        opened = []
        sys.addaudithook(
            lambda event, args: opened.append(str(args[0]))
            if event == "open" and isinstance(args[0], str) else None
        )
        import worker.config
        calls = []
        original = worker.config.load_settings
        worker.config.load_settings = lambda *a, **k: calls.append(1) or original(*a, **k)
        import worker, worker.tencent, worker.celery, worker.cli
        watched = {os.path.abspath(".env"), os.path.abspath("broken.toml")}
        touched = sorted({os.path.abspath(path) for path in opened} & watched)
        print(len(calls), touched)
        """
    )
    result = run(PYTHON, ["-c", script], folder, settings_with({"SMS_CONFIG": "broken.toml"}))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "[]"]
