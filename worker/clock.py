"""The worker's one clock: every "now" of the worker (producer, tasks, sweeper, dispatcher, ledger
defaults, throttle days, reports, finance "today") comes from here.

``SMS_CLOCK_OFFSET_SECONDS`` shifts it, for demos and tests at a simulated hour: the worker acts
as if the real clock read that many seconds later. The offset is read once, from the environment,
the first time the clock is asked; ``load_settings`` then sets it to the value its settings hold
(which may come from a ``.env`` file), so settings and ledger defaults never disagree. Durations
(timeouts, latencies) keep ``time.monotonic``: they measure, they do not tell the time.

Importing this module reads nothing; it imports neither the database nor Celery.
"""

from __future__ import annotations

import math
import os
import threading
import time
from datetime import UTC, datetime, timedelta

OFFSET_SETTING = "SMS_CLOCK_OFFSET_SECONDS"

_offset: float | None = None
_lock = threading.Lock()


def offset_seconds() -> float:
    """How many seconds the worker's clock runs ahead of the real one (0 in production)."""
    offset = _offset
    if offset is None:
        with _lock:
            offset = _offset
            if offset is None:
                offset = _read_offset(os.environ.get(OFFSET_SETTING, ""))
                set_offset(offset)
    return offset


def set_offset(seconds: float) -> None:
    """Make the process's clock run ``seconds`` ahead of the real one (settings call this)."""
    global _offset
    if not math.isfinite(seconds):
        raise ValueError(f"{OFFSET_SETTING}: must be a finite number of seconds, not {seconds}")
    _offset = float(seconds)


def forget_offset() -> None:
    """Read the offset from the environment again at the next reading (a test between others)."""
    global _offset
    _offset = None


def now() -> datetime:
    """The worker's now: aware UTC, shifted by ``SMS_CLOCK_OFFSET_SECONDS``."""
    return datetime.now(UTC) + timedelta(seconds=offset_seconds())


def unix_time() -> float:
    """Unix seconds on the same clock (what a request is signed with)."""
    return time.time() + offset_seconds()


def _read_offset(raw: str) -> float:
    """The offset written in the environment; empty means none (as the settings read it)."""
    if not raw.strip():
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(
            f"{OFFSET_SETTING}: {raw[:40]!r} is not a number of seconds; e.g. 21600 for 6 hours"
        ) from None
    if not math.isfinite(value):
        raise ValueError(f"{OFFSET_SETTING}: must be a finite number of seconds, not {raw[:40]!r}")
    return value
