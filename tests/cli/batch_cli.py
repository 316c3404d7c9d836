"""`sms-worker batch` as a user runs it: the installed command in a subprocess, on one ledger
that the test reads back directly."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.fixtures.pipeline import child_environment
from tests.fixtures.simulator import APPKEY, SDKAPPID
from worker.ledger import batch_rows, batches
from worker.ledger.schema import SmsMessage

SMS_WORKER = str(Path(sys.executable).with_name("sms-worker"))
TEMPLATE = "100002"
SHARED = ["--param", "会员", "--param", "8"]


def number(n: int) -> str:
    return f"+86137{n:08d}"


def summary(result: subprocess.CompletedProcess[str]) -> str:
    """The command's output with its line breaks and runs of spaces as single spaces."""
    return " ".join(result.stdout.split())


class Ledger:
    """The command against one ledger."""

    def __init__(self, url: str, sessions: sessionmaker[Session]) -> None:
        self.environment = child_environment(
            {"SMS_DATABASE_URL": url, "SMS_SDKAPPID": SDKAPPID, "SMS_APPKEY": APPKEY}
        )
        self.sessions = sessions

    def command(self, *args: str) -> list[str]:
        return [SMS_WORKER, *args]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args), env=self.environment, capture_output=True, text=True,
            timeout=600, check=False,
        )  # fmt: skip

    def create(self, file: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run(*self.create_args(file, *args))

    def create_args(self, file: Path, *args: str) -> list[str]:
        return ["batch", "create", str(file), "--template", TEMPLATE, *args]

    def batches(self) -> list[dict[str, Any]]:
        with self.sessions() as session:
            return [b.summary() for b in batches.list_batches(session)]

    def only_batch(self) -> dict[str, Any]:
        (batch,) = self.batches()
        return batch

    def rejections(self, batch_id: str) -> list[dict[str, Any]]:
        with self.sessions() as session:
            found = batch_rows.rejections(session, uuid.UUID(batch_id))
        return [{"line": r.line_no, "reason": r.reason, "detail": r.detail, "row": r.raw}
                for r in found]  # fmt: skip

    def messages(self) -> int:
        """Messages in the ledger, of every batch."""
        with self.sessions() as session:
            return session.scalar(select(func.count()).select_from(SmsMessage)) or 0
