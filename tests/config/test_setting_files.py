"""Secrets as files: ``SMS_DATABASE_URL_FILE`` and ``SMS_RECEIVER_TOKEN_FILE`` stand for the
variables, so a container's password and token live in mounted files, not in its environment.
The installed ``sms-worker`` in a subprocess, as a container runs it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.pipeline import child_environment, settings_under
from worker.config import ConfigError
from worker.ledger import migrate as migrations

SMS_WORKER = str(Path(sys.executable).with_name("sms-worker"))
TOKEN = "Zq3vX8pL1mR7tY2wK9dF4hJ6"  # a stand-in for the operator's own


def sms_worker(folder: Path, *args: str, **sms: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SMS_WORKER, *args], cwd=folder, env=child_environment(sms), capture_output=True,
        text=True, timeout=300, check=False,
    )  # fmt: skip


def test_migrate_reads_the_ledger_url_from_its_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    secret = tmp_path / "sms_database_url"
    secret.write_text(f"{url}\n", encoding="utf-8")  # as `echo` writes it
    done = sms_worker(tmp_path, "migrate", SMS_DATABASE_URL_FILE=str(secret))
    assert done.returncode == 0, done.stderr
    assert migrations.current(url) == migrations.head()


@pytest.mark.parametrize(
    ("setting", "value"),
    [("SMS_DATABASE_URL", "sqlite:///other.db"), ("SMS_RECEIVER_TOKEN", TOKEN)],
)
def test_a_value_and_its_file_together_are_refused_naming_both(
    tmp_path: Path, setting: str, value: str
) -> None:
    secret = tmp_path / "secret"
    secret.write_text(value, encoding="utf-8")
    done = sms_worker(
        tmp_path, "migrate", **{setting: value, f"{setting}_FILE": str(secret)}
    )  # fmt: skip
    assert done.returncode == 2
    assert f"{setting}_FILE: {setting} is set too; keep one of them" in done.stderr
    assert value not in done.stderr


def test_a_missing_file_is_named_with_why(tmp_path: Path) -> None:
    done = sms_worker(tmp_path, "migrate", SMS_DATABASE_URL_FILE=str(tmp_path / "nowhere"))
    assert done.returncode == 2
    assert "SMS_DATABASE_URL_FILE: cannot read" in done.stderr
    assert "No such file or directory" in done.stderr


def test_the_receiver_token_is_read_from_its_file(tmp_path: Path) -> None:
    secret = tmp_path / "sms_receiver_token"
    secret.write_text(f"  {TOKEN}\n", encoding="utf-8")
    settings = settings_under({"SMS_RECEIVER_TOKEN_FILE": str(secret)})
    assert settings.receiver_token is not None
    assert settings.receiver_token.get_secret_value() == TOKEN
    assert TOKEN not in repr(settings)
    secret.write_text("", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"SMS_RECEIVER_TOKEN_FILE: .* is empty"):
        settings_under({"SMS_RECEIVER_TOKEN_FILE": str(secret)})
