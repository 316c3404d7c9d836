"""Migrations on PostgreSQL and SQLite, their match with the models, packaging, and the command."""

from __future__ import annotations

import tomllib
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner
from setuptools import find_packages
from sqlalchemy import Engine, inspect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from worker.cli.migrate import migrate
from worker.ledger import attempts, messages, status
from worker.ledger.db import make_engine
from worker.ledger.migrate import current, downgrade, head, upgrade
from worker.ledger.schema import Base

ROOT = Path(__file__).resolve().parents[2]
LEDGER_TABLES = {
    "sms_messages",
    "sms_attempts",
    "sms_accounts",
    "sms_delivery_reports",
    "sms_replies",
    "sms_opt_outs",
    "sms_batches",
    "sms_batch_rejections",
    "sms_daily_usage",
    "sms_prices",
}
# The newest revision, written out: a new migration updates it here on purpose.
NEWEST = "0007"


def tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def model_differences(url: str) -> list[object]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "compare_server_default": True}
            )
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def test_empty_to_head_to_base_to_head(empty_database_url: str) -> None:
    assert current(empty_database_url) is None
    assert tables(empty_database_url) == set()
    upgrade(empty_database_url)
    assert current(empty_database_url) == head() == NEWEST
    assert tables(empty_database_url) == LEDGER_TABLES
    upgrade(empty_database_url)  # again: nothing to do
    downgrade(empty_database_url, "base")
    assert current(empty_database_url) is None
    assert tables(empty_database_url) == set()
    upgrade(empty_database_url, "head")
    assert tables(empty_database_url) == LEDGER_TABLES


def test_the_models_match_the_migrations(ledger_url: str) -> None:
    assert model_differences(ledger_url) == []


def test_the_comparison_sees_a_difference(empty_database_url: str) -> None:
    upgrade(empty_database_url)
    downgrade(empty_database_url, "base")
    differences = {str(difference) for difference in model_differences(empty_database_url)}
    assert any("sms_messages" in difference for difference in differences)


def test_the_check_constraints_allow_exactly_the_known_words(
    ledger_session: Session, ledger_engine: Engine
) -> None:
    # CHECK constraints are outside what autogenerate compares: test them by using them.
    base = {"account": "a", "nationcode": "86", "mobile": "13788888888", "params": []}
    for kind in status.KINDS:
        for state in status.MESSAGE_STATUSES:
            messages.insert_message(ledger_session, **base, kind=kind, status=state)
    ledger_session.commit()
    for column, value in (("status", "sending_soon"), ("kind", "promotion")):
        with pytest.raises(IntegrityError):
            messages.insert_message(ledger_session, **{"kind": "marketing", **base, column: value})
        ledger_session.rollback()

    message, _ = messages.insert_message(ledger_session, **base, kind="marketing")
    now = datetime.now(UTC)
    request = {"api": "sendsms", "random": 1, "signed_time": 1, "worker": "w", "started_at": now}
    for number, outcome in enumerate(status.ATTEMPT_OUTCOMES[1:], start=1):
        attempt_id = attempts.begin_attempt(
            ledger_session,
            message_id=message.id,
            attempt_no=number,
            request_id=uuid.uuid4(),
            **request,
        )
        assert attempts.finish_attempt(
            ledger_session,
            attempt_id,
            finished_at=now,
            http_status=None,
            result=None,
            errmsg=None,
            sid=None,
            fee=None,
            outcome=outcome,
            latency_ms=None,
        )
    ledger_session.commit()
    attempt_id = attempts.begin_attempt(
        ledger_session, message_id=message.id, attempt_no=99, request_id=uuid.uuid4(), **request
    )
    with pytest.raises(IntegrityError):
        attempts.finish_attempt(
            ledger_session,
            attempt_id,
            finished_at=now,
            http_status=None,
            result=None,
            errmsg=None,
            sid=None,
            fee=None,
            outcome="lost",
            latency_ms=None,
        )
    ledger_session.rollback()


