"""Send one message: claim it, check its deadline and the throttles, then sign, send and record.

A plain function over its collaborators (``SendContext``), so it runs the same under Celery, in
a test, or from the command line. It never raises for what the gateway or the network does: it
returns a ``SendVerdict`` saying where the message stands and whether to publish it again later.

The ledger is written ahead of every HTTP call: an ``in_flight`` attempt row is committed before
the request leaves and finished once after it. A worker that dies in between leaves that row
``in_flight``; the next claim of the message turns it ``ambiguous`` and applies the policy of its
kind (DESIGN 4.4).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session
from tenacity import retry_if_result

from worker.ledger import attempts, moves
from worker.ledger.schema import SmsMessage
from worker.ledger.status import (
    EXPIRED,
    FAILED,
    QUEUED,
    SENDING,
    SENT,
    UNKNOWN,
)
from worker.observability import metrics
from worker.observability.logs import bind_log_context, log_context
from worker.services.reports import match_sent
from worker.services.sending.context import (
    MAX_ATTEMPTS,
    SendContext,
    content_of,
    settle_lost_attempts,
    stop_account,
)
from worker.services.sending.send_checks import (
    Outbound,
    Withheld,
    settle_withheld,
    withheld_at_send,
)
from worker.services.sending.tries import (
    IN_TASK_TRIES,
    MAX_COUNTDOWN_SECONDS,
    backoff_after_tries,
    quick_tries,
)
from worker.services.sending.waits import wait_for
from worker.tencent import Content, Exchange, Phone, SmsClient
from worker.tencent.codes import Outcome, code_info

log = logging.getLogger(__name__)

# An account slot further away than this is not slept for: the task is deferred instead.
MAX_SLOT_SLEEP_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class SendVerdict:
    """Where the message stands after this run, and when to publish it again (seconds)."""

    status: str | None  # None: not ours (someone else holds it, it is done, or it is not due)
    retry_in: float | None = None
    reason: str = ""


NOT_OURS = SendVerdict(None)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """What is needed to send a claimed message, read before the database session closes."""

    id: uuid.UUID
    batch_id: uuid.UUID | None
    account: str
    kind: str
    phone: Phone
    content: Content
    ext: str
    extend: str
    expires_at: datetime | None
    attempts_made: int
    seen: Mapping[int, int]  # result codes of earlier attempts

    @property
    def content_key(self) -> str:
        """Identifies 'the same content' for the per-number policy."""
        return hashlib.sha1(repr(self.content).encode(), usedforsecurity=False).hexdigest()

    @property
    def outbound(self) -> Outbound:
        return Outbound(self.id, self.phone.nationcode, self.phone.mobile, self.expires_at)


@dataclass(frozen=True, slots=True)
class Step:
    """One try's result: the exchange, and the verdict if it settled the message."""

    exchange: Exchange | None  # None: the try ended before any request was made
    verdict: SendVerdict | None  # None: try again now


def send_message(message_id: uuid.UUID, ctx: SendContext) -> SendVerdict:
    """Run the steps of DESIGN 4.3 for one message."""
    # Every line logged while this message is worked on says which message it was about.
    with log_context(message_id=str(message_id)):
        return _claim_and_send(message_id, ctx)


def _claim_and_send(message_id: uuid.UUID, ctx: SendContext) -> SendVerdict:
    owner = f"{ctx.worker}:{secrets.token_hex(4)}"
    now = ctx.now()
    with ctx.sessions() as session:
        message = moves.claim_message(session, message_id, owner, ctx.settings.lease_seconds, now)
        if message is None:
            return NOT_OURS
        batch_id = str(message.batch_id) if message.batch_id is not None else None
        bind_log_context(account=message.account, kind=message.kind, batch_id=batch_id)
        verdict, outgoing = _prepare(session, message, owner, now, ctx)
        session.commit()
    if verdict is not None or outgoing is None:
        return verdict or NOT_OURS
    return _deliver(outgoing, owner, ctx)


