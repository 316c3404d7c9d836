"""The checks a chunk of a batch passes at send time, before any request goes out.

Between the dispatcher's claim and the task, the batch may have been cancelled or paused, a
number may have opted out, a message may have expired or run out of attempts, the clock may have
reached 22:00 Beijing time, a dead worker may have left a request in flight: those messages are
settled here, in the task's first transaction, by the one send policy
(``worker.services.sending.send_checks``), and what is left is the chunk to send
(``worker.services.sending.group``).
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session

from worker.ledger.schema import SmsMessage
from worker.services.sending.context import SendContext, content_of, settle_lost_attempts
from worker.services.sending.send_checks import Outbound, settle_withheld, withheld_at_send
from worker.tencent import Content, Phone


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
        return Outbound(
            self.id, self.phone.nationcode, self.phone.mobile, self.expires_at, self.attempts_made
        )


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

    The attempts a dead worker left ``in_flight`` are marked ``ambiguous`` first, whatever else
    holds: the policy then decides with them known (``policy.before_request``).
    """
    first = held[0]
    content = content_of(first)
    outbound: list[Outbound] = []
    seen: dict[uuid.UUID, Counter[int]] = {}
    for message in held:
        seen[message.id] = Counter()
        lost = bool(message.attempt_count) and settle_lost_attempts(
            session, message.id, seen[message.id], now
        )
        outbound.append(
            Outbound(
                message.id, message.nationcode, message.mobile, message.expires_at,
                attempts_made=message.attempt_count, delivery_count=message.delivery_count,
                lost_attempts=lost, params_differ=content_of(message) != content,
            )
        )  # fmt: skip
    withheld = withheld_at_send(
        session, batch_id=first.batch_id, account=first.account, kind=first.kind,
        outbound=outbound, settings=ctx.settings, now=now, hold=False, account_checked=False,
    )  # fmt: skip
    tally.update(settle_withheld(session, withheld, owner, first.account).values())
    phones = {message.id: Phone(message.nationcode, message.mobile) for message in held}
    recipients = [
        Recipient(m.id, phones[m.id], m.expires_at, m.attempt_count, seen[m.id])
        for m in held
        if m.id not in withheld
    ]
    return Chunk(first.batch_id, first.account, first.kind, content, recipients)
