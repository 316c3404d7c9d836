"""The checks every message passes in the transaction that writes its attempt ahead.

Whether it goes alone (``worker.services.sending.single``) or in a group request
(``worker.services.sending.group``), a message is requested from the gateway only if, in the very
transaction that commits its ``in_flight`` attempt row:

- its batch is neither paused (it goes back to the queue, for ``batch resume``) nor cancelled
  (it ends ``cancelled``);
- it is not marketing to a number that opted out (it ends ``suppressed``);
- it is not a batch message outside 08:00-22:00 Beijing time (it waits, queued, for 08:00; or
  ends ``expired`` when that is past its batch's window).

The batch's state is read under a lock that pause and cancel wait for
(``ledger.batches.state_for_sending``): once ``batch pause`` has returned, every later
write-ahead reads ``paused``, and the only requests of the batch still to leave are those whose
attempt was committed before.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from worker.ledger import batches, moves
from worker.ledger.optouts import opted_out
from worker.ledger.status import CANCELLED, EXPIRED, MARKETING, QUEUED, SUPPRESSED, BatchStatus
from worker.observability import metrics
from worker.services.sending.context import OPTED_OUT_REASON
from worker.services.sending.waits import (
    MARKETING_OPENS,
    seconds_until_beijing_hour,
    within_marketing_hours,
)

BATCH_PAUSED_WHY = "the batch is paused"
BATCH_CANCELLED_WHY = "batch cancelled before it went out"
QUIET_WHY = "quiet hours (22:00-08:00 Beijing time)"
QUIET_PAST_WINDOW_WHY = "quiet hours last past the batch's window"


@dataclass(frozen=True, slots=True)
class Outbound:
    """A message about to be requested: what the checks look at."""

    id: uuid.UUID
    nationcode: str
    mobile: str
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class Withheld:
    """Why a message may not go now, and where it goes instead."""

    status: str  # QUEUED (it waits), CANCELLED, SUPPRESSED or EXPIRED
    reason: str
    not_before: datetime | None = None  # for QUEUED: None until resumed, or 08:00
    cause: str = ""  # for QUEUED: the deferral's metrics label


def withheld_at_send(
    session: Session,
    *,
    batch_id: uuid.UUID | None,
    kind: str,
    outbound: Sequence[Outbound],
    now: datetime,
    hold: bool = True,
) -> dict[uuid.UUID, Withheld]:
    """The messages among ``outbound`` (all of one batch, or of none) that may not go now.

    Call it first in the write-ahead transaction, and commit the attempts of the others in that
    same transaction: the batch's lock is what orders a send with a pause. ``hold=False``: a
    check before that one, without the lock. Does not commit.
    """
    if not outbound:
        return {}
    if batch_id is not None:
        state = batches.state_for_sending(session, batch_id, hold=hold)
        if state == BatchStatus.CANCELLED:
            return {m.id: Withheld(CANCELLED, BATCH_CANCELLED_WHY) for m in outbound}
        if state == BatchStatus.PAUSED:
            paused = Withheld(QUEUED, BATCH_PAUSED_WHY, cause=metrics.PAUSED)
            return {m.id: paused for m in outbound}
    withheld: dict[uuid.UUID, Withheld] = {}
    if kind == MARKETING:
        opted = opted_out(session, [(m.nationcode, m.mobile) for m in outbound])
        for message in outbound:
            if (message.nationcode, message.mobile) in opted:
                withheld[message.id] = Withheld(SUPPRESSED, OPTED_OUT_REASON)
    if batch_id is not None and not within_marketing_hours(now):
        opens = now + timedelta(seconds=seconds_until_beijing_hour(now, MARKETING_OPENS))
        for message in outbound:
            if message.id in withheld:
                continue
            if message.expires_at is not None and opens >= message.expires_at:
                withheld[message.id] = Withheld(EXPIRED, QUIET_PAST_WINDOW_WHY)
            else:
                withheld[message.id] = Withheld(QUEUED, QUIET_WHY, opens, metrics.QUIET_HOURS)
    return withheld


def settle_withheld(
    session: Session, withheld: Mapping[uuid.UUID, Withheld], owner: str, account: str
) -> dict[uuid.UUID, str]:
    """Move the withheld messages that ``owner`` still holds where they go; their new states.

    A cancelled one is handed back to the queue, then withdrawn (``sending`` does not move to
    ``cancelled`` directly). Locks: those rows until the caller commits. Does not commit.
    """
    by_move: dict[tuple[str, str, datetime | None, str], list[uuid.UUID]] = defaultdict(list)
    for message_id, why in withheld.items():
        by_move[why.status, why.reason, why.not_before, why.cause].append(message_id)
    reached: dict[uuid.UUID, str] = {}
    for (status, reason, not_before, cause), ids in by_move.items():
        if status == CANCELLED:
            handed_back = moves.requeue_many(session, ids, owner, None, reason)
            moves.cancel_queued(session, ids=handed_back, reason=reason)
            moved = handed_back
        elif status == QUEUED:
            moved = moves.requeue_many(session, ids, owner, not_before, reason)
            metrics.deferred(account, cause or "other", len(moved))
        else:
            moved = moves.end_many(session, ids, owner, status, reason=reason)
        reached.update((message_id, status) for message_id in moved)
    return reached