def _prepare(
    session: Session, message: SmsMessage, owner: str, now: datetime, ctx: SendContext
) -> tuple[SendVerdict | None, Outgoing | None]:
    """The checks before any request: poison guard, lost attempts, deadline, throttles."""
    settings = ctx.settings
    if message.delivery_count > settings.max_deliveries:
        reason = f"delivered to workers {message.delivery_count} times without finishing"
        return _end(session, message.id, owner, FAILED, reason), None
    seen: Counter[int] = Counter()
    if message.attempt_count:
        lost = settle_lost_attempts(session, message.id, seen, now)
        if lost and not settings.resends_ambiguous(message.kind):
            reason = "a worker stopped before recording the answer; not resent by policy"
            return _end(session, message.id, owner, UNKNOWN, reason), None
    if message.expires_at is not None and message.expires_at <= now:
        return _end(session, message.id, owner, EXPIRED, "deadline passed before sending"), None
    outgoing = Outgoing(
        id=message.id,
        batch_id=message.batch_id,
        account=message.account,
        kind=message.kind,
        phone=Phone(message.nationcode, message.mobile),
        content=content_of(message),
        ext=message.ext or "",
        extend=message.extend or "",
        expires_at=message.expires_at,
        attempts_made=message.attempt_count,
        seen=seen,
    )
    # Checked here too, so that a paused or opted-out message takes no throttle slot; the check
    # that counts is the one made with the attempt's write-ahead (_one_try).
    withheld = _withheld(session, outgoing, now, hold=False)
    if withheld:
        return _settle(session, outgoing, owner, withheld), None
    if ctx.throttle is not None:
        wait = ctx.throttle.number_wait(
            outgoing.account, outgoing.phone.e164, outgoing.content_key, str(outgoing.id)
        )
        if wait > 0:
            verdict = _defer(
                session, outgoing, owner, now, wait, "per-number limit", metrics.NUMBER_LIMIT
            )
            return verdict, None
    return None, outgoing


def _deliver(outgoing: Outgoing, owner: str, ctx: SendContext) -> SendVerdict:
    """Tenacity tries with a fresh signature each; each try is its own attempt row."""
    client = ctx.client_for(outgoing.account)
    seen = Counter(outgoing.seen)
    tries = iter(range(outgoing.attempts_made + 1, outgoing.attempts_made + IN_TASK_TRIES + 1))

    def one_try() -> Step:
        return _one_try(outgoing, owner, ctx, client, next(tries), seen)

    retrying = quick_tries(ctx.sleep, retry_if_result(lambda step: step.verdict is None))
    step: Step = retrying(one_try)
    if step.verdict is not None:
        return step.verdict
    # The quick tries are spent: wait in the broker, backing off, up to the deadline.
    wait = backoff_after_tries(outgoing.attempts_made + IN_TASK_TRIES)
    with ctx.sessions() as session:
        reason = step.exchange.error if step.exchange is not None else "transient"
        verdict = _defer(session, outgoing, owner, ctx.now(), wait, reason, metrics.TRIES_SPENT)
        session.commit()
    return verdict


