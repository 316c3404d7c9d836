"""Text from people, files, the ledger and the gateway is printed as it is, by every command.

Such text may look like rich markup (``[/bold]``, ``[link=...]``), emoji codes (``:thumbs_up:``)
or carry terminal control sequences (ESC ...). Tables and lines for people show it literally,
with control characters as visible escapes (``\\x1b``) so it can neither crash the command nor
colour, move or retitle the user's terminal; JSON and ``--raw`` CSV give it back exactly.
Each command is the installed ``sms-worker`` in a child process.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from tests.cli_process import CliLedger, succeeded
from tests.fixtures.pipeline import settings_under
from tests.fixtures.simulator import SIGN, TPL_LONG, TPL_MARKETING
from worker import clock
from worker.api.producer import Producer
from worker.ledger import accounts as ledger_accounts
from worker.ledger import messages
from worker.ledger.schema import SmsAttempt, SmsMessage
from worker.ledger.status import FAILED, MARKETING, NOTIFICATION
from worker.simulator.server import SimulatorServer
from worker.tencent.codes import Outcome

# Text that rich would read as markup or emoji codes, were it not printed literally.
MARKUP = ["[/bold]", "[red]r[/red]", "[link=http://evil.example]z[/link]", "[bold", ":thumbs_up:"]
# Terminal control: colour, clear screen, window title, right-to-left override.
CONTROL = "\x1b[31mred\x1b[2J\x1b]0;pwned\x07\u202eevil"
CONTROL_SHOWN = "\\x1b[31mred\\x1b[2J\\x1b]0;pwned\\x07\\u202eevil"


@pytest.fixture
def ledger(tmp_path: Path) -> CliLedger:
    return CliLedger.migrated(tmp_path)


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def hostile_batch(ledger: CliLedger, name: str, sign: str, extra_rows: list[str]) -> str:
    """A batch whose name, sign, params and rejected rows are ``hostile``; its id."""
    file = ledger.folder / "hostile.csv"
    rows = ["mobile,param1", *(f"{text},x" for text in MARKUP), *extra_rows]
    file.write_text("\n".join(rows) + "\n", encoding="utf-8")
    created = ledger.run("batch", "create", str(file), "--template", str(TPL_MARKETING),
                         "--param-count", "1", "--start", "2030-05-01 09:00",
                         "--name", name, "--sign", sign)  # fmt: skip
    out = succeeded(created)
    assert "1 accepted" in out and f"{len(rows) - 2} rejected" in out
    (listed,) = json.loads(succeeded(ledger.run("batch", "list", "--format", "json")))
    return str(listed["id"])


def test_a_batch_of_markup_is_created_listed_and_reported_as_it_is(ledger: CliLedger) -> None:
    name, sign = "[bold]vip[/bold] :thumbs_up: [/]", "[/i]腾讯云"
    batch_id = hostile_batch(ledger, name, sign, ["+8613700000001,[i]p[/i]"])

    created_again = ledger.run("batch", "rejections", batch_id, "--format", "json")
    rejected = json.loads(succeeded(created_again))
    assert [row["row"] for row in rejected] == [f"{text},x" for text in MARKUP]

    listed = succeeded(ledger.run("batch", "list"))
    assert name in listed
    status = succeeded(ledger.run("batch", "status", batch_id[:8]))
    assert name in status and sign in status
    (as_csv,) = csv_rows(succeeded(ledger.run("batch", "list", "--format", "csv")))
    assert (as_csv["name"], as_csv["sign"]) == (name, sign)
    rejections = csv_rows(succeeded(ledger.run("batch", "rejections", batch_id)))
    assert [row["row"] for row in rejections] == [f"{text},x" for text in MARKUP]


def test_the_import_report_shows_each_rejected_row_as_it_is(ledger: CliLedger) -> None:
    file = ledger.folder / "list.csv"
    file.write_text("mobile,param1\n[/bold],x\n+8613700000001,y\n", encoding="utf-8")
    created = ledger.run("batch", "create", str(file), "--template", str(TPL_MARKETING),
                         "--param-count", "1", "--start", "2030-05-01 09:00")  # fmt: skip
    out = succeeded(created)
    assert "1 accepted" in out and "1 rejected" in out
    assert "[/bold],x" in out


def test_control_characters_are_shown_as_escapes_for_people_and_exact_for_scripts(
    ledger: CliLedger,
) -> None:
    name = f"vip {CONTROL}"
    batch_id = hostile_batch(ledger, name, SIGN, [f"{CONTROL},x", "+8613700000001,y"])

    for args in (
        ["batch", "list"],
        ["batch", "status", batch_id],
    ):
        out = succeeded(ledger.run(*args))
        assert "\x1b" not in out and "\u202e" not in out and "\x07" not in out, args
        assert f"vip {CONTROL_SHOWN}" in out, args
    created = ledger.run("batch", "rejections", batch_id, "--format", "json")
    rows = [row["row"] for row in json.loads(succeeded(created))]
    assert f"{CONTROL},x" in rows
    (as_json,) = json.loads(succeeded(ledger.run("batch", "list", "--format", "json")))
    assert as_json["name"] == name
    (raw,) = csv_rows(succeeded(ledger.run("batch", "list", "--format", "csv", "--raw")))
    assert raw["name"] == name


def test_the_import_report_neutralises_control_characters_in_rejected_rows(
    ledger: CliLedger,
) -> None:
    file = ledger.folder / "list.csv"
    file.write_text(f"mobile,param1\n{CONTROL},x\n+8613700000001,y\n", encoding="utf-8")
    created = ledger.run("batch", "create", str(file), "--template", str(TPL_MARKETING),
                         "--param-count", "1", "--start", "2030-05-01 09:00")  # fmt: skip
    out = succeeded(created)
    assert "\x1b" not in out and "\u202e" not in out
    assert f"{CONTROL_SHOWN},x" in out


def test_accounts_show_names_and_reasons_as_they_are(ledger: CliLedger) -> None:
    # A pause recorded for an account no longer configured, with the gateway's words.
    with ledger.session() as session:
        ledger_accounts.pause_account(session, "[/bold]old", code=1033,
                                      reason=f"[red]arrears[/red] {CONTROL}",
                                      now=clock.now())  # fmt: skip
        session.commit()
    table = succeeded(ledger.run("accounts"))
    assert "[/bold]old" in table and f"[red]arrears[/red] {CONTROL_SHOWN}" in table
    assert "\x1b" not in table
    (row,) = [r for r in json.loads(succeeded(ledger.run("accounts", "--format", "json")))
              if r["name"] == "[/bold]old"]  # fmt: skip
    assert row["paused_reason"] == f"[red]arrears[/red] {CONTROL}"

    reason = f"[/bold] renewal {CONTROL}"
    succeeded(ledger.run("accounts", "pause", "default", "--reason", reason))
    again = succeeded(ledger.run("accounts", "pause", "default", "--reason", "other"))
    assert f"[/bold] renewal {CONTROL_SHOWN}" in again and "\x1b" not in again


def test_opt_outs_show_their_reason_as_it_is(ledger: CliLedger) -> None:
    reason = f"[/bold] :thumbs_up: {CONTROL}"
    succeeded(ledger.run("optout", "add", "+8613700000009", "--reason", reason))

    table = succeeded(ledger.run("optout", "list"))
    assert f"[/bold] :thumbs_up: {CONTROL_SHOWN}" in table and "\x1b" not in table
    (row,) = json.loads(succeeded(ledger.run("optout", "list", "--format", "json")))
    assert row["reason"] == reason


def test_the_finance_summary_shows_accounts_and_signs_as_they_are(ledger: CliLedger) -> None:
    with ledger.session() as session:
        messages.insert_message(session, account="[/bold]shop", kind=MARKETING, nationcode="86",
                                mobile="13700000001", tpl_id=TPL_MARKETING, params=["x"],
                                sign=f"[red]s[/red] {CONTROL}")  # fmt: skip
        session.commit()
    now = clock.now()
    period = ["--from", (now - timedelta(hours=1)).isoformat(),
              "--to", (now + timedelta(hours=1)).isoformat()]  # fmt: skip

    table = succeeded(ledger.run("ledger", "summary", *period, "--by", "account,sign"))
    assert "[/bold]shop" in table and f"[red]s[/red] {CONTROL_SHOWN}" in table
    assert "\x1b" not in table
    answer = ledger.run("ledger", "summary", *period, "--by", "account,sign", "--format", "json")
    (row,) = json.loads(succeeded(answer))
    assert (row["account"], row["sign"]) == ("[/bold]shop", f"[red]s[/red] {CONTROL}")


def test_send_shows_what_the_gateway_and_the_ledger_said_as_it_is(
    ledger: CliLedger, redis_url: str
) -> None:
    # A message sent and refused before, with words that look like markup and terminal
    # control: sending it again with its key shows it, and sends nothing.
    environment = {**ledger.sms, "SMS_BROKER_URL": redis_url}
    params = ["a", "b", "c", "d", "e"]
    with ledger.sessions() as sessions:
        producer = Producer(settings_under(environment), sessions, lambda *_, **__: None)
        enqueued = producer.enqueue(
            "+8613700000001",
            template=TPL_LONG,
            params=params,
            sign=SIGN,
            kind=NOTIFICATION,
            idempotency_key="order-7",
        )
        with sessions() as session:
            message = session.get(SmsMessage, enqueued.id)
            assert message is not None
            message.status, message.result = FAILED, 1016
            message.errmsg = f"[/bold] {CONTROL}"
            message.reason = f"[red]refused[/red] :thumbs_up: {CONTROL}"
            session.add(SmsAttempt(message_id=message.id, attempt_no=1, request_id=uuid.uuid4(),
                                   api="sendsms", random=1, signed_time=1,
                                   started_at=clock.now(), finished_at=clock.now(),
                                   http_status=200, result=1016, outcome=Outcome.REJECTED,
                                   errmsg=f"[link=http://evil.example]{CONTROL}",
                                   worker="test"))  # fmt: skip
            session.commit()

    result = ledger.run("send", "--to", "+8613700000001", "--template", str(TPL_LONG),
                        *(arg for param in params for arg in ("--param", param)),
                        "--sign", SIGN, "--key", "order-7", "--wait", "--timeout", "5",
                        SMS_BROKER_URL=redis_url)  # fmt: skip

    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "already enqueued" in result.stdout
    assert f"[/bold] {CONTROL_SHOWN}" in result.stdout
    assert f"[red]refused[/red] :thumbs_up: {CONTROL_SHOWN}" in result.stdout
    assert f"[link=http://evil.example]{CONTROL_SHOWN}" in result.stdout
    assert "\x1b" not in result.stdout
    assert result.stderr.splitlines()[-1] == (
        f"sms-worker send: failed: [red]refused[/red] :thumbs_up: {CONTROL_SHOWN}"
    )


def test_reconcile_shows_the_gateways_words_as_they_are(
    ledger: CliLedger, simulator: SimulatorServer
) -> None:
    # An attempt whose answer never came, with an errmsg that would drive the terminal.
    with ledger.session() as session:
        message, _ = messages.insert_message(session, account="default", kind=MARKETING,
                                             nationcode="86", mobile="13700000001",
                                             tpl_id=TPL_MARKETING, params=["x"])  # fmt: skip
        session.flush()
        session.add(SmsAttempt(message_id=message.id, attempt_no=1, request_id=uuid.uuid4(),
                               api="sendsms", random=1, signed_time=1, started_at=clock.now(),
                               outcome=Outcome.AMBIGUOUS, errmsg=f"[/bold] {CONTROL}",
                               worker="test"))  # fmt: skip
        session.commit()
    now = clock.now()
    period = ["--from", (now - timedelta(hours=1)).isoformat(),
              "--to", (now + timedelta(hours=1)).isoformat()]  # fmt: skip

    result = ledger.run("ledger", "reconcile", *period, SMS_GATEWAY_URL=simulator.url)

    assert result.returncode == 1, (result.stdout, result.stderr)  # the attempt is unsettled
    assert "Ambiguous attempts (may have been sent and billed): 1" in result.stdout
    assert f"ambiguous, [/bold] {CONTROL_SHOWN}" in result.stdout
    assert "\x1b" not in result.stdout and "\u202e" not in result.stdout
