"""What single sends (``sending.single``) and group sends (``sending.group``)
share besides their policy: the context a send runs in, what a message sends, the settling of
attempts a dead worker left in flight, and the pause of an account the gateway stopped.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from worker import clock
from worker.config import Settings
from worker.ledger import attempts
from worker.ledger.accounts import pause_account
from worker.ledger.schema import SmsMessage
from worker.ledger.status import IN_FLIGHT, MARKETING
from worker.services.sending.throttle import Throttle
from worker.tencent import Content, SmsClient, Template, Text
from worker.tencent.codes import Outcome

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SendContext:
    """What a send works with (``send_message``, ``send_chunk``); one per worker process."""

    sessions: sessionmaker[Session]
    settings: Settings
    client_for: Callable[[str], SmsClient]  # by account name
    throttle: Throttle | None  # None: no shared throttling (single process tools, tests)
    worker: str  # recorded on attempts and leases
    now: Callable[[], datetime] = clock.now
    sleep: Callable[[float], None] = time.sleep


def content_of(message: SmsMessage) -> Content:
    """What the message sends: its template and params, or its free text."""
    if message.tpl_id is not None:
        return Template(message.tpl_id, tuple(message.params or ()), message.sign)
    return Text(message.content or "", marketing=message.kind == MARKETING)


def settle_lost_attempts(
    session: Session, message_id: uuid.UUID, seen: Counter[int], now: datetime
) -> bool:
    """Turn attempts a dead worker left ``in_flight`` into ``ambiguous``; whether there were any.

    Also fills ``seen`` with the result codes of the message's earlier attempts.
    """
    lost = False
    for attempt in attempts.attempts_for(session, message_id):
        if attempt.result is not None:
            seen[attempt.result] += 1
        if attempt.outcome == IN_FLIGHT:
            lost = True
            attempts.finish_attempt(
                session,
                attempt.id,
                finished_at=now,
                http_status=None,
                result=None,
                errmsg="worker stopped before the answer was recorded",
                sid=None,
                fee=None,
                outcome=Outcome.AMBIGUOUS,
                latency_ms=None,
            )
    return lost


def stop_account(session: Session, account: str, code: int, reason: str, now: datetime) -> None:
    """Pause ``account`` after ``code`` and alert, once however many workers saw the code."""
    if pause_account(session, account, code=code, reason=reason, now=now):
        log.error(
            "account %s paused after result %s (%s): its messages stay queued until "
            "`sms-worker accounts resume %s`",
            account, code, reason, account,
        )  # fmt: skip