def _one_try(
    outgoing: Outgoing,
    owner: str,
    ctx: SendContext,
    client: SmsClient,
    attempt_no: int,
    seen: Counter[int],
) -> Step:
    if attempt_no > MAX_ATTEMPTS:
        return _give_up(outgoing, owner, ctx, f"no success after {MAX_ATTEMPTS} attempts")
    slot_wait = _account_slot(outgoing.account, ctx)
    if slot_wait:
        with ctx.sessions() as session:
            deferred = _defer(
                session, outgoing, owner, ctx.now(), slot_wait, "account rate", metrics.ACCOUNT_RATE
            )
            session.commit()
        return Step(None, deferred)
    request = client.prepare_send(
        outgoing.phone, outgoing.content, ext=outgoing.ext, extend=outgoing.extend
    )
    with ctx.sessions() as session:
        # Pause, cancel, opt-out and quiet hours, in the transaction of the write-ahead itself:
        # a pause that has returned is seen here, and one that has not waits for this commit.
        withheld = _withheld(session, outgoing, ctx.now())
        if withheld:
            settled = _settle(session, outgoing, owner, withheld)
            session.commit()
            return Step(None, settled)
        try:
            attempt_id = attempts.begin_attempt(
                session,
                message_id=outgoing.id,
                attempt_no=attempt_no,
                request_id=uuid.uuid4(),
                api=request.api,
                random=request.random,
                signed_time=request.time,
                worker=ctx.worker,
                started_at=ctx.now(),
                owner=owner,
            )
        except moves.LeaseLost:
            log.warning("lease lost before attempt %d; another worker has the message", attempt_no)
            return Step(None, NOT_OURS)
        session.commit()
    # No connection is held while the request is in the air.
    exchange = client.execute(request, seen)
    answer = exchange.response
    result = answer.result if answer is not None else None
    if result is not None:
        seen[result] += 1
    fee = getattr(answer, "fee", None) if exchange.outcome is Outcome.OK else None
    with ctx.sessions() as session:
        attempts.finish_attempt(
            session,
            attempt_id,
            finished_at=exchange.finished_at,
            http_status=exchange.http_status,
            result=result,
            errmsg=exchange.error or (answer.errmsg if answer is not None else None),
            sid=getattr(answer, "sid", None) or None,
            fee=fee,
            outcome=exchange.outcome,
            latency_ms=round(exchange.latency_ms),
        )
        verdict = _decide(session, outgoing, owner, exchange, ctx)
        session.commit()
    seconds, answered = exchange.latency_ms / 1000, [(exchange.outcome, fee, verdict is None)]
    metrics.request_answered(outgoing.account, outgoing.kind, request.api, seconds, answered)
    _log_attempt(outgoing, attempt_no, exchange, verdict)
    return Step(exchange, verdict)


def _decide(
    session: Session, outgoing: Outgoing, owner: str, exchange: Exchange, ctx: SendContext
) -> SendVerdict | None:
    """Move the message according to the outcome; None means 'try again now'."""
    outcome = exchange.outcome
    answer = exchange.response
    if outcome is Outcome.OK and answer is not None:
        (result,) = exchange.results()
        moved = moves.transition(
            session, outgoing.id, SENT, from_statuses=(SENDING,), owner=owner,
            sid=result.sid, fee=result.fee, result=result.result, errmsg=result.errmsg,
            sent_at=exchange.finished_at, reason=None,
        )  # fmt: skip
        if moved:  # a delivery report may have overtaken this answer
            match_sent(session, outgoing.id, result.sid)
        return SendVerdict(SENT if moved else None)
    if outcome is Outcome.REJECTED:
        code = answer.result if answer is not None else None
        info = code_info(code) if code is not None else None
        if info is not None and info.pauses_account:
            return _pause(session, outgoing, owner, code or 0, exchange.error, ctx)
        return _end(
            session, outgoing.id, owner, FAILED, exchange.error, result=code, errmsg=exchange.error
        )
    if outcome is Outcome.THROTTLED:
        code = answer.result if answer is not None else None
        wait = wait_for(code_info(code) if code is not None else None, ctx.now())
        return _defer(session, outgoing, owner, ctx.now(), wait, exchange.error, metrics.THROTTLED)
    if outcome is Outcome.AMBIGUOUS and not ctx.settings.resends_ambiguous(outgoing.kind):
        reason = f"{exchange.error}; may have been delivered, not resent by policy"
        return _end(session, outgoing.id, owner, UNKNOWN, reason)
    return None  # transient, network, or ambiguous with a resend policy


def _withheld(
    session: Session, outgoing: Outgoing, now: datetime, *, hold: bool = True
) -> dict[uuid.UUID, Withheld]:
    return withheld_at_send(
        session,
        batch_id=outgoing.batch_id,
        kind=outgoing.kind,
        outbound=[outgoing.outbound],
        now=now,
        hold=hold,
    )


