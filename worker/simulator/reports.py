"""Delivery reports and replies: made after a delay, pushed to a callback, and pulled.

A delivered SMS gets its report ``delay_seconds`` later (real time), SUCCESS or, at
``fail_ratio``, FAIL with an operator code. Due reports go to three places: the consume-once
queue of ``pullstatus``, the history that ``pullstatus4mobile`` searches, and, when a callback URL
is set, JSON array POSTs to it (batched, a bounded number in flight, with timeouts and a few
retries; a failing callback is logged, never fatal).
"""

from __future__ import annotations

import asyncio
import heapq
import json
import logging
import random
from collections import deque
from contextlib import suppress
from dataclasses import asdict
from itertools import count

import requests

from worker.simulator.config import ReportSettings
from worker.simulator.redact import shown_host
from worker.simulator.state import Clock, InboxEntry, beijing_text
from worker.tencent.types import (
    DELIVERED_CODE,
    PULL_REPORTS,
    REPORT_FAIL,
    REPORT_SUCCESS,
    DeliveryReport,
    Phone,
    Reply,
)

log = logging.getLogger(__name__)

DESCRIPTIONS = {
    DELIVERED_CODE: "用户短信送达成功",
    "UNDELIV": "短信未送达：号码停机、关机或不在服务区",
    "UNDELIVRD": "短信未送达：号码停机、关机或不在服务区",
    "REJECTD": "运营商拒绝下发",
    "EXPIRED": "短信过期未送达",
    "MX:0012": "用户已退订",
}
_RETRY_BACKOFF_SECONDS = 0.2


