"""Everything the simulator remembers: clock, inbox, request log, counters, limits, scripts.

All of it lives on the server's event loop thread, so nothing here needs a lock. The log and the
inbox are bounded; the hourly counters are kept apart so ``pullsendstatus`` stays exact whatever
the bound.
"""

from __future__ import annotations

import random
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache

from worker.simulator.checks import TemplateBook
from worker.simulator.config import Account, Limits, SimulatorConfig
from worker.simulator.faults import FaultSettings, Step
from worker.simulator.parsing import Refusal
from worker.tencent.types import BEIJING, Phone

_WINDOW_30S, _WINDOW_HOUR, _KEEP_SECONDS = 30, 3600, 2 * 86_400


@lru_cache(maxsize=4)
def _beijing_second(second: int) -> str:
    return datetime.fromtimestamp(second, BEIJING).strftime("%Y-%m-%d %H:%M:%S")


def beijing_text(unix: float) -> str:
    """``YYYY-MM-DD HH:MM:SS`` in Beijing time, the format of the gateway's reports."""
    return _beijing_second(int(unix))


def beijing_day(unix: float) -> int:
    return (int(unix) + 8 * 3600) // 86_400


def utc_iso(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).isoformat()


class Clock:
    """The simulator's idea of now: real time shifted by an offset.

    The offset starts as the configuration's (SMS_CLOCK_OFFSET_SECONDS, the worker's simulated
    time too); the control API may set it; ``reset`` and ``set_real`` return to the configured
    one. Values are checked by the callers (the configuration, the control API).
    """

    def __init__(self, configured_offset: float = 0.0) -> None:
        self.configured_offset = configured_offset
        self.offset = configured_offset

    def now(self) -> float:
        return time.time() + self.offset

    def set_now(self, unix: float) -> None:
        """Jump to ``unix``; the clock keeps ticking from there."""
        self.offset = unix - time.time()

    def set_offset(self, seconds: float) -> None:
        self.offset = seconds

    def set_real(self) -> None:
        """Back to the configured time: real time plus SMS_CLOCK_OFFSET_SECONDS."""
        self.offset = self.configured_offset

    def to_json(self) -> dict[str, object]:
        now = self.now()
        return {
            "now": now,
            "offset": self.offset,
            "utc": utc_iso(now),
            "beijing": beijing_text(now),
        }


@dataclass(frozen=True, slots=True)
class InboxEntry:
    """One SMS as a handset received it."""

    nationcode: str
    mobile: str
    text: str
    sid: str
    fee: int
    time: float
    sdkappid: str
    api: str

    def to_json(self) -> dict[str, object]:
        return {
            "nationcode": self.nationcode,
            "mobile": self.mobile,
            "text": self.text,
            "sid": self.sid,
            "fee": self.fee,
            "time": self.time,
            "received_at": utc_iso(self.time),
            "sdkappid": self.sdkappid,
            "api": self.api,
        }


@dataclass(frozen=True, slots=True)
class NumberOutcome:
    nationcode: str
    mobile: str
    result: int
    sid: str = ""
    fee: int = 0

    def to_json(self) -> dict[str, object]:
        return {
            "nationcode": self.nationcode,
            "mobile": self.mobile,
            "result": self.result,
            "sid": self.sid,
            "fee": self.fee,
        }


@dataclass(slots=True)
class LogEntry:
    """One request and what the simulator answered; ``http_status`` None means dropped."""

    api: str
    received_at: float
    sdkappid: str = ""
    random: str = ""
    time: int | None = None
    sig_valid: bool | None = None  # None: not checked (refused before, or not a send)
    numbers: tuple[str, ...] = ()  # E.164
    http_status: int | None = 200
    result: int | None = None
    outcomes: tuple[NumberOutcome, ...] = ()
    fault: str | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "api": self.api,
            "sdkappid": self.sdkappid,
            "random": self.random,
            "time": self.time,
            "sig_valid": self.sig_valid,
            "numbers": list(self.numbers),
            "http_status": self.http_status,
            "result": self.result,
            "results": [outcome.to_json() for outcome in self.outcomes],
            "sids": [outcome.sid for outcome in self.outcomes if outcome.sid],
            "fault": self.fault,
            "received_at": utc_iso(self.received_at),
        }


@dataclass(slots=True)
class HourFigures:
    request: int = 0
    success: int = 0
    bill_number: int = 0


