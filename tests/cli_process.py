"""Running the installed ``sms-worker`` as users do: a child process on a ledger of its own.

``CliLedger`` is a migrated SQLite ledger in the test's folder with the simulator's example
account; ``run`` starts ``sms-worker`` with exactly that configuration (no SMS_* variable of the
machine) and a wide terminal, so that tables are not folded and text can be looked for whole.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import click
from sqlalchemy.orm import Session, sessionmaker

from tests.fixtures.pipeline import child_environment
from tests.fixtures.simulator import APPKEY, SDKAPPID
from worker.ledger.db import make_engine, session_factory
from worker.ledger.migrate import upgrade

SMS_WORKER = str(Path(sys.executable).with_name("sms-worker"))
COMMAND_TIMEOUT_SECONDS = 300  # a bound for a hung command, far above any busy machine's time


@dataclass(frozen=True)
class CliLedger:
    folder: Path
    url: str

    @classmethod
    def migrated(cls, folder: Path) -> CliLedger:
        url = f"sqlite:///{folder / 'ledger.db'}"
        upgrade(url)
        return cls(folder, url)

    @property
    def sms(self) -> dict[str, str]:
        """The SMS_* settings of the commands: this ledger, the simulator's example account."""
        return {"SMS_DATABASE_URL": self.url, "SMS_SDKAPPID": SDKAPPID, "SMS_APPKEY": APPKEY}

    def environment(self, **more: str) -> dict[str, str]:
        return {**child_environment({**self.sms, **more}), "COLUMNS": "400", "LINES": "200"}

    def run(self, *args: str, **more: str) -> subprocess.CompletedProcess[str]:
        """``sms-worker ARGS`` in the ledger's folder (no .env there); its output as text,
        decoded as written: a carriage return in a CSV cell stays one."""
        done = subprocess.run(
            [SMS_WORKER, *args],
            cwd=self.folder,
            env=self.environment(**more),
            capture_output=True,
            timeout=COMMAND_TIMEOUT_SECONDS,
            check=False,
        )
        out, err = done.stdout.decode("utf-8"), done.stderr.decode("utf-8")
        return subprocess.CompletedProcess(done.args, done.returncode, out, err)

    @contextmanager
    def sessions(self) -> Iterator[sessionmaker[Session]]:
        engine = make_engine(self.url)
        try:
            yield session_factory(engine)
        finally:
            engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.sessions() as sessions, sessions() as session:
            yield session


def succeeded(result: subprocess.CompletedProcess[str]) -> str:
    """The command's stdout, once it is known to have exited 0 without a word on stderr that
    would mean a crash."""
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "Error" not in result.stderr, result.stderr
    return result.stdout


def subcommands(group: click.Group) -> list[tuple[str, click.Command]]:
    """The commands of ``group`` by name, sorted; ``sms-worker`` loads each on demand."""
    context = click.Context(group)
    found = [(name, group.get_command(context, name)) for name in group.list_commands(context)]
    assert all(command is not None for _, command in found), found
    return sorted((name, command) for name, command in found if command is not None)
