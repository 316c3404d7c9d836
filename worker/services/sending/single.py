"""Send one message: claim it, check its deadline and the throttles, then sign, send and record.

A plain function over its collaborators (``SendContext``), so it runs the same under Celery, in
a test, or from the command line. What to do before a request and after an answer is the send
policy's (``worker.services.sending.policy``); this applies its decisions to one message. It
never raises for what the gateway or the network does: it returns a ``SendVerdict`` saying where
the message stands and whether to publish it again later.

The ledger is written ahead of every HTTP call: an ``in_flight`` attempt row is committed before
the request leaves and finished once after it. A worker that dies in between leaves that row
``in_flight``; the next claim of the message turns it ``ambiguous`` before anything else is
decided, then applies the policy of its kind.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session
from tenacity import retry_if_result

from worker.ledger import attempts, moves
from worker.ledger.schema import SmsMessage
from worker.ledger.status import FAILED, QUEUED, SENDING, SENT
from worker.observability import metrics
from worker.observability.logs import bind_log_context, log_context
from worker.services.reports import match_sent
from worker.services.sending import policy
from worker.services.sending.context import (
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
from worker.services.sending.tries import quick_tries
from worker.tencent import Content, Exchange, Phone, SmsClient
from worker.tencent.codes import Outcome

log = logging.getLogger(__name__)


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
    def in_batch(self) -> bool:
        return self.batch_id is not None


@dataclass(frozen=True, slots=True)
class Step:
    """One try's result: the exchange, and the verdict if it settled the message."""

    exchange: Exchange | None  # None: the try ended before any request was made
    verdict: SendVerdict | None  # None: try again now


def send_message(message_id: uuid.UUID, ctx: SendContext) -> SendVerdict:
    """Claim one message, ask the policy, send and settle it (docs/policy.md, docs/states.md)."""
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
    """The checks before any request (``policy.before_request``), then the per-number throttle."""
    # Attempts a dead worker left in flight are settled first, so the policy decides knowing them.
    seen: Counter[int] = Counter()
    lost = bool(message.attempt_count) and settle_lost_attempts(session, message.id, seen, now)
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
    withheld = _withheld(
        session, outgoing, ctx, now, message.attempt_count, message.delivery_count, lost, hold=False
    )
    if withheld:
        return _settle(session, outgoing, owner, withheld), None
    if ctx.throttle is not None:
        wait = ctx.throttle.number_wait(
            outgoing.account, outgoing.phone.e164, outgoing.content_key, str(outgoing.id)
        )
        if wait > 0:
            cause = metrics.NUMBER_LIMIT
            return _defer(session, outgoing, owner, now, wait, policy.PER_NUMBER_LIMIT, cause), None
    return None, outgoing


def _deliver(outgoing: Outgoing, owner: str, ctx: SendContext) -> SendVerdict:
    """Tenacity tries with a fresh signature each; each try is its own attempt row."""
    client = ctx.client_for(outgoing.account)
    seen = Counter(outgoing.seen)
    tries = iter(
        range(outgoing.attempts_made + 1, outgoing.attempts_made + policy.IN_TASK_TRIES + 1)
    )

    def one_try() -> Step:
        return _one_try(outgoing, owner, ctx, client, next(tries), seen)

    retrying = quick_tries(ctx.sleep, retry_if_result(lambda step: step.verdict is None))
    step: Step = retrying(one_try)
    if step.verdict is not None:
        return step.verdict
    # The quick tries are spent: wait in the broker, backing off, up to the deadline.
    wait = policy.backoff_after_tries(outgoing.attempts_made + policy.IN_TASK_TRIES)
    with ctx.sessions() as session:
        reason = step.exchange.error if step.exchange is not None else policy.TRANSIENT
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
    slot_wait = 0.0
    if ctx.throttle is not None:
        rate = ctx.settings.account(outgoing.account).send_rate
        slot_wait = ctx.throttle.account_slot(
            outgoing.account, rate, ctx.sleep, policy.MAX_SLOT_SLEEP_SECONDS
        )
    if slot_wait:
        with ctx.sessions() as session:
            deferred = _defer(
                session, outgoing, owner, ctx.now(), slot_wait, policy.ACCOUNT_RATE,
                metrics.ACCOUNT_RATE,
            )  # fmt: skip
            session.commit()
        return Step(None, deferred)
    request = client.prepare_send(
        outgoing.phone, outgoing.content, ext=outgoing.ext, extend=outgoing.extend
    )
    with ctx.sessions() as session:
        # Pause, cancel, opt-out, quiet hours and the attempt budget, in the transaction of the
        # write-ahead itself: a pause that has returned is seen here, and one that has not waits
        # for this commit.
        withheld = _withheld(session, outgoing, ctx, ctx.now(), attempts_made=attempt_no - 1)
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
    exchange = client.execute(request)
    answer = exchange.response
    result = answer.result if answer is not None else None
    outcome = policy.effective_outcome(exchange.outcome, result, seen)
    decision = policy.after_answer(
        exchange.outcome, result, exchange.error, kind=outgoing.kind, history=seen,
        expires_at=outgoing.expires_at, in_batch=outgoing.in_batch, settings=ctx.settings,
        now=ctx.now(),
    )  # fmt: skip
    if result is not None:
        seen[result] += 1
    fee = getattr(answer, "fee", None) if outcome is Outcome.OK else None
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
            outcome=outcome,
            latency_ms=round(exchange.latency_ms),
        )
        verdict = _apply(session, outgoing, owner, exchange, decision, ctx)
        session.commit()
    seconds, answered = exchange.latency_ms / 1000, [(outcome, fee, verdict is None)]
    metrics.request_answered(outgoing.account, outgoing.kind, request.api, seconds, answered)
    _log_attempt(outgoing, attempt_no, exchange, outcome, verdict)
    return Step(exchange, verdict)


def _apply(
    session: Session,
    outgoing: Outgoing,
    owner: str,
    exchange: Exchange,
    decision: policy.After,
    ctx: SendContext,
) -> SendVerdict | None:
    """Move the message as the policy decided after the answer; None means 'try again now'."""
    if isinstance(decision, policy.TryAgain):
        return None  # transient, network, or ambiguous with a resend policy
    if isinstance(decision, policy.Sent):
        (result,) = exchange.results()
        moved = moves.transition(
            session, outgoing.id, SENT, from_statuses=(SENDING,), owner=owner,
            sid=result.sid, fee=result.fee, result=result.result, errmsg=result.errmsg,
            sent_at=exchange.finished_at, reason=None,
        )  # fmt: skip
        if moved:  # a delivery report may have overtaken this answer
            match_sent(session, outgoing.id, result.sid)
        return SendVerdict(SENT if moved else None)
    if isinstance(decision, policy.PauseAccount):
        return _pause(session, outgoing, owner, decision, ctx)
    if isinstance(decision, policy.Fail):
        return _end(
            session, outgoing.id, owner, FAILED, decision.reason, result=decision.code,
            errmsg=decision.reason,
        )  # fmt: skip
    return _wait(session, outgoing, owner, ctx.now(), decision)


def _withheld(
    session: Session,
    outgoing: Outgoing,
    ctx: SendContext,
    now: datetime,
    attempts_made: int,
    delivery_count: int = 0,
    lost: bool = False,
    *,
    hold: bool = True,
) -> dict[uuid.UUID, Withheld]:
    phone = outgoing.phone
    outbound = Outbound(
        outgoing.id, phone.nationcode, phone.mobile, outgoing.expires_at, attempts_made,
        delivery_count, lost,
    )  # fmt: skip
    return withheld_at_send(
        session, batch_id=outgoing.batch_id, account=outgoing.account, kind=outgoing.kind,
        outbound=[outbound], settings=ctx.settings, now=now, hold=hold,
    )  # fmt: skip


def _settle(
    session: Session, outgoing: Outgoing, owner: str, withheld: dict[uuid.UUID, Withheld]
) -> SendVerdict:
    """Where a message that may not go now goes instead: queued (no countdown: the dispatcher
    hands it out again after a resume or at 08:00), cancelled, suppressed or expired."""
    reached = settle_withheld(session, withheld, owner, outgoing.account)
    if outgoing.id not in reached:
        return NOT_OURS
    return SendVerdict(reached[outgoing.id], reason=withheld[outgoing.id].reason)


def _defer(
    session: Session,
    outgoing: Outgoing,
    owner: str,
    now: datetime,
    seconds: float,
    reason: str,
    cause: str,
) -> SendVerdict:
    """Wait ``seconds`` for ``reason`` (its metrics label: ``cause``), or expire at the deadline."""
    decision = policy.wait_or_expire(
        seconds, now, reason, cause, outgoing.expires_at, in_batch=outgoing.in_batch
    )
    return _wait(session, outgoing, owner, now, decision)


def _wait(
    session: Session,
    outgoing: Outgoing,
    owner: str,
    now: datetime,
    decision: policy.Wait | policy.Settle,
) -> SendVerdict:
    """Back to ``queued`` until the wait is over, published again by countdown or by the
    sweeper; or ended, when the policy says it cannot wait."""
    if isinstance(decision, policy.Settle):
        return _end(session, outgoing.id, owner, decision.status, decision.reason)
    if not moves.requeue(session, outgoing.id, owner, decision.not_before, decision.reason):
        return NOT_OURS
    metrics.deferred(outgoing.account, decision.cause)
    return SendVerdict(QUEUED, retry_in=policy.countdown(decision, now), reason=decision.reason)


def _pause(
    session: Session,
    outgoing: Outgoing,
    owner: str,
    decision: policy.PauseAccount,
    ctx: SendContext,
) -> SendVerdict:
    """The account cannot send (1031, 1033): stop it, keep the message queued, alert."""
    stop_account(session, outgoing.account, decision.code, decision.error, ctx.now())
    if moves.requeue(session, outgoing.id, owner, None, decision.reason):
        metrics.deferred(outgoing.account, metrics.ACCOUNT_PAUSED)
    return SendVerdict(QUEUED, reason=decision.reason)


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


def _log_attempt(
    outgoing: Outgoing,
    attempt_no: int,
    exchange: Exchange,
    outcome: Outcome,
    verdict: SendVerdict | None,
) -> None:
    # The log handlers' filter (worker.observability.logs) masks the number, whatever the format.
    log.info(
        "attempt %d of message %s to %s (%s): %s %s -> %s",
        attempt_no, outgoing.id, outgoing.phone.e164, outgoing.account, outcome,
        exchange.error or "OK", verdict.status if verdict else "retry",
        # message_id, account and kind come from the log context send_message binds.
        extra={"attempt_no": attempt_no, "outcome": str(outcome)},
    )  # fmt: skip
