"""Every CSV the commands write is safe to open in a spreadsheet (OWASP "CSV Injection").

A text cell starting with =, +, -, @, a tab or a carriage return (or one of the signs after
leading blanks) is written with a ' before it, so Excel, LibreOffice or Google Sheets show it
instead of running it; ``--raw`` writes every cell exactly, and JSON is always exact. Numbers
the ledger counted stay numbers. Each command is the installed ``sms-worker`` in a child process.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import click
import pytest

from tests.cli_process import CliLedger, subcommands, succeeded
from tests.fixtures.simulator import TPL_MARKETING
from worker import clock
from worker.cli import main
from worker.ledger import accounts as ledger_accounts
from worker.ledger import messages
from worker.ledger.schema import SmsAttempt
from worker.ledger.status import MARKETING
from worker.tencent.codes import Outcome

# What a spreadsheet would run, each way it may begin.
FORMULAS = [
    '=HYPERLINK("http://evil.example","x")',
    "+1+1",
    "-2+3",
    "@SUM(A1:A2)",
    "\t=1+1",
    "\r=1+1",
    " =1+1",
    "\n@x",
]
HARMLESS = ["plain", "'already quoted", "1-2", "a=b", "[=x]", "ok\r=1+1", ""]


def safe(text: str) -> str:
    return "'" + text


@pytest.fixture
def ledger(tmp_path: Path) -> CliLedger:
    return CliLedger.migrated(tmp_path)


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def test_batch_commands_neutralise_names_signs_and_rejected_rows(ledger: CliLedger) -> None:
    name, sign = "=cmd|' /C calc'!A0", "@SUM(1+1)腾讯云"
    file = ledger.folder / "list.csv"
    rejected = ["=1+1,x", "-2+3,x", "+1+1,x", "@A1,x", "\t=1+1,x"]
    file.write_text("\n".join(["mobile,param1", *rejected, "+8613700000001,-5"]) + "\n")
    created = ledger.run("batch", "create", str(file), "--template", str(TPL_MARKETING),
                         "--param-count", "1", "--start", "2030-05-01 09:00",
                         "--name", name, "--sign", sign)  # fmt: skip
    assert "1 accepted" in succeeded(created)

    (listed,) = csv_rows(succeeded(ledger.run("batch", "list", "--format", "csv")))
    assert (listed["name"], listed["sign"]) == (safe(name), safe(sign))
    assert (listed["accepted"], listed["rejected"]) == ("1", str(len(rejected)))
    (status,) = csv_rows(succeeded(ledger.run("batch", "status", listed["id"], "--format", "csv")))
    assert (status["name"], status["sign"], status["queued"]) == (safe(name), safe(sign), "1")
    rows = csv_rows(succeeded(ledger.run("batch", "rejections", listed["id"])))
    assert [row["row"] for row in rows] == [safe(row) for row in rejected]
    assert [row["line"] for row in rows] == ["2", "3", "4", "5", "6"]

    raw = csv_rows(succeeded(ledger.run("batch", "rejections", listed["id"], "--raw")))
    assert [row["row"] for row in raw] == rejected
    (raw_listed,) = csv_rows(succeeded(ledger.run("batch", "list", "--format", "csv", "--raw")))
    assert (raw_listed["name"], raw_listed["sign"]) == (name, sign)
    raw_status = ledger.run("batch", "status", listed["id"], "--format", "csv", "--raw")
    (raw_status_row,) = csv_rows(succeeded(raw_status))
    assert (raw_status_row["name"], raw_status_row["sign"]) == (name, sign)
    as_json = ledger.run("batch", "rejections", listed["id"], "--format", "json")
    assert [row["row"] for row in json.loads(succeeded(as_json))] == rejected
    (listed_json,) = json.loads(succeeded(ledger.run("batch", "list", "--format", "json")))
    assert (listed_json["name"], listed_json["sign"]) == (name, sign)


def _ledger_with_hostile_messages(ledger: CliLedger) -> list[str]:
    """One message per formula (as its sign, ext, params and errmsg) and one harmless; the
    texts in the order the export lists them."""
    texts = [*FORMULAS, *HARMLESS]
    with ledger.session() as session:
        for number, text in enumerate(texts):
            message, _ = messages.insert_message(
                session, account="shop", kind=MARKETING, nationcode="86",
                mobile=f"137000000{number:02d}", tpl_id=TPL_MARKETING,
                params=[text, "8"], sign=text or None, ext=text or None,
            )  # fmt: skip
            session.flush()
            session.add(SmsAttempt(message_id=message.id, attempt_no=1,
                                   request_id=message.id, api="sendsms", random=number,
                                   signed_time=1, started_at=clock.now(),
                                   finished_at=clock.now(), http_status=200, result=1016,
                                   outcome=Outcome.REJECTED, errmsg=text,
                                   latency_ms=-(number + 1), worker="test"))  # fmt: skip
            session.commit()  # one by one: created_at orders the export
    return texts


def _period() -> list[str]:
    now = clock.now()
    return ["--from", (now - timedelta(hours=1)).isoformat(),
            "--to", (now + timedelta(hours=1)).isoformat()]  # fmt: skip


def _neutralised(text: str) -> str:
    return safe(text) if text in FORMULAS else text


def test_the_ledger_export_neutralises_every_text_cell_and_keeps_numbers(
    ledger: CliLedger,
) -> None:
    texts = _ledger_with_hostile_messages(ledger)
    export = ["ledger", "export", *_period()]

    exported = csv_rows(succeeded(ledger.run(*export, "--what", "messages")))
    assert [row["sign"] for row in exported] == [_neutralised(text) for text in texts]
    assert [row["ext"] for row in exported] == [_neutralised(text) for text in texts]
    # params are a JSON array: a cell starting with [, which no spreadsheet runs.
    assert [json.loads(row["params"])[0] for row in exported] == texts
    attempts = csv_rows(succeeded(ledger.run(*export, "--what", "attempts")))
    assert sorted(row["errmsg"] for row in attempts) == sorted(map(_neutralised, texts))
    # A number the ledger counted, even a negative one, stays a number.
    assert sorted(int(row["latency_ms"]) for row in attempts) == list(range(-len(texts), 0))

    output = ledger.folder / "messages.csv"
    succeeded(ledger.run(*export, "--what", "messages", "--output", str(output)))
    with output.open(encoding="utf-8", newline="") as file:
        assert [row["sign"] for row in csv.DictReader(file)] == [_neutralised(t) for t in texts]

    raw = csv_rows(succeeded(ledger.run(*export, "--what", "messages", "--raw")))
    assert [row["sign"] for row in raw] == texts and [row["ext"] for row in raw] == texts
    raw_attempts = csv_rows(succeeded(ledger.run(*export, "--what", "attempts", "--raw")))
    assert sorted(row["errmsg"] for row in raw_attempts) == sorted(texts)
    lines = succeeded(ledger.run(*export, "--what", "messages", "--format", "jsonl"))
    as_json = [json.loads(line) for line in lines.splitlines()]
    assert [row["sign"] for row in as_json] == [text or None for text in texts]


def test_the_ledger_summary_neutralises_signs_and_accounts(ledger: CliLedger) -> None:
    texts = _ledger_with_hostile_messages(ledger)
    summary = ["ledger", "summary", *_period(), "--by", "sign"]

    rows = csv_rows(succeeded(ledger.run(*summary, "--format", "csv")))
    expected = sorted(_neutralised(text) for text in texts if text)
    assert sorted(row["sign"] for row in rows if row["sign"]) == expected
    assert all(row["messages"] == "1" for row in rows)
    raw = csv_rows(succeeded(ledger.run(*summary, "--format", "csv", "--raw")))
    assert sorted(row["sign"] for row in raw if row["sign"]) == sorted(t for t in texts if t)
    as_json = json.loads(succeeded(ledger.run(*summary, "--format", "json")))
    assert sorted(row["sign"] for row in as_json if row["sign"]) == sorted(t for t in texts if t)


def test_opt_outs_and_accounts_neutralise_numbers_and_reasons(ledger: CliLedger) -> None:
    # E.164 numbers begin with +: opened as they are, a spreadsheet reads them as a formula
    # and shows 8.6137E+12; with the ' they stay whole, as text.
    reason = '=HYPERLINK("http://evil.example","call")'
    succeeded(ledger.run("optout", "add", "+8613700000009", "--reason", reason))
    (opted,) = csv_rows(succeeded(ledger.run("optout", "list", "--format", "csv")))
    assert (opted["number"], opted["reason"]) == ("'+8613700000009", safe(reason))
    raw = ledger.run("optout", "list", "--format", "csv", "--raw")
    (opted_raw,) = csv_rows(succeeded(raw))
    assert (opted_raw["number"], opted_raw["reason"]) == ("+8613700000009", reason)
    (opted_json,) = json.loads(succeeded(ledger.run("optout", "list", "--format", "json")))
    assert (opted_json["number"], opted_json["reason"]) == ("+8613700000009", reason)

    with ledger.session() as session:
        ledger_accounts.pause_account(session, "-old", code=1033, reason="@arrears",
                                      now=clock.now())  # fmt: skip
        session.commit()
    for args in (["accounts", "--format", "csv"], ["accounts", "list", "--format", "csv"]):
        rows = {row["name"]: row for row in csv_rows(succeeded(ledger.run(*args)))}
        assert rows["'-old"]["paused_reason"] == "'@arrears", args
    for args in (
        ["accounts", "--format", "csv", "--raw"],
        ["accounts", "--raw", "list", "--format", "csv"],
        ["accounts", "list", "--format", "csv", "--raw"],
    ):
        rows = {row["name"]: row for row in csv_rows(succeeded(ledger.run(*args)))}
        assert rows["-old"]["paused_reason"] == "@arrears", args


def _commands(
    group: click.Group, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    for name, command in subcommands(group):
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))


def _writes_csv(command: click.Command) -> bool:
    return any(
        param.name == "output_format"
        and isinstance(param.type, click.Choice)
        and "csv" in param.type.choices
        for param in command.params
    )


def test_every_command_that_writes_csv_takes_raw_and_says_why(ledger: CliLedger) -> None:
    writers = {path: command for path, command in _commands(main) if _writes_csv(command)}
    assert {("batch", "rejections"), ("ledger", "export"), ("optout", "list")} <= set(writers)
    for path, command in writers.items():
        assert "raw" in [param.name for param in command.params], path

    help_text = succeeded(ledger.run("ledger", "export", "--help"))
    assert "--raw" in help_text and "+8613" in help_text
