"""Pulling reports and replies (``pullstatus``) for accounts whose gateway pushes no callbacks.

What is pulled goes through the receiver's ingestion (``worker.services.reports``), so a report
pulled and also pushed is stored once and moves its message the same way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from worker import clock
from worker.services.reports import (
    InvalidItem,
    ingest_reply,
    ingest_reports,
    match_orphans,
    report_problem,
)
from worker.tencent.types import MAX_PULL, PullResult

log = logging.getLogger(__name__)

PULL_PAGE = MAX_PULL  # the gateway's maximum per pullstatus call
MAX_PULL_PAGES = 50  # per kind and account per run; the next run goes on where this one stopped
# Wall time one run may spend pulling, well inside the task's time limit (worker.celery).
PULL_BUDGET_SECONDS = 60.0


class Puller(Protocol):
    """What draining needs of an ``SmsClient``."""

    def pull_status(self, *, replies: bool = False, max_items: int = MAX_PULL) -> PullResult: ...


@dataclass(frozen=True, slots=True)
class PullSummary:
    reports: int = 0  # pulled
    stored: int = 0  # of those, new
    replies: int = 0  # pulled
    opted_out: int = 0  # numbers their replies opted out
    skipped: int = 0  # unstorable items (logged); the gateway will not return them again


def drain_pull(
    sessions: sessionmaker[Session],
    client: Puller,
    *,
    now: Callable[[], datetime] = clock.now,
    max_pages: int = MAX_PULL_PAGES,
    deadline: float | None = None,
) -> PullSummary:
    """Drain ``pullstatus`` (reports, then replies) of one account into the ledger.

    The gateway's queue is consume-once, so each page is stored before the next is pulled,
    and an unstorable item is logged and skipped rather than failing its page. Pulling stops
    at a page short of ``PULL_PAGE``, after ``max_pages`` pages of each kind, or once
    ``time.monotonic()`` passes ``deadline``. A ``GatewayError`` is raised once what was
    pulled before it is stored.
    """
    reports = stored = skipped = 0
    for _ in range(max_pages):
        page = client.pull_status(replies=False, max_items=PULL_PAGE).reports
        storable = []
        for report in page:
            problem = report_problem(report)
            if problem is None:
                storable.append(report)
            else:
                log.warning("pulled delivery report skipped: %s", problem)
        stored += ingest_reports(sessions, storable, source="pull", now=now()).stored
        reports, skipped = reports + len(page), skipped + len(page) - len(storable)
        if len(page) < PULL_PAGE or _past(deadline):
            break
    replies = opted_out = 0
    for _ in range(max_pages):
        answers = client.pull_status(replies=True, max_items=PULL_PAGE).replies
        for reply in answers:
            try:
                opted_out += ingest_reply(sessions, reply, source="pull", now=now()).opted_out
            except InvalidItem as problem:
                log.warning("pulled reply skipped: %s", problem)
                skipped += 1
        replies += len(answers)
        if len(answers) < PULL_PAGE or _past(deadline):
            break
    return PullSummary(reports, stored, replies, opted_out, skipped)


def pull_accounts(
    sessions: sessionmaker[Session],
    client_for: Callable[[str], Puller],
    accounts: Iterable[str],
    *,
    now: Callable[[], datetime] = clock.now,
    budget_seconds: float = PULL_BUDGET_SECONDS,
) -> dict[str, PullSummary]:
    """``drain_pull`` every account, then match orphans; one account's failure spares the rest.

    Accounts not reached within ``budget_seconds`` wait for the next run.
    """
    deadline = time.monotonic() + budget_seconds
    summaries: dict[str, PullSummary] = {}
    for account in accounts:
        if _past(deadline):
            log.warning("pull budget spent; account %s waits for the next run", account)
            continue
        try:
            summaries[account] = drain_pull(
                sessions, client_for(account), now=now, deadline=deadline
            )
        except Exception as error:
            # GatewayError and ConfigError messages never carry the appkey.
            log.warning("pulling reports of account %s failed: %s", account, error)
    match_orphans(sessions, now())
    return summaries


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline
