"""``sms-worker accounts``: listing, pausing and resuming, on a migrated SQLite ledger."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy.orm import Session

from worker.cli import main
from worker.ledger import accounts, messages, status
from worker.ledger.db import make_engine, session_factory
from worker.ledger.migrate import upgrade

MIGRATE = "sms-worker migrate"
KEY = "5f03a35d00ee52a21327ab048186a2c4"  # the documented example key
OTHER_KEY = "0c7d3e5a9b1f4e2d8a6b4c2e0f1d3b5a"
ACCOUNTS_TOML = f"""
default_account = "shop"

[accounts.shop]
sdkappid = "1400000001"
appkey = "{KEY}"
gateway_url = "http://127.0.0.1:8080"
send_rate = 20

[accounts.bank]
sdkappid = "1400000002"
appkey = "{OTHER_KEY}"
"""


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Two configured accounts, no SMS_* variable of the machine, no .env file."""
    for name in list(os.environ):
        if name.startswith("SMS_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "accounts.toml"
    config.write_text(ACCOUNTS_TOML, encoding="utf-8")
    monkeypatch.setenv("SMS_CONFIG", str(config))


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    upgrade(url)
    monkeypatch.setenv("SMS_DATABASE_URL", url)
    return url


@contextmanager
def session_on(url: str) -> Iterator[Session]:
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            yield session
    finally:
        engine.dispose()


def queue_messages(url: str, account: str, count: int) -> None:
    with session_on(url) as session:
        for number in range(count):
            messages.insert_message(
                session,
                account=account,
                kind=status.NOTIFICATION,
                nationcode="86",
                mobile=f"1378888888{number}",
                tpl_id=7839,
                params=["1234"],
            )
        session.commit()


def paused(url: str, name: str) -> bool:
    with session_on(url) as session:
        return accounts.is_paused(session, name)


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["accounts", *args], env={"COLUMNS": "200"})
    return result.exit_code, result.stdout, result.stderr


def listed(*args: str) -> dict[str, dict[str, object]]:
    code, out, err = run("list", "--format", "json", *args)
    assert (code, err) == (0, "")
    return {row["name"]: row for row in json.loads(out)}


def test_the_default_is_a_table_of_the_configured_accounts(ledger: str) -> None:
    queue_messages(ledger, "shop", 2)
    code, out, err = run()
    assert (code, err) == (0, "")
    shop_line = next(line for line in out.splitlines() if " shop " in line)
    for cell in ("1400000001", "http://127.0.0.1:8080", "20", "2", "active"):
        assert cell in shop_line
    bank_line = next(line for line in out.splitlines() if " bank " in line)
    for cell in ("1400000002", "https://yun.tim.qq.com", "50", "0", "active"):
        assert cell in bank_line
    assert KEY not in out and OTHER_KEY not in out


def test_pause_list_and_resume(ledger: str) -> None:
    queue_messages(ledger, "shop", 3)
    code, out, err = run("pause", "shop", "--reason", "contract renewal pending")
    assert (code, err) == (0, "")
    assert out == "Paused shop: 3 queued message(s) wait until `sms-worker accounts resume shop`.\n"
    assert paused(ledger, "shop") and not paused(ledger, "bank")

    rows = listed()
    assert rows["shop"]["paused"] is True
    assert rows["shop"]["paused_reason"] == "contract renewal pending"
    assert rows["shop"]["paused_code"] is None
    assert str(rows["shop"]["paused_since"]).endswith("+00:00")
    assert rows["bank"]["paused"] is False
    code, out, _ = run("list")
    shop_line = next(line for line in out.splitlines() if " shop " in line)
    assert code == 0 and "paused since" in shop_line

    code, out, _ = run("pause", "shop", "--reason", "again")
    assert code == 0 and out.startswith("shop was already paused since ")
    assert out.rstrip().endswith(": contract renewal pending")

    code, out, err = run("resume", "shop")
    assert (code, err) == (0, "")
    assert out == "Resumed shop: 3 queued message(s) will go out as the sweeper publishes them.\n"
    assert not paused(ledger, "shop")
    assert run("resume", "shop")[:2] == (0, "shop is not paused; nothing to do.\n")


