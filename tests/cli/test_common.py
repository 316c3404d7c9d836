"""What every ``sms-worker`` command shares: help with examples, the grouped command list, exit
codes, one-line errors (a traceback only with --debug), and --format for scripts."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from tests.cli_process import subcommands
from tests.fixtures.simulator import APPKEY, SDKAPPID
from worker.cli import SECTIONS, main
from worker.cli.sections import SectionedGroup
from worker.ledger.migrate import upgrade
from worker.ledger.status import MESSAGE_STATUSES

TRACEBACK = "Traceback (most recent call last)"


def command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and subcommand below ``group``, as the words that call it."""
    paths = []
    for name, command in subcommands(group):
        paths.append((*prefix, name))
        if isinstance(command, click.Group):
            paths.extend(command_paths(command, (*prefix, name)))
    return paths


ALL_COMMANDS = [(), *command_paths(main)]


@pytest.fixture(autouse=True)
def no_machine_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No SMS_* variable of the machine and no .env file: each test says what it runs with."""
    for name in [name for name in os.environ if name.startswith("SMS_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def run(*args: str, **environment: str) -> Result:
    return CliRunner().invoke(main, list(args), env={"COLUMNS": "200", **environment})


def test_the_walk_finds_every_command() -> None:
    tops = {path[0] for path in ALL_COMMANDS if path}
    assert tops == {name for _, names in SECTIONS for name in names}
    assert ("batch", "create") in ALL_COMMANDS and ("ledger", "reconcile") in ALL_COMMANDS


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=lambda path: " ".join(path) or "sms-worker")
def test_help_exits_0_and_shows_examples_of_the_command(path: tuple[str, ...]) -> None:
    result = run(*path, "--help")
    assert result.exit_code == 0, result.output
    assert "Examples:" in result.stdout
    examples = result.stdout.split("Examples:", 1)[1]
    assert " ".join(("sms-worker", *path)) in examples


def test_the_help_lists_the_commands_by_who_uses_them() -> None:
    listed: dict[str, list[str]] = {}
    heading = None
    for line in run("--help").stdout.splitlines():
        if re.fullmatch(r"[A-Z][\w ]*:", line):
            heading = line[:-1]
            listed[heading] = []
        elif heading is not None and line.startswith("  ") and line.strip():
            listed[heading].append(line.split()[0])
    del listed["Options"]
    assert listed == {title: list(names) for title, names in SECTIONS}
    assert list(listed) == ["Sending", "Finance", "Operations"]


BAD_INPUT_CASES = [
    (["send", "--to", "123", "--template", "1"], {}, "--to: '123' has no country code"),
    (["send", "--template", "1"], {}, "Missing option '--to'"),
    (["ledger", "summary", "--from", "2026-02-30", "--to", "2026-03-01"], {}, "'--from'"),
    (["batch", "create", "{csv}", "--template", "1", "--start", "soon"], {}, "--start: 'soon'"),
    (["optout", "add", "13700000001"], {}, "NUMBER: '13700000001' has no country code"),
    (["accounts", "pause", "default"], {}, "Missing option '--reason'"),
    (["doctor", "--timeout", "0"], {}, "'--timeout'"),
    (["migrate", "--database-url", "ledger.db"], {}, "--database-url: not a database URL"),
    (["accounts", "list"], {"SMS_SEND_RATE": "fast"}, "SMS_SEND_RATE: must be a number"),
    (["receiver"], {}, "no token: set SMS_RECEIVER_TOKEN"),
    (["nosuch"], {}, "No such command 'nosuch'"),
]


def _bad_input(args: list[str], tmp_path: Path) -> list[str]:
    csv_file = tmp_path / "list.csv"
    csv_file.write_text("mobile\n+8613700000001\n", encoding="utf-8")
    return [str(csv_file) if arg == "{csv}" else arg for arg in args]


@pytest.mark.parametrize(("args", "environment", "message"), BAD_INPUT_CASES)
def test_bad_input_exits_2_with_one_line_naming_the_field(
    tmp_path: Path, args: list[str], environment: dict[str, str], message: str
) -> None:
    result = run(*_bad_input(args, tmp_path), **environment)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("sms-worker")
    assert message in line
    assert TRACEBACK not in result.stderr


@pytest.mark.parametrize(("args", "environment", "message"), BAD_INPUT_CASES[:5])
def test_debug_adds_the_traceback_above_the_same_line(
    tmp_path: Path, args: list[str], environment: dict[str, str], message: str
) -> None:
    result = run("--debug", *_bad_input(args, tmp_path), **environment)
    assert result.exit_code == 2, result.output
    assert TRACEBACK in result.stderr
    last = result.stderr.splitlines()[-1]
    assert last.startswith("sms-worker") and message in last


def test_a_configuration_error_does_not_show_the_appkey_even_with_debug() -> None:
    environment = {"SMS_APPKEY": APPKEY, "SMS_APPKEY_FILE": "also.txt", "SMS_SDKAPPID": SDKAPPID}
    for args in (["accounts"], ["--debug", "accounts"]):
        result = run(*args, **environment)
        assert result.exit_code == 2
        assert "SMS_APPKEY_FILE" in result.stderr.splitlines()[-1]
        assert APPKEY not in result.output


def _group_with_a_broken_command() -> click.Group:
    """The real group class and --debug option, with one command that fails unexpectedly."""

    @click.command()
    def broken() -> None:
        """Fails as a bug would.

        \b
        Examples:
          sms-worker broken
        """
        raise RuntimeError("the ledger row has no id\nsecond line")

    group = SectionedGroup(name="sms-worker", params=main.params, sections=SECTIONS)
    group.add_command(broken)
    return group


def test_an_unexpected_error_exits_1_with_one_line_and_debug_shows_where() -> None:
    group = _group_with_a_broken_command()
    plain = CliRunner().invoke(group, ["broken"])
    assert plain.exit_code == 1
    assert plain.stderr == (
        "sms-worker broken: unexpected RuntimeError: the ledger row has no id "
        "(--debug shows the traceback)\n"
    )

    debug = CliRunner().invoke(group, ["--debug", "broken"])
    assert debug.exit_code == 1
    assert TRACEBACK in debug.stderr and 'raise RuntimeError("the ledger row' in debug.stderr
    assert debug.stderr.splitlines()[-1] == (
        "sms-worker broken: unexpected RuntimeError: the ledger row has no id"
    )


@pytest.fixture
def ledger(tmp_path: Path) -> dict[str, str]:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    upgrade(url)
    return {"SMS_DATABASE_URL": url, "SMS_SDKAPPID": SDKAPPID, "SMS_APPKEY": APPKEY}


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_tabular_output_for_scripts(ledger: dict[str, str], tmp_path: Path) -> None:
    file = tmp_path / "vip.csv"
    file.write_text("mobile,param1,param2\n+8613700000001,王,8\n", encoding="utf-8")
    created = run("batch", "create", str(file), "--template", "100002", "--sign", "腾讯云",
                  "--start", "2030-05-01 09:00", **ledger)  # fmt: skip
    assert created.exit_code == 0, created.output

    (listed,) = csv_rows(run("batch", "list", "--format", "csv", **ledger).stdout)
    assert (listed["name"], listed["accepted"], listed["params"]) == ("vip.csv", "1", "")
    status = run("batch", "status", listed["id"][:8], "--format", "csv", **ledger)
    (row,) = csv_rows(status.stdout)
    assert row["id"] == listed["id"] and row["queued"] == "1"
    assert set(MESSAGE_STATUSES) <= set(row)
    (as_json,) = json.loads(run("batch", "list", "--format", "json", **ledger).stdout)
    assert as_json["id"] == listed["id"]
    rejections = run("batch", "rejections", listed["id"], "--format", "json", **ledger)
    assert json.loads(rejections.stdout) == []

    assert run("optout", "add", "+8613700000002", "--reason", "phoned", **ledger).exit_code == 0
    (opted,) = csv_rows(run("optout", "list", "--format", "csv", **ledger).stdout)
    # A spreadsheet would read +86... as a formula: the CSV keeps it text with a '.
    assert (opted["number"], opted["reason"]) == ("'+8613700000002", "phoned")

    accounts = run("accounts", "--format", "csv", **ledger)
    (account,) = csv_rows(accounts.stdout)
    assert (account["name"], account["sdkappid"], account["queued"]) == ("default", SDKAPPID, "1")
    assert APPKEY not in accounts.stdout


def test_follow_is_for_the_table_only(ledger: dict[str, str]) -> None:
    result = run("batch", "status", "3f2a", "--follow", "--format", "json", **ledger)
    assert result.exit_code == 2
    assert result.stderr == "sms-worker batch: --follow shows a live table; leave out --format\n"


def test_a_command_imports_only_what_it_needs() -> None:
    # Every start of sms-worker pays for what it imports; --version needs no command module and
    # optout none of Celery, the simulator or the receiver.
    probe = (
        "import sys\n"
        "from worker.cli import main\n"
        "try:\n"
        "    main(sys.argv[1:])\n"
        "except SystemExit:\n"
        "    pass\n"
        "loaded = [m for m in ('celery', 'worker.simulator', 'worker.receiver', 'worker.cli.batch')"
        " if m in sys.modules]\n"
        "print(','.join(loaded), file=sys.stderr)\n"
    )

    def loaded(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", probe, *args], capture_output=True, text=True, check=True
        )
        return done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""

    assert loaded("--version") == ""
    assert loaded("optout", "--help") == ""
    assert "worker.cli.batch" in loaded("batch", "--help")
