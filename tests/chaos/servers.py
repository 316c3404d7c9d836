"""Redis and PostgreSQL servers of the suite's own, on free loopback ports, to kill and restart.

The machine's shared servers are never touched: each server here is a child process of the test
run, started from a folder it alone uses, stopped by its own pid, and its folder removed.

- ``OwnRedis``: ``redis-server`` without persistence (``--save "" --appendonly no``); a restart
  is a SIGKILL and a new server on the same port, empty.
- ``OwnPostgres``: a cluster made by ``initdb`` (trust auth, fsync off: speed over durability,
  which a crash of the machine would need, not a crash of the server) and served by ``postgres``
  itself as a child, listening on 127.0.0.1 only. ``synchronous_commit`` stays on: without it
  a crash of the server itself loses the last commits, which the restart case would rightly
  count as lost messages. PostgreSQL refuses to run as root, so under
  root both run as the ``postgres`` OS user, in a folder that user owns.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 30.0
POLL_SECONDS = 0.1
POSTGRES_USER = "postgres"


class ServerFailed(RuntimeError):
    pass


def free_port() -> int:
    """A loopback port nobody listens on now (the OS's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def answers(port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


class ChildServer:
    """One server process started by us; stopped by its pid, politely first."""

    def __init__(self, name: str, folder: Path, port: int) -> None:
        self.name = name
        self.folder = folder
        self.port = port
        self.log_path = folder / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def argv(self) -> list[str]:
        raise NotImplementedError

    def popen_options(self) -> dict[str, Any]:
        return {}

    def start(self, timeout: float = START_TIMEOUT_SECONDS) -> None:
        """Start the server and wait (bounded) until it accepts connections on its port."""
        assert not self.running, f"{self.name} is already running"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv(), stdout=log, stderr=subprocess.STDOUT, cwd=self.folder,
                start_new_session=True, **self.popen_options(),
            )  # fmt: skip
        self.starts += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerFailed(f"{self.name} exited at start:\n{self.log_tail()}")
            if self.ready():
                return
            time.sleep(POLL_SECONDS)
        self.kill()
        raise ServerFailed(f"{self.name} did not answer within {timeout:g} s:\n{self.log_tail()}")

    def ready(self) -> bool:
        return answers(self.port)

    def kill(self, signum: int = signal.SIGKILL, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        """Send ``signum`` to the server's pid and wait for it to exit (SIGKILL if it lingers)."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signum)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout)

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class OwnRedis(ChildServer):
    def __init__(self, folder: Path) -> None:
        super().__init__("redis", folder, free_port())

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def argv(self) -> list[str]:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServerFailed("redis-server is not installed")
        return [
            binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(self.folder), "--daemonize", "no",
        ]  # fmt: skip

    def restart_empty(self, down_seconds: float) -> None:
        """Die without a trace, ``down_seconds`` of nothing listening, then back on the same
        port with nothing in it."""
        self.kill(signal.SIGKILL)
        time.sleep(down_seconds)
        self.start()

    def stop(self) -> None:
        self.kill(signal.SIGTERM)


def postgres_binaries() -> Path:
    """The folder of ``initdb`` and ``postgres``: on the PATH, or Debian's newest version."""
    found = shutil.which("initdb")
    if found is not None:
        return Path(found).resolve().parent  # a link on the PATH: the real folder
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3])
    )
    if not candidates:
        raise ServerFailed("PostgreSQL's initdb is not installed")
    return Path(candidates[-1]).parent


class OwnPostgres(ChildServer):
    """A throwaway cluster; ``url`` is its ``postgres`` database as the ``postgres`` role."""

    def __init__(self, folder: Path) -> None:
        super().__init__("postgres", folder, free_port())
        self.bin = postgres_binaries()
        self.data = folder / "data"
        # Root may not run PostgreSQL: its processes and files then belong to the postgres user.
        self.user = pwd.getpwnam(POSTGRES_USER) if os.geteuid() == 0 else None
        if self.user is not None:
            os.chown(folder, self.user.pw_uid, self.user.pw_gid)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def popen_options(self) -> dict[str, Any]:
        if self.user is None:
            return {}
        return {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}

    def init(self) -> None:
        """Make the cluster's files (once)."""
        argv = [
            str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
            "--encoding=UTF8", "--locale=C", "--no-sync",
        ]  # fmt: skip
        with (self.folder / "initdb.log").open("wb") as log:
            done = subprocess.run(
                argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.folder,
                timeout=START_TIMEOUT_SECONDS, check=False, **self.popen_options(),
            )  # fmt: skip
        if done.returncode != 0:
            text = (self.folder / "initdb.log").read_text(errors="replace")
            raise ServerFailed(f"initdb failed ({done.returncode}):\n{text[-2000:]}")

    def argv(self) -> list[str]:
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": "",
            "fsync": "off",
            "full_page_writes": "off",
            "max_connections": "200",
        }
        options = [part for key, value in settings.items() for part in ("-c", f"{key}={value}")]
        return [str(self.bin / "postgres"), "-D", str(self.data), *options]

    def ready(self) -> bool:
        done = subprocess.run(
            [str(self.bin / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)],
            capture_output=True, timeout=10, check=False,
        )  # fmt: skip
        return done.returncode == 0

    def crash_restart(self, down_seconds: float) -> None:
        """Immediate shutdown (SIGQUIT: no checkpoint, every session cut, crash recovery at the
        next start), ``down_seconds`` of nothing listening, then the same cluster again."""
        self.kill(signal.SIGQUIT)
        time.sleep(down_seconds)
        self.start()

    def stop(self) -> None:
        """Fast shutdown: sessions cut, a checkpoint, exit."""
        self.kill(signal.SIGINT)


def server_folder(prefix: str) -> Path:
    """A new folder under the system's temporary folder (which any user may traverse; pytest's
    own temporary folders are private to the user running the tests)."""
    return Path(tempfile.mkdtemp(prefix=prefix))