def test_a_pause_by_the_gateway_shows_its_code(ledger: str) -> None:
    with session_on(ledger) as session:
        accounts.pause_account(
            session, "bank", code=1033, reason="suspended for arrears", now=datetime.now(UTC)
        )
        session.commit()
    assert listed()["bank"]["paused_code"] == 1033
    code, out, _ = run()
    assert code == 0 and "code 1033: suspended for arrears" in out


def test_an_unconfigured_paused_account_is_shown_and_can_be_resumed(ledger: str) -> None:
    with session_on(ledger) as session:
        accounts.pause_account(session, "old", code=1031, reason="package", now=datetime.now(UTC))
        session.commit()
    rows = listed()
    assert list(rows) == ["shop", "bank", "old"]
    assert rows["old"]["configured"] is False and rows["old"]["paused"] is True
    assert run("resume", "old")[0] == 0
    assert not paused(ledger, "old")
    assert list(listed()) == ["shop", "bank"]


@pytest.mark.parametrize("args", [["pause", "nope", "--reason", "x"], ["resume", "nope"]])
def test_an_unknown_account_exits_2(ledger: str, args: list[str]) -> None:
    code, out, err = run(*args)
    assert (code, out) == (2, "")
    assert err == "sms-worker accounts: unknown account 'nope'; known: shop, bank\n"


def test_pause_needs_a_reason(ledger: str) -> None:
    code, _, err = run("pause", "shop")
    assert code == 2 and "--reason" in err
    assert not paused(ledger, "shop")


def test_the_database_url_option_on_the_group_or_the_command(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'other.db'}"
    upgrade(url)
    assert run("--database-url", url, "pause", "bank", "--reason", "x")[0] == 0
    assert paused(url, "bank")
    assert listed("--database-url", url)["bank"]["paused"] is True
    assert run("resume", "bank", "--database-url", url)[0] == 0
    assert not paused(url, "bank")


def test_an_unmigrated_ledger_exits_1_with_what_to_do(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    code, out, err = run("list", "--database-url", url)
    assert (code, out) == (1, "")
    assert (
        err
        == f"sms-worker accounts: {url}: the ledger is not up to date; run: sms-worker migrate\n"
    )


def test_an_unreachable_database_exits_1_without_its_password() -> None:
    # Port 9 (discard) on loopback: nothing listens there, the connection is refused at once.
    url = "postgresql://sms:hunter2@127.0.0.1:9/sms?connect_timeout=5"
    code, out, err = run("pause", "shop", "--reason", "x", "--database-url", url)
    assert (code, out) == (1, "")
    assert err.startswith("sms-worker accounts: postgresql://sms:***@127.0.0.1:9/sms")
    assert len(err.strip().splitlines()) == 1
    assert "hunter2" not in err


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SMS_DATABASE_URL": "mysql://u:hunter2@127.0.0.1/sms"}, "SMS_DATABASE_URL"),
        ({"SMS_CONFIG": "missing.toml"}, "SMS_CONFIG: cannot read 'missing.toml'"),
    ],
)
def test_bad_configuration_exits_2(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code, out, err = run("list")
    assert (code, out) == (2, "")
    assert err.startswith("sms-worker accounts: ") and message in err
    assert len(err.strip().splitlines()) == 1
    assert "hunter2" not in err


def test_help_has_examples() -> None:
    code, out, _ = run("--help")
    assert code == 0
    assert 'sms-worker accounts pause shop --reason "contract renewal pending"' in out
    assert "sms-worker accounts resume shop" in out
    for command in ("list", "pause", "resume"):
        code, out, _ = run(command, "--help")
        assert code == 0 and "Example" in out


def test_the_group_takes_the_format_for_its_list(ledger: str) -> None:
    queue_messages(ledger, "bank", 1)
    code, out, err = run("--format", "json")
    assert (code, err) == (0, "")
    rows = {row["name"]: row for row in json.loads(out)}
    assert list(rows) == ["shop", "bank"]
    assert (rows["bank"]["queued"], rows["shop"]["send_rate"]) == (1, 20)
    code, out, _ = run("--format", "csv")
    assert code == 0
    assert out.splitlines()[0].startswith("name,configured,sdkappid,gateway_url,send_rate,paused")
    assert out.splitlines()[2].startswith("bank,True,1400000002,https://yun.tim.qq.com,50.0,False")
    # The subcommand's own --format wins over the group's.
    code, out, _ = run("--format", "csv", "list", "--format", "json")
    assert code == 0 and [row["name"] for row in json.loads(out)] == ["shop", "bank"]
