"""Ctrl-C and SIGTERM as an exception, so a command that started things stops them on the way out.

``StopSignals.installed()`` turns the first SIGINT or SIGTERM into ``Stopped`` in the main thread;
later ones are ignored while the command cleans up (the cleanup's own waits are bounded).
``deferred()`` holds a signal back while something is acquired and its release registered, so a
stop can never fall between the two and leave a process or a claim behind.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(BaseException):
    """A stop was asked for with ``signum``. Not an Exception, like KeyboardInterrupt: code that
    handles any error (and carries on) must not swallow it."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.name = signal.Signals(signum).name
        super().__init__(f"stopped by {self.name}")


class StopSignals:
    def __init__(self) -> None:
        self._deferring = 0
        self._pending: int | None = None
        self._raised = False

    @contextmanager
    def installed(self) -> Iterator[StopSignals]:
        previous = {signum: signal.signal(signum, self._handle) for signum in SIGNALS}
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """A signal arriving inside is raised when the block is done (not if it raised)."""
        self._deferring += 1
        try:
            yield
        finally:
            self._deferring -= 1
        if self._pending is not None and not self._deferring:
            self._stop(self._pending)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self._raised:
            return  # already stopping
        if self._deferring:
            self._pending = signum
            return
        self._stop(signum)

    def _stop(self, signum: int) -> None:
        if not self._raised:
            self._raised = True
            raise Stopped(signum)
