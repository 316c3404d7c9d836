"""The batch dispatcher: each beat tick, hand the due part of every running batch to the workers.

A tick leases the batches that are due (``scheduled`` or ``sending``, their start come, nobody
else's lease running): of two beats ticking at once, each batch goes to one. For each it then

- expires what is still queued once the batch's window has ended, and marks the batch ``done``
  when nothing of it is queued or sending any more;
- sends nothing outside 08:00-22:00 Beijing time or while the account is paused: the batch just
  waits for the next tick that may;
- takes as many messages as the account's rate allows until the next tick, minus what is still
  in flight, so the broker never holds hours of work; lost chunks (their lease ran out) first;
- groups them by identical params, domestic or not, at most 200 a group; claims each group with
  a conditional UPDATE under a lease of its own and publishes one ``sms.send_chunk`` task for it.
  A message whose params are its own goes as a single send through the ``sms.send`` task.

A cancelled batch is not dispatched, except the chunks of it a crash left claimed: their task
settles them (cancelled, or unknown when a request may have gone out).
"""

from __future__ import annotations

import itertools
import logging
import math
import secrets
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from worker.config import Settings
from worker.ledger import batches, moves
from worker.ledger.accounts import is_paused
from worker.ledger.schema import SmsBatch
from worker.ledger.status import MARKETING, QUEUED, BatchStatus
from worker.services.sending.waits import within_marketing_hours
from worker.tencent.types import DOMESTIC_NATIONCODE, MAX_GROUP_SIZE

log = logging.getLogger(__name__)

# A dispatcher that dies mid-tick holds its batches this long at most.
BATCH_LEASE_SECONDS = 60.0
WINDOW_ENDED = "the batch's window ended before it went out"
STRANDED_PER_TICK = 2000

ChunkPublisher = Callable[[Sequence[uuid.UUID], str], None]  # (message ids, lease owner)
SendPublisher = Callable[[uuid.UUID, str], None]  # (message id, kind)


@dataclass(frozen=True, slots=True)
class Dispatcher:
    """What a tick works with."""

    sessions: sessionmaker[Session]
    settings: Settings
    publish_chunk: ChunkPublisher
    publish_send: SendPublisher
    worker: str  # recorded in the leases
    every_seconds: float  # beat's interval, which the caller schedules: the work of one tick


@dataclass
class DispatchReport:
    """What one tick did."""

    batches: int = 0  # leased this tick
    chunks: int = 0  # group-send tasks published
    singles: int = 0  # single-send tasks published
    messages: int = 0  # messages handed to tasks, in all
    finished: list[uuid.UUID] = field(default_factory=list)  # batches that became done


def dispatch_due_batches(dispatcher: Dispatcher, now: datetime) -> DispatchReport:
    """One tick. A broker or database error stops that batch's share of the tick, not the
    others'; what it had claimed is sent again once its lease runs out."""
    owner = f"dispatch:{dispatcher.worker}:{secrets.token_hex(4)}"
    report = DispatchReport()
    with dispatcher.sessions() as session:
        claimed = batches.claim_due_batches(session, owner, now, BATCH_LEASE_SECONDS)
    report.batches = len(claimed)
    budgets: dict[str, int] = {}  # per account: how many more may go this tick
    for batch in claimed:
        try:
            _dispatch_batch(dispatcher, batch, now, budgets, report)
        except Exception:
            log.exception("dispatching batch %s failed; the next tick tries again", batch.id)
        finally:
            with dispatcher.sessions() as session:
                batches.release_batch(session, batch.id, owner)
                session.commit()
    _hand_over_stranded(dispatcher, now, report)
    if report.messages or report.finished:
        log.info(
            "dispatched %d message(s) of %d batch(es): %d group(s), %d single(s); %d done",
            report.messages, report.batches, report.chunks, report.singles, len(report.finished),
        )  # fmt: skip
    return report