def _settle(
    session: Session, outgoing: Outgoing, owner: str, withheld: dict[uuid.UUID, Withheld]
) -> SendVerdict:
    """Where a message that may not go now goes instead: queued (no countdown: the dispatcher
    hands it out again after a resume or at 08:00), cancelled, suppressed or expired."""
    reached = settle_withheld(session, withheld, owner, outgoing.account)
    if outgoing.id not in reached:
        return NOT_OURS
    return SendVerdict(reached[outgoing.id], reason=withheld[outgoing.id].reason)


def _account_slot(account: str, ctx: SendContext) -> float:
    """Wait for the account's shared rate; the seconds still to wait if that is too long."""
    if ctx.throttle is None:
        return 0.0
    rate = ctx.settings.account(account).send_rate
    for _ in range(5):
        wait = ctx.throttle.account_wait(account, rate)
        if wait <= 0:
            return 0.0
        if wait > MAX_SLOT_SLEEP_SECONDS:
            return wait
        ctx.sleep(wait)
    return MAX_SLOT_SLEEP_SECONDS


def _defer(
    session: Session,
    outgoing: Outgoing,
    owner: str,
    now: datetime,
    wait: float,
    reason: str,
    cause: str,
) -> SendVerdict:
    """Back to ``queued`` until ``now + wait``; published again by countdown or by the sweeper.

    ``cause``: the reason as a metrics label (one of ``metrics.DEFERRAL_REASONS``)."""
    not_before = now + timedelta(seconds=wait)
    if outgoing.expires_at is not None and not_before >= outgoing.expires_at:
        return _end(session, outgoing.id, owner, EXPIRED, f"{reason}; would wait past deadline")
    if not moves.requeue(session, outgoing.id, owner, not_before, reason):
        return NOT_OURS
    metrics.deferred(outgoing.account, cause)
    countdown = wait if wait <= MAX_COUNTDOWN_SECONDS else None
    return SendVerdict(QUEUED, retry_in=countdown, reason=reason)


def _pause(
    session: Session, outgoing: Outgoing, owner: str, code: int, reason: str, ctx: SendContext
) -> SendVerdict:
    """The account cannot send (1031, 1033): stop it, keep the message queued, alert."""
    stop_account(session, outgoing.account, code, reason, ctx.now())
    if moves.requeue(session, outgoing.id, owner, None, f"account paused: {reason}"):
        metrics.deferred(outgoing.account, metrics.ACCOUNT_PAUSED)
    return SendVerdict(QUEUED, reason=f"account paused: {reason}")


def _end(
    session: Session,
    message_id: uuid.UUID,
    owner: str,
    status: str,
    reason: str,
    **fields: object,
) -> SendVerdict:
    moved = moves.transition(
        session, message_id, status, from_statuses=(SENDING,), owner=owner, reason=reason, **fields
    )
    return SendVerdict(status if moved else None, reason=reason)


def _give_up(outgoing: Outgoing, owner: str, ctx: SendContext, reason: str) -> Step:
    with ctx.sessions() as session:
        verdict = _end(session, outgoing.id, owner, FAILED, reason)
        session.commit()
    return Step(None, verdict)


def _log_attempt(
    outgoing: Outgoing, attempt_no: int, exchange: Exchange, verdict: SendVerdict | None
) -> None:
    # The log handlers' filter (worker.observability.logs) masks the number, whatever the format.
    log.info(
        "attempt %d of message %s to %s (%s): %s %s -> %s",
        attempt_no, outgoing.id, outgoing.phone.e164, outgoing.account, exchange.outcome,
        exchange.error or "OK", verdict.status if verdict else "retry",
        # message_id, account and kind come from the log context send_message binds.
        extra={"attempt_no": attempt_no, "outcome": str(exchange.outcome)},
    )  # fmt: skip