@dataclass(slots=True)
class FrequencyWindows:
    """Delivery times per number, for 1023/1024/1025."""

    times: dict[str, deque[float]] = field(default_factory=dict)

    def check(self, phone: Phone, now: float, limits: Limits) -> None:
        sent = self.times.get(phone.e164)
        if not sent:
            return
        in_30s, in_hour = limits.per_number_30s, limits.per_number_hour
        if in_30s is not None and _count_since(sent, now - _WINDOW_30S) >= in_30s:
            raise Refusal(1023)
        if in_hour is not None and _count_since(sent, now - _WINDOW_HOUR) >= in_hour:
            raise Refusal(1024)
        if limits.per_number_day is not None:
            today = beijing_day(now)
            if sum(1 for t in sent if beijing_day(t) == today) >= limits.per_number_day:
                raise Refusal(1025)

    def record(self, phone: Phone, now: float) -> None:
        sent = self.times.setdefault(phone.e164, deque())
        sent.append(now)
        while sent and sent[0] < now - _KEEP_SECONDS:
            sent.popleft()


def _count_since(times: deque[float], since: float) -> int:
    return sum(1 for t in times if t > since)


class SimulatorState:
    """The simulator's memory. ``reset()`` returns it to what the configuration says."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.accounts: dict[str, Account] = {a.sdkappid: a for a in config.accounts}
        self.book = TemplateBook(config)
        self.clock = Clock(config.clock_offset_seconds)
        self.rng = random.Random()
        self.reset()

    def reset(self) -> None:
        config = self.config
        self.clock.set_real()
        self.faults: FaultSettings = config.faults
        self.limits: Limits = config.limits
        self.balance: int | None = config.limits.balance
        self.scripts: dict[str, deque[Step]] = {m: deque(s) for m, s in config.scripts.items()}
        self.inbox: deque[InboxEntry] = deque(maxlen=config.log_limit)
        self.log: deque[LogEntry] = deque(maxlen=config.log_limit)
        self.hours: dict[tuple[str, int], HourFigures] = {}
        self.windows = FrequencyWindows()
        self.results: Counter[int] = Counter()
        self.requests_by_api: Counter[str] = Counter()
        self.delivered = 0
        self.billed = 0

    def set_limits(self, limits: Limits) -> None:
        self.limits = limits
        self.balance = limits.balance

    # --- scripts -----------------------------------------------------------------------------

    def script(self, mobile: str, steps: tuple[Step, ...]) -> None:
        """Replace the steps waiting for ``mobile``; an empty list clears them."""
        if steps:
            self.scripts[mobile] = deque(steps)
        else:
            self.scripts.pop(mobile, None)

    def next_step(self, mobile: str) -> Step | None:
        steps = self.scripts.get(mobile)
        if not steps:
            return None
        step = steps.popleft()
        if not steps:
            del self.scripts[mobile]
        return step

    # --- per-number policy -------------------------------------------------------------------

    def check_number_policy(self, phone: Phone, fee: int, now: float) -> None:
        """Frequency (1023/1024/1025), blacklist (1015), then balance (1031)."""
        limits = self.limits
        if limits.frequency_limited:
            self.windows.check(phone, now, limits)
        blacklist = limits.blacklist
        if blacklist and (phone.mobile in blacklist or phone.e164 in blacklist):
            raise Refusal(1015)
        if self.balance is not None and self.balance < fee:
            raise Refusal(1031, f"{self.balance} segments left, {fee} needed")

    # --- accounting ----------------------------------------------------------------------------

    def hour(self, sdkappid: str, now: float) -> HourFigures:
        key = (sdkappid, int(now) // 3600)
        figures = self.hours.get(key)
        if figures is None:
            figures = self.hours[key] = HourFigures()
        return figures

    def record_delivery(self, entry: InboxEntry) -> None:
        self.inbox.append(entry)
        self.delivered += 1
        self.billed += entry.fee
        if self.balance is not None:
            self.balance -= entry.fee
        figures = self.hour(entry.sdkappid, entry.time)
        figures.success += 1
        figures.bill_number += entry.fee
        if self.limits.frequency_limited:
            self.windows.record(Phone(entry.nationcode, entry.mobile), entry.time)

    def record_request(self, entry: LogEntry) -> None:
        self.log.append(entry)
        self.requests_by_api[entry.api] += 1
        if entry.outcomes:
            self.results.update(outcome.result for outcome in entry.outcomes)
        elif entry.result is not None:
            self.results[entry.result] += 1

    def send_figures(self, sdkappid: str, begin_hour: int, end_hour: int) -> HourFigures:
        total = HourFigures()
        for (account, hour), figures in self.hours.items():
            if account == sdkappid and begin_hour <= hour <= end_hour:
                total.request += figures.request
                total.success += figures.success
                total.bill_number += figures.bill_number
        return total

    def stats(self) -> dict[str, object]:
        return {
            "requests": sum(self.requests_by_api.values()),
            "requests_by_api": dict(self.requests_by_api),
            "results": {str(code): count for code, count in sorted(self.results.items())},
            "delivered": self.delivered,
            "billed_segments": self.billed,
            "balance": self.balance,
            "scripted_numbers": len(self.scripts),
            "log_size": len(self.log),
            "inbox_size": len(self.inbox),
            "clock": self.clock.to_json(),
        }