def test_every_package_is_found_for_installation() -> None:
    """A plain `pip install .` ships only the packages setuptools finds (an editable install hides
    a folder that is not a package): every folder of worker/ holding code must be found."""
    setuptools_config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))[
        "tool"
    ]["setuptools"]
    on_disk = {
        ".".join(path.parent.relative_to(ROOT).parts)
        for path in (ROOT / "worker").rglob("*.py")
        if "__pycache__" not in path.parts
    }
    found = set(find_packages(str(ROOT), include=setuptools_config["packages"]["find"]["include"]))
    assert on_disk - found == set()
    assert (ROOT / "worker" / "ledger" / "migrations" / "script.py.mako").exists()
    assert "script.py.mako" in setuptools_config["package-data"]["worker.ledger.migrations"]


class TestCommand:
    def run(self, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
        result = CliRunner().invoke(migrate, list(args), input=stdin)
        return result.exit_code, result.stdout, result.stderr

    def test_migrates_a_new_sqlite_file_and_is_idempotent(self, tmp_path: Path) -> None:
        url = f"sqlite:///{tmp_path / 'new.db'}"
        code, out, err = self.run("--database-url", url)
        assert (code, err) == (0, "")
        assert out == f"{url}: empty -> {NEWEST}\n"
        assert tables(url) == LEDGER_TABLES
        assert self.run("--database-url", url)[:2] == (0, f"{url}: already at {NEWEST}\n")
        code, out, _ = self.run("--database-url", url, "--show")
        assert code == 0 and f"at {NEWEST}, newest {NEWEST}: up to date" in out

    def test_uses_sms_database_url(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        url = f"sqlite:///{tmp_path / 'env.db'}"
        monkeypatch.setenv("SMS_DATABASE_URL", url)
        code, out, _ = self.run("--show")
        assert code == 0 and f"at nothing (empty), newest {NEWEST}" in out
        assert self.run()[0] == 0
        assert current(url) == NEWEST

    def test_downgrade_asks_first(self, tmp_path: Path) -> None:
        url = f"sqlite:///{tmp_path / 'down.db'}"
        upgrade(url)
        code, _, _ = self.run("--database-url", url, "--downgrade", "base", stdin="n\n")
        assert code == 1
        assert current(url) == NEWEST
        code, _, _ = self.run("--database-url", url, "--downgrade", "base", "--yes")
        assert code == 0
        assert current(url) is None

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["--database-url", "ledger.db"], "--database-url: not a database URL"),
            (
                ["--database-url", "mysql://sms:hunter2@127.0.0.1/sms"],
                "--database-url: the ledger runs on PostgreSQL or SQLite, not mysql",
            ),
            (["--revision", "0099"], "Can't locate revision"),
            (["--revision", "0001", "--downgrade", "base"], "not both"),
        ],
    )
    def test_bad_input_exits_2(self, tmp_path: Path, args: list[str], message: str) -> None:
        if "--database-url" not in args:
            args = ["--database-url", f"sqlite:///{tmp_path / 'x.db'}", *args]
        code, out, err = self.run(*args)
        assert code == 2
        assert out == ""
        assert message in err
        assert len(err.strip().splitlines()) == 1
        assert "hunter2" not in err

    def test_an_unreachable_database_exits_1_without_its_password(self) -> None:
        # Port 9 (discard) on loopback: nothing listens there, the connection is refused at once.
        url = "postgresql://sms:hunter2@127.0.0.1:9/sms?connect_timeout=5"
        code, out, err = self.run("--database-url", url)
        assert code == 1
        assert out == ""
        assert err.startswith("sms-worker migrate: postgresql://sms:***@127.0.0.1:9/sms")
        assert len(err.strip().splitlines()) == 1
        assert "hunter2" not in err

    def test_help_has_an_example(self) -> None:
        code, out, _ = self.run("--help")
        assert code == 0
        assert "sms-worker migrate --database-url" in out
