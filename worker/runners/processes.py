"""Start and stop the system's own processes (Celery worker, beat) for the demo and the tests.

Each runs in its own process with the environment it is given, its output in a log file, and is
stopped by its own pid: politely first (TERM, a warm shutdown), by KILL after a bounded wait.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from worker.celery.routing import QUEUES

READY_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 20.0


class ProcessFailed(RuntimeError):
    pass


class ManagedProcess:
    """One child process; ``ready_text`` in its log means it is up."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        log_path: Path,
        ready_text: str,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.cwd = cwd
        self.argv = list(argv)
        self.env = dict(env)
        self.log_path = log_path
        self.ready_text = ready_text
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = READY_TIMEOUT_SECONDS) -> ManagedProcess:
        if self.process is not None and self.running:
            # A second start would lose the first process, which would go on consuming its
            # queues unseen (and take the tasks of whoever uses that broker next).
            raise ProcessFailed(f"{self.name} is running already (pid {self.process.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            # Its own session: a Ctrl-C at the terminal reaches us, and we stop it in order.
            self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
                self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=self.cwd,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready_text in self.log_path.read_text(errors="replace")[offset:]:
                return self
            if self.process.poll() is not None:
                raise ProcessFailed(
                    f"{self.name} exited with {self.process.returncode}; see {self.log_path}"
                )
            time.sleep(0.1)
        self.stop()
        raise ProcessFailed(f"{self.name} was not ready after {timeout:.0f} s; see {self.log_path}")

    def kill(self, sig: int = signal.SIGKILL, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        """Send ``sig`` to the process (by its pid) and wait for it to exit."""
        if self.process is not None and self.running:
            os.kill(self.process.pid, sig)
            self.process.wait(timeout=timeout)

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        """Warm shutdown (TERM); KILL when it has not exited within ``timeout``."""
        try:
            self.kill(signal.SIGTERM, timeout)
        except subprocess.TimeoutExpired:
            self.kill(signal.SIGKILL, timeout)

    def __enter__(self) -> ManagedProcess:
        return self.start() if self.process is None else self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def celery_worker(
    env: Mapping[str, str],
    log_path: Path,
    *,
    queues: Sequence[str] = QUEUES,
    pool: str = "threads",
    concurrency: int = 8,
    name: str = "sms",
    cwd: Path | None = None,
) -> ManagedProcess:
    """A Celery worker consuming ``queues`` (all of them by default)."""
    argv = [
        sys.executable, "-m", "celery", "-A", "worker", "worker",
        "-Q", ",".join(queues), "-P", pool, "-c", str(concurrency), "-n", f"{name}@%h",
        "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "info",
    ]  # fmt: skip
    return ManagedProcess(f"worker {name}", argv, env, log_path, ready_text="ready.", cwd=cwd)


def celery_beat(
    env: Mapping[str, str], log_path: Path, schedule_path: Path, *, cwd: Path | None = None
) -> ManagedProcess:
    """Celery beat with its schedule file at ``schedule_path``."""
    argv = [
        sys.executable, "-m", "celery", "-A", "worker", "beat",
        "-s", str(schedule_path), "-l", "info",
    ]  # fmt: skip
    return ManagedProcess("beat", argv, env, log_path, ready_text="beat: Starting", cwd=cwd)
