"""The checks a chunk of a batch passes at send time, before any request goes out.

Between the dispatcher's claim and the task, the batch may have been cancelled or paused, a
number may have opted out, a message may have expired or run out of attempts, the clock may have
reached 22:00 Beijing time: those messages are settled here, in the task's first transaction,
and what is left is the chunk to send (``worker.services.sending.group``).
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from worker.ledger import batches, moves
from worker.ledger.accounts import is_paused
from worker.ledger.optouts import opted_out
from worker.ledger.schema import SmsMessage
from worker.ledger.status import (
    CANCELLED,
    EXPIRED,
    FAILED,
    QUEUED,
    SUPPRESSED,
    UNKNOWN,
    BatchStatus,
)
from worker.observability import metrics
from worker.services.sending.context import (
    MAX_ATTEMPTS,
    OPTED_OUT_REASON,
    SendContext,
    content_of,
    settle_lost_attempts,
)
from worker.services.sending.send_checks import Outbound
from worker.services.sending.waits import (
    MARKETING_OPENS,
    seconds_until_beijing_hour,
    within_marketing_hours,
)
from worker.tencent import Content, Phone

# Why a message of the chunk goes back to the queue before any request, and its metrics label.
PAUSED_WHY, PARAMS_WHY = "paused", "params differ from its chunk's"
QUIET_WHY = "quiet hours (22:00-08:00 Beijing time)"
_DEFERRAL_CAUSES = {
    PAUSED_WHY: metrics.PAUSED,
    PARAMS_WHY: metrics.PARAMS_DIFFER,
    QUIET_WHY: metrics.QUIET_HOURS,
}


@dataclass(slots=True)
class Recipient:
    """One number of the chunk and what its tries so far came to."""

    id: uuid.UUID
    phone: Phone
    expires_at: datetime | None
    attempts_made: int
    seen: Counter[int] = field(default_factory=Counter)  # result codes of its attempts

    @property
    def outbound(self) -> Outbound:
        return Outbound(self.id, self.phone.nationcode, self.phone.mobile, self.expires_at)


@dataclass(frozen=True, slots=True)
class Chunk:
    batch_id: uuid.UUID | None
    account: str
    kind: str
    content: Content
    recipients: list[Recipient]


def gate(
    session: Session,
    held: list[SmsMessage],
    owner: str,
    now: datetime,
    ctx: SendContext,
    tally: Counter[str],
) -> Chunk:
    """The checks at send time; the numbers still to send (none, when none may go now).

    A request a dead worker may have sent is settled first, whatever else holds: a message it
    left ``in_flight`` must not be sent again (marketing does not resend ambiguous attempts),
    nor be called cancelled when it may have gone out.
    """
    first = held[0]
    settings = ctx.settings
    batch = batches.get_batch(session, first.batch_id) if first.batch_id is not None else None
    cancelled = batch is not None and batch.status == BatchStatus.CANCELLED
    paused = (batch is not None and batch.status == BatchStatus.PAUSED) or is_paused(
        session, first.account
    )
    content = content_of(first)
    opted = opted_out(session, [(message.nationcode, message.mobile) for message in held])
    quiet = not within_marketing_hours(now)
    opens = now + timedelta(seconds=seconds_until_beijing_hour(now, MARKETING_OPENS))
    by_move: dict[tuple[str, str, datetime | None], list[uuid.UUID]] = defaultdict(list)
    recipients: list[Recipient] = []
    for message in held:
        seen: Counter[int] = Counter()
        lost = bool(message.attempt_count) and settle_lost_attempts(session, message.id, seen, now)
        if lost and not settings.resends_ambiguous(message.kind):
            why = "a worker stopped before recording the answer; not resent by policy"
            by_move[UNKNOWN, why, None].append(message.id)
        elif cancelled:
            by_move[CANCELLED, "batch cancelled before it went out", None].append(message.id)
        elif paused:
            by_move[QUEUED, PAUSED_WHY, None].append(message.id)
        elif message.delivery_count > settings.max_deliveries:
            why = f"delivered to workers {message.delivery_count} times without finishing"
            by_move[FAILED, why, None].append(message.id)
        elif message.expires_at is not None and message.expires_at <= now:
            by_move[EXPIRED, "the batch's window ended before it went out", None].append(message.id)
        elif (message.nationcode, message.mobile) in opted:
            by_move[SUPPRESSED, OPTED_OUT_REASON, None].append(message.id)
        elif message.attempt_count >= MAX_ATTEMPTS:
            by_move[FAILED, f"no success after {MAX_ATTEMPTS} attempts", None].append(message.id)
        elif content_of(message) != content:
            by_move[QUEUED, PARAMS_WHY, None].append(message.id)
        elif quiet:
            if message.expires_at is not None and opens >= message.expires_at:
                by_move[EXPIRED, "quiet hours last past the batch's window", None].append(
                    message.id
                )
            else:
                by_move[QUEUED, QUIET_WHY, opens].append(message.id)
        else:
            phone = Phone(message.nationcode, message.mobile)
            recipients.append(
                Recipient(message.id, phone, message.expires_at, message.attempt_count, seen)
            )
    for (status, why, not_before), moved_ids in by_move.items():
        if status == CANCELLED:  # a claimed message is handed back, then withdrawn
            handed_back = moves.requeue_many(session, moved_ids, owner, None, why)
            tally[status] += moves.cancel_queued(session, ids=handed_back, reason=why)
        elif status == QUEUED:
            requeued = len(moves.requeue_many(session, moved_ids, owner, not_before, why))
            metrics.deferred(first.account, _DEFERRAL_CAUSES.get(why, "other"), requeued)
            tally[status] += requeued
        else:
            tally[status] += len(moves.end_many(session, moved_ids, owner, status, reason=why))
    return Chunk(first.batch_id, first.account, first.kind, content, recipients)