def _dispatch_batch(
    dispatcher: Dispatcher,
    batch: SmsBatch,
    now: datetime,
    budgets: dict[str, int],
    report: DispatchReport,
) -> None:
    sessions, settings = dispatcher.sessions, dispatcher.settings
    with sessions() as session:
        if now >= batch.window_end_at:
            expired = moves.expire_queued(session, batch.id, WINDOW_ENDED)
            if expired:
                log.info("batch %s: window ended, %d message(s) expired", batch.id, expired)
        done = batches.finish_if_empty(session, batch.id, now)
        session.commit()
        if done:
            report.finished.append(batch.id)
            log.info("batch %s (%s) is done", batch.id, batch.name)
            return
        if not within_marketing_hours(now) or is_paused(session, batch.account):
            return
        budget = budgets.get(batch.account)
        if budget is None:
            rate = settings.account(batch.account).send_rate
            budget = math.ceil(rate * dispatcher.every_seconds)
            budget -= batches.in_flight(session, batch.account, now)
        if budget <= 0:
            budgets[batch.account] = 0
            return
        candidates = batches.dispatch_candidates(session, batch.id, now, budget)
        if candidates and batch.status == BatchStatus.SCHEDULED:
            batches.move_batch(
                session,
                batch.id,
                BatchStatus.SENDING,
                from_statuses=(BatchStatus.SCHEDULED,),
                now=now,
                dispatched_at=now,
            )
        session.commit()
    lease = settings.lease_seconds
    for group in _groups(candidates):
        if len(group) == 1 and batch.params is None:
            sent = _hand_over_single(sessions, dispatcher.publish_send, group[0], now, lease)
            report.singles += sent
        else:
            sent = _hand_over_chunk(sessions, dispatcher.publish_chunk, group, now, lease)
            report.chunks += bool(sent)
        report.messages += sent
        budget -= sent
    budgets[batch.account] = budget


def _hand_over_stranded(dispatcher: Dispatcher, now: datetime, report: DispatchReport) -> None:
    """A cancelled batch is not dispatched any more, but a chunk of it that a crash left claimed
    still needs a task to settle it (no request is made)."""
    with dispatcher.sessions() as session:
        stranded = batches.lost_in_cancelled_batches(session, now, STRANDED_PER_TICK)
    lease = dispatcher.settings.lease_seconds
    for group in _groups(stranded):
        report.messages += _hand_over_chunk(
            dispatcher.sessions, dispatcher.publish_chunk, group, now, lease
        )
        report.chunks += 1


def _groups(candidates: list[batches.Candidate]) -> Iterator[list[batches.Candidate]]:
    """Runs of identical params, domestic and international apart, at most 200 each."""

    def key(candidate: batches.Candidate) -> tuple[str, bool]:
        return candidate.params_key or "", candidate.nationcode == DOMESTIC_NATIONCODE

    for _, run in itertools.groupby(sorted(candidates, key=key), key=key):
        members = list(run)
        for start in range(0, len(members), MAX_GROUP_SIZE):
            yield members[start : start + MAX_GROUP_SIZE]


def _hand_over_chunk(
    sessions: sessionmaker[Session],
    publish: ChunkPublisher,
    group: list[batches.Candidate],
    now: datetime,
    lease: float,
) -> int:
    """Claim the group under a new chunk lease and publish it; how many it held."""
    owner = f"chunk:{uuid.uuid4().hex}"
    with sessions() as session:
        claimed = moves.claim_chunk(session, [c.id for c in group], owner, now, lease)
        session.commit()
    if claimed:
        publish(claimed, owner)  # if this raises, the lease runs out and a later tick resends
    return len(claimed)


def _hand_over_single(
    sessions: sessionmaker[Session],
    publish: SendPublisher,
    candidate: batches.Candidate,
    now: datetime,
    lease: float,
) -> int:
    """Publish one message to the single-send task, which claims it itself; 1 if published."""
    if candidate.status == QUEUED:
        with sessions() as session:
            marked = moves.mark_handed_over(session, [candidate.id], now, lease)
            session.commit()
        if not marked:
            return 0
    # A lost single send (sending, lease run out) is published as is: its task takes it over.
    publish(candidate.id, MARKETING)
    return 1
