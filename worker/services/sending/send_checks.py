"""The checks a message passes before its request, read from the ledger and decided by the policy.

Whether it goes alone (``worker.services.sending.single``) or in a group request
(``worker.services.sending.group``), a message is requested from the gateway only if
``policy.before_request`` lets it go, in the very transaction that commits its ``in_flight``
attempt row: its batch neither paused nor cancelled, its number not opted out of marketing, its
deadline not passed, its attempts not spent, a batch message within 08:00-22:00 Beijing time.
The same checks run once earlier, when the message is claimed, so that a message that may not
go takes no throttle slot; there they also settle what a dead worker left behind.

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
from datetime import datetime

from sqlalchemy.orm import Session

from worker.ledger import batches, moves
from worker.ledger.accounts import is_paused
from worker.ledger.optouts import opted_out
from worker.ledger.status import CANCELLED, MARKETING, QUEUED, BatchStatus
from worker.observability import metrics
from worker.services.sending import policy
from worker.services.sending.policy import Facts, SendSettings, Settle, Wait

# A message's way elsewhere than to the gateway: ended, or back to the queue.
Withheld = Settle | Wait


@dataclass(frozen=True, slots=True)
class Outbound:
    """A message about to be requested: what the checks look at besides its batch and number."""

    id: uuid.UUID
    nationcode: str
    mobile: str
    expires_at: datetime | None
    attempts_made: int = 0
    delivery_count: int = 0
    lost_attempts: bool = False
    params_differ: bool = False


def withheld_at_send(
    session: Session,
    *,
    batch_id: uuid.UUID | None,
    account: str,
    kind: str,
    outbound: Sequence[Outbound],
    settings: SendSettings,
    now: datetime,
    hold: bool = True,
    account_checked: bool = True,
) -> dict[uuid.UUID, Withheld]:
    """The messages among ``outbound`` (all of one batch, or of none) that may not go now, and
    where each goes instead (``policy.before_request``).

    Call it first in the write-ahead transaction, and commit the attempts of the others in that
    same transaction: the batch's lock is what orders a send with a pause. ``hold=False``: a
    check before that one, without the lock. ``account_checked=False``: also read whether the
    account is paused (a claim of one message already excludes a paused account). Does not commit.
    """
    if not outbound:
        return {}
    state = batches.state_for_sending(session, batch_id, hold=hold) if batch_id else None
    account_paused = not account_checked and is_paused(session, account)
    opted = (
        opted_out(session, [(m.nationcode, m.mobile) for m in outbound])
        if kind == MARKETING
        else set()
    )
    withheld: dict[uuid.UUID, Withheld] = {}
    for message in outbound:
        facts = Facts(
            kind=kind,
            in_batch=batch_id is not None,
            expires_at=message.expires_at,
            attempts_made=message.attempts_made,
            delivery_count=message.delivery_count,
            lost_attempts=message.lost_attempts,
            batch_cancelled=state == BatchStatus.CANCELLED,
            batch_paused=state == BatchStatus.PAUSED,
            account_paused=account_paused,
            opted_out=(message.nationcode, message.mobile) in opted,
            params_differ=message.params_differ,
        )
        decision = policy.before_request(facts, settings, now)
        if not isinstance(decision, policy.GoAhead):
            withheld[message.id] = decision
    return withheld


def settle_withheld(
    session: Session, withheld: Mapping[uuid.UUID, Withheld], owner: str, account: str
) -> dict[uuid.UUID, str]:
    """Move the withheld messages that ``owner`` still holds where they go; their new states.

    A cancelled one is handed back to the queue, then withdrawn (``sending`` does not move to
    ``cancelled`` directly). Locks: those rows until the caller commits. Does not commit.
    """
    by_decision: dict[Withheld, list[uuid.UUID]] = defaultdict(list)
    for message_id, decision in withheld.items():
        by_decision[decision].append(message_id)
    reached: dict[uuid.UUID, str] = {}
    for decision, ids in by_decision.items():
        if isinstance(decision, Wait):
            moved = moves.requeue_many(session, ids, owner, decision.not_before, decision.reason)
            metrics.deferred(account, decision.cause, len(moved))
            status = QUEUED
        elif decision.status == CANCELLED:
            handed_back = moves.requeue_many(session, ids, owner, None, decision.reason)
            moves.cancel_queued(session, ids=handed_back, reason=decision.reason)
            moved, status = handed_back, CANCELLED
        else:
            moved = moves.end_many(session, ids, owner, decision.status, reason=decision.reason)
            status = decision.status
        reached.update((message_id, status) for message_id in moved)
    return reached
