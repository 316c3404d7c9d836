"""Sending one message in-process, without Celery or the gateway: the checks before a request.

Real databases (PostgreSQL and SQLite); the message is claimed by a worker that then dies, and
the next claim must settle what that worker left behind before anything else.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from tests.fixtures.simulator import SIGN, TPL_NOTICE
from worker.api.producer import Producer
from worker.config import Settings
from worker.ledger import attempts, moves
from worker.ledger.schema import SmsMessage
from worker.ledger.status import FAILED
from worker.services.sending.context import SendContext
from worker.services.sending.single import send_message
from worker.tencent import SmsClient


def _no_client(account: str) -> SmsClient:
    raise AssertionError(f"no request may be made ({account})")


def test_a_poison_message_with_a_lost_attempt_has_that_attempt_marked_ambiguous(
    settings: Settings, sessions: sessionmaker[Session]
) -> None:
    producer = Producer(settings, sessions, lambda *args, **kwargs: None)
    message_id = producer.enqueue("+8613700000001", template=TPL_NOTICE, params=["1"], sign=SIGN).id
    now = datetime.now(UTC)
    # A worker claimed it, wrote its attempt ahead, sent the request and died; so did others.
    with sessions() as session:
        assert moves.claim_message(session, message_id, "dead", settings.lease_seconds, now)
        attempts.begin_attempt(
            session, message_id=message_id, attempt_no=1, owner="dead", request_id=message_id,
            api="sendsms", random=1, signed_time=int(now.timestamp()), worker="dead",
            started_at=now,
        )  # fmt: skip
        session.execute(
            update(SmsMessage)
            .where(SmsMessage.id == message_id)
            .values(delivery_count=settings.max_deliveries)
        )
        session.commit()

    later = now + timedelta(seconds=settings.lease_seconds + 1)
    context = SendContext(sessions, settings, _no_client, None, "test", now=lambda: later)
    verdict = send_message(message_id, context)

    assert verdict.status == FAILED
    assert verdict.reason == (
        f"delivered to workers {settings.max_deliveries + 1} times without finishing"
    )
    with sessions() as session:
        assert [a.outcome for a in attempts.attempts_for(session, message_id)] == ["ambiguous"]