class ReportCenter:
    def __init__(self, settings: ReportSettings, clock: Clock, limit: int) -> None:
        self.configured = settings
        self.clock = clock
        self.limit = limit
        self.rng = random.Random()
        self._wake = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._pushes: set[asyncio.Task[bool]] = set()
        self._sequence = count()
        self.reset()

    def reset(self) -> None:
        for task in self._pushes:
            task.cancel()
        self._pushes = set()
        self.settings = self.configured
        self._in_flight = asyncio.Semaphore(self.settings.concurrency)
        self._pending: list[tuple[float, int, DeliveryReport, float]] = []
        self._queue: deque[DeliveryReport] = deque(maxlen=self.limit)
        self._history: deque[tuple[float, DeliveryReport]] = deque(maxlen=self.limit)
        self._reply_queue: deque[Reply] = deque(maxlen=self.limit)
        self._reply_history: deque[Reply] = deque(maxlen=self.limit)
        self.made = self.pushed = self.push_failures = 0

    def configure(self, settings: ReportSettings) -> None:
        if settings.concurrency != self.settings.concurrency:
            self._in_flight = asyncio.Semaphore(settings.concurrency)
        self.settings = settings

    # --- lifecycle (the server's lifespan) ---------------------------------------------------

    def start(self) -> None:
        self._runner = asyncio.get_running_loop().create_task(self._release_when_due())

    async def stop(self) -> None:
        tasks = [*self._pushes, *([self._runner] if self._runner else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # --- reports -------------------------------------------------------------------------------

    def schedule(self, entry: InboxEntry) -> None:
        """Make the report for a delivered SMS; it comes out ``delay_seconds`` from now."""
        settings = self.settings
        failed = settings.fail_ratio > 0 and self.rng.random() < settings.fail_ratio
        code = self.rng.choice(settings.fail_codes) if failed else DELIVERED_CODE
        received = entry.time + settings.delay_seconds
        report = DeliveryReport(
            user_receive_time=beijing_text(received),
            nationcode=entry.nationcode,
            mobile=entry.mobile,
            report_status=REPORT_FAIL if failed else REPORT_SUCCESS,
            errmsg=code,
            description=DESCRIPTIONS.get(code, "短信发送失败"),
            sid=entry.sid,
        )
        due = asyncio.get_running_loop().time() + settings.delay_seconds
        first = not self._pending or due < self._pending[0][0]
        heapq.heappush(self._pending, (due, next(self._sequence), report, received))
        self.made += 1
        if first:
            self._wake.set()

    async def flush(self) -> dict[str, int]:
        """Release every pending report now and wait for all callback pushes to finish."""
        released = sorted(self._pending)
        self._pending.clear()
        self._release(released)
        if self._pushes:
            await asyncio.gather(*self._pushes, return_exceptions=True)
        return {
            "released": len(released),
            "pushed": self.pushed,
            "push_failures": self.push_failures,
        }

    def pull(self, pull_type: int, limit: int) -> list[dict[str, object]]:
        """``pullstatus``: the oldest unread items, each returned once."""
        queue: deque[DeliveryReport] | deque[Reply] = (
            self._queue if pull_type == PULL_REPORTS else self._reply_queue
        )
        return [asdict(queue.popleft()) for _ in range(min(limit, len(queue)))]

    def pull_for(
        self, phone: Phone, begin: int, end: int, pull_type: int, limit: int
    ) -> list[dict[str, object]]:
        """``pullstatus4mobile``: one number's items in a time range (Unix seconds, inclusive)."""
        if pull_type == PULL_REPORTS:
            found: list[dict[str, object]] = [
                asdict(report)
                for at, report in self._history
                if report.mobile == phone.mobile
                and report.nationcode == phone.nationcode
                and begin <= at <= end
            ]
        else:
            found = [
                asdict(reply)
                for reply in self._reply_history
                if reply.mobile == phone.mobile
                and reply.nationcode == phone.nationcode
                and begin <= reply.time <= end
            ]
        return found[:limit]

    # --- replies -------------------------------------------------------------------------------

    async def add_reply(self, reply: Reply) -> bool:
        """A handset's reply: queued for ``pullstatus`` type 1 and pushed as one JSON object."""
        self._reply_queue.append(reply)
        self._reply_history.append(reply)
        if not self.settings.callback_url:
            return False
        return await self._push(self.settings, asdict(reply), 1)

    def stats(self) -> dict[str, object]:
        return {
            "made": self.made,
            "pending": len(self._pending),
            "unpulled": len(self._queue),
            "unpulled_replies": len(self._reply_queue),
            "pushed": self.pushed,
            "push_failures": self.push_failures,
            "settings": self.settings.to_json(),
        }

    # --- inside ----------------------------------------------------------------------------------

    async def _release_when_due(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            due = []
            while self._pending and self._pending[0][0] <= now:
                due.append(heapq.heappop(self._pending))
            self._release(due)
            timeout = self._pending[0][0] - now if self._pending else None
            self._wake.clear()
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    def _release(self, released: list[tuple[float, int, DeliveryReport, float]]) -> None:
        if not released:
            return
        for _, _, report, received in released:
            self._queue.append(report)
            self._history.append((received, report))
        settings = self.settings
        if not settings.callback_url:
            return
        loop = asyncio.get_running_loop()
        for start in range(0, len(released), settings.batch_size):
            batch = [asdict(item[2]) for item in released[start : start + settings.batch_size]]
            task = loop.create_task(self._push(settings, batch, len(batch)))
            self._pushes.add(task)
            task.add_done_callback(self._pushes.discard)

    async def _push(self, settings: ReportSettings, payload: object, items: int) -> bool:
        url = settings.callback_url
        assert url is not None
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        async with self._in_flight:
            for attempt in range(settings.retries + 1):
                if attempt:
                    await asyncio.sleep(_RETRY_BACKOFF_SECONDS * 2 ** (attempt - 1))
                problem = await asyncio.to_thread(_post, url, body, settings.timeout_seconds)
                if problem is None:
                    self.pushed += items
                    return True
                # The URL's path and user part may carry secrets: log only where it points.
                where = shown_host(url)
                log.warning("callback to %s failed (try %d): %s", where, attempt + 1, problem)
        self.push_failures += items
        return False


def _post(url: str, body: bytes, timeout: float) -> str | None:
    """POST one callback; None when the receiver took it, else what went wrong."""
    try:
        response = requests.post(
            url,
            data=body,
            timeout=timeout,
            headers={"Content-Type": "application/json; charset=utf-8"},
        )
    except requests.RequestException as exc:
        return type(exc).__name__
    if not 200 <= response.status_code < 300:
        return f"HTTP {response.status_code}"
    return None
