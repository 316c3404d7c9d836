"""Send one chunk of a batch: up to 200 numbers sharing their params, in one ``sendmultisms2``.

The dispatcher (``worker.services.dispatch``) claims the chunk's messages with a lease of its own
and publishes their ids; this runs in the task. It follows the single send step by step
(``worker.services.sending.single``) and applies the same decisions
(``worker.services.sending.policy``), to many messages at once, with one request for many numbers:

- at send time the batch may have been cancelled or paused, a number may have opted out, the
  clock may have reached 22:00 Beijing time: those messages are settled before any request
  (``worker.services.sending.chunk_checks``);
- an ``in_flight`` attempt row per number, all sharing one ``request_id``, is committed BEFORE the
  request; afterwards each number's row gets its own ``sid``, ``fee`` and result from its entry
  in ``detail`` (a number missing from ``detail``, or a refusal without one, gets the top-level
  code), and each message moves as the policy decides from its own answer and history;
- numbers with a transient answer are tried again in the same task, with a fresh signature and
  their own new attempt rows, a few times; then they go back to the queue for the dispatcher.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy.orm import Session
from tenacity import retry_if_result

from worker.ledger import attempts, moves
from worker.ledger.status import FAILED, QUEUED, SENDING, SENT
from worker.observability import metrics
from worker.observability.logs import bind_log_context, log_context
from worker.services.reports import match_sent_many
from worker.services.sending import policy
from worker.services.sending.chunk_checks import Chunk, Recipient, gate
from worker.services.sending.context import SendContext, stop_account
from worker.services.sending.policy import Fail, PauseAccount, Settle, Wait
from worker.services.sending.send_checks import settle_withheld, withheld_at_send
from worker.services.sending.tries import quick_tries
from worker.tencent import Exchange, SmsClient
from worker.tencent.codes import Outcome, classify_result, code_info

log = logging.getLogger(__name__)

_RETRY = "retry"  # a number's answer asks for another try in this task


@dataclass(frozen=True, slots=True)
class NumberAnswer:
    """What one request said about one number."""

    outcome: Outcome
    result: int | None
    errmsg: str
    sid: str | None = None
    fee: int | None = None


@dataclass(frozen=True, slots=True)
class ChunkVerdict:
    """How many of the chunk's messages reached each state in this run."""

    moved: dict[str, int]


def send_chunk(
    message_ids: Sequence[uuid.UUID], lease_owner: str, ctx: SendContext
) -> ChunkVerdict:
    """Send the messages among ``message_ids`` still held by ``lease_owner``; never raises for
    what the gateway or the network does."""
    # Every line logged for this chunk says which batch and account it was about.
    with log_context():
        return _hold_and_send(message_ids, lease_owner, ctx)


def _hold_and_send(
    message_ids: Sequence[uuid.UUID], lease_owner: str, ctx: SendContext
) -> ChunkVerdict:
    tally: Counter[str] = Counter()
    now = ctx.now()
    with ctx.sessions() as session:
        held = moves.hold_chunk(session, message_ids, lease_owner, now, ctx.settings.lease_seconds)
        if held:
            batch_id = str(held[0].batch_id) if held[0].batch_id is not None else None
            bind_log_context(account=held[0].account, kind=held[0].kind, batch_id=batch_id)
        chunk = gate(session, held, lease_owner, now, ctx, tally) if held else None
        session.commit()
    if chunk is not None and chunk.recipients:
        _deliver(chunk, lease_owner, ctx, tally)
    return ChunkVerdict({status: count for status, count in tally.items() if count})


def _deliver(chunk: Chunk, owner: str, ctx: SendContext, tally: Counter[str]) -> None:
    """Tenacity tries of the numbers still asking for one; then the rest waits in the queue."""
    client = ctx.client_for(chunk.account)
    pending = chunk.recipients
    last_error = ""

    def one_try() -> list[Recipient]:
        nonlocal pending, last_error
        pending, last_error = _one_try(chunk, pending, owner, ctx, client, tally)
        return pending

    quick_tries(ctx.sleep, retry_if_result(bool))(one_try)
    if not pending:
        return
    # The quick tries are spent: back to the queue, backing off; the dispatcher sends them again.
    now = ctx.now()
    queued_before = tally[QUEUED]
    with ctx.sessions() as session:
        for recipient in pending:
            decision = policy.wait_or_expire(
                policy.backoff_after_tries(recipient.attempts_made), now, last_error,
                metrics.TRIES_SPENT, recipient.expires_at, in_batch=chunk.batch_id is not None,
            )  # fmt: skip
            status = _move(session, recipient.id, owner, decision)
            tally[status or "not ours"] += 1
        session.commit()
    metrics.deferred(chunk.account, metrics.TRIES_SPENT, tally[QUEUED] - queued_before)


def _one_try(
    chunk: Chunk,
    pending: list[Recipient],
    owner: str,
    ctx: SendContext,
    client: SmsClient,
    tally: Counter[str],
) -> tuple[list[Recipient], str]:
    """One request for ``pending``; the numbers to try again and the request's error."""
    now = ctx.now()
    with ctx.sessions() as session:
        # Pause, cancel, opt-outs, quiet hours and the attempt budget, first in the transaction
        # of the write-ahead itself: a pause that has returned is seen here, and one that has not
        # waits for this commit (worker.services.sending.send_checks).
        withheld = withheld_at_send(
            session,
            batch_id=chunk.batch_id,
            account=chunk.account,
            kind=chunk.kind,
            outbound=[recipient.outbound for recipient in pending],
            settings=ctx.settings,
            now=now,
        )
        # Renewing the lease also drops a number another dispatcher has taken over.
        ids = [recipient.id for recipient in pending]
        lease = ctx.settings.lease_seconds
        still = {m.id for m in moves.hold_chunk(session, ids, owner, now, lease)}
        held_back = {i: why for i, why in withheld.items() if i in still}
        tally.update(settle_withheld(session, held_back, owner, chunk.account).values())
        still -= held_back.keys()
        going = [r for r in pending if r.id in still]
        if not going:
            session.commit()
            return [], ""
        request = client.prepare_group([recipient.phone for recipient in going], chunk.content)
        request_id = uuid.uuid4()
        attempt_ids = attempts.begin_attempts(
            session,
            attempts=[(recipient.id, recipient.attempts_made + 1) for recipient in going],
            request_id=request_id,
            api=request.api,
            random=request.random,
            signed_time=request.time,
            worker=ctx.worker,
            started_at=now,
        )
        session.commit()
    # No connection is held while the request is in the air.
    exchange = client.execute(request)
    answers, decisions = _judge(chunk, going, number_answers(exchange, going), ctx)
    for recipient, answer in zip(going, answers, strict=True):
        recipient.attempts_made += 1
        if answer.result is not None:
            recipient.seen[answer.result] += 1
    with ctx.sessions() as session:
        attempts.finish_attempts(
            session,
            [
                (attempt_id, _attempt_answer(exchange, answer))
                for attempt_id, answer in zip(attempt_ids, answers, strict=True)
            ],
        )
        again = _record_answers(
            session, chunk, going, answers, decisions, owner, exchange, ctx.now(), tally
        )
        session.commit()
    retrying = {recipient.id for recipient in again}
    answered = [(a.outcome, a.fee, r.id in retrying) for r, a in zip(going, answers, strict=True)]
    metrics.request_answered(
        chunk.account, chunk.kind, request.api, exchange.latency_ms / 1000, answered
    )
    _log_request(chunk, going, exchange, answers, len(again), request_id)
    return again, exchange.error


def number_answers(exchange: Exchange, recipients: Sequence[Recipient]) -> list[NumberAnswer]:
    """Each recipient's own answer: its ``detail`` entry, else the request's."""
    response = exchange.response
    if response is None:  # no answer, or an unreadable one: the request's outcome for all
        return [NumberAnswer(exchange.outcome, None, exchange.error) for _ in recipients]
    detail = {(entry.nationcode, entry.mobile): entry for entry in exchange.results()}
    by_mobile = {entry.mobile: entry for entry in exchange.results() if not entry.nationcode}
    answers = []
    for recipient in recipients:
        phone = recipient.phone
        entry = detail.get((phone.nationcode, phone.mobile)) or by_mobile.get(phone.mobile)
        code = entry.result if entry is not None else response.result
        outcome = classify_result(code)
        if entry is None and code == 0:
            # Accepted as a whole, yet nothing said about this number: it may have gone out.
            why = "the answer has no detail entry for this number"
            answers.append(NumberAnswer(Outcome.AMBIGUOUS, code, why))
        elif outcome is Outcome.OK and entry is not None:
            answers.append(NumberAnswer(outcome, code, entry.errmsg, entry.sid, entry.fee))
        else:
            errmsg = (entry.errmsg if entry is not None else response.errmsg) or ""
            answers.append(NumberAnswer(outcome, code, errmsg or code_info(code).meaning))
    return answers


def _judge(
    chunk: Chunk, going: Sequence[Recipient], answers: Sequence[NumberAnswer], ctx: SendContext
) -> tuple[list[NumberAnswer], list[policy.After]]:
    """Each number's answer as it counts for its message, and what follows it (the policy),
    from the codes its earlier attempts got."""
    now = ctx.now()
    counted, decisions = [], []
    for recipient, answer in zip(going, answers, strict=True):
        outcome = policy.effective_outcome(answer.outcome, answer.result, recipient.seen)
        counted.append(replace(answer, outcome=outcome))
        decision = policy.after_answer(
            answer.outcome, answer.result, answer.errmsg, kind=chunk.kind,
            history=recipient.seen, expires_at=recipient.expires_at,
            in_batch=chunk.batch_id is not None, settings=ctx.settings, now=now,
        )  # fmt: skip
        decisions.append(decision)
    return counted, decisions


def _record_answers(
    session: Session,
    chunk: Chunk,
    going: Sequence[Recipient],
    answers: Sequence[NumberAnswer],
    decisions: Sequence[policy.After],
    owner: str,
    exchange: Exchange,
    now: datetime,
    tally: Counter[str],
) -> list[Recipient]:
    """Move each message by its own answer; the numbers to try again.

    The accepted numbers, usually all of them, move together in a few statements; the rest
    one by one.
    """
    sent = {r.id: a for r, a in zip(going, answers, strict=True) if a.outcome is Outcome.OK}
    fields = {message_id: _sent_fields(exchange, answer) for message_id, answer in sent.items()}
    moved = moves.transition_many(session, fields, SENT, from_statuses=(SENDING,), owner=owner)
    # A delivery report may have overtaken its answer.
    match_sent_many(session, {message_id: sent[message_id].sid or "" for message_id in moved})
    tally[SENT] += len(moved)
    tally["not ours"] += len(sent) - len(moved)
    again: list[Recipient] = []
    for recipient, decision in zip(going, decisions, strict=True):
        if isinstance(decision, policy.Sent):
            continue
        status = _apply(session, chunk, recipient, decision, owner, now)
        if status == _RETRY:
            again.append(recipient)
        else:
            tally[status or "not ours"] += 1
    return again


def _sent_fields(exchange: Exchange, answer: NumberAnswer) -> dict[str, object]:
    """What a message accepted by the gateway records of its answer."""
    return {
        "sid": answer.sid, "fee": answer.fee, "result": answer.result, "errmsg": answer.errmsg,
        "sent_at": exchange.finished_at, "reason": None,
    }  # fmt: skip


def _attempt_answer(exchange: Exchange, answer: NumberAnswer) -> attempts.AttemptAnswer:
    return attempts.AttemptAnswer(
        finished_at=exchange.finished_at,
        http_status=exchange.http_status,
        result=answer.result,
        errmsg=answer.errmsg or None,
        sid=answer.sid,
        fee=answer.fee,
        outcome=answer.outcome,
        latency_ms=round(exchange.latency_ms),
    )


def _apply(
    session: Session,
    chunk: Chunk,
    recipient: Recipient,
    decision: policy.After,
    owner: str,
    now: datetime,
) -> str | None:
    """Move one message as the policy decided after an answer other than ok; the state
    reached, ``_RETRY``, or None (not ours)."""
    if isinstance(decision, policy.TryAgain):
        return _RETRY  # transient, network, or ambiguous with a resend policy
    if isinstance(decision, PauseAccount):
        stop_account(session, chunk.account, decision.code, decision.error, now)
        status = _move(session, recipient.id, owner, Wait(None, decision.reason, ""))
        if status == QUEUED:
            metrics.deferred(chunk.account, metrics.ACCOUNT_PAUSED)
        return status
    if isinstance(decision, Fail):
        moved = moves.transition(
            session, recipient.id, FAILED, from_statuses=(SENDING,), owner=owner,
            result=decision.code, errmsg=decision.reason, reason=decision.reason,
        )  # fmt: skip
        return FAILED if moved else None
    if isinstance(decision, Wait | Settle):
        status = _move(session, recipient.id, owner, decision)
        if status == QUEUED and isinstance(decision, Wait):
            metrics.deferred(chunk.account, decision.cause)
        return status
    raise AssertionError(f"not an answer's decision: {decision!r}")


def _move(
    session: Session, message_id: uuid.UUID, owner: str, decision: Wait | Settle
) -> str | None:
    """Back to the queue until the wait is over, or ended as the policy settled it."""
    if isinstance(decision, Settle):
        moved = moves.transition(
            session, message_id, decision.status, from_statuses=(SENDING,), owner=owner,
            reason=decision.reason,
        )  # fmt: skip
        return decision.status if moved else None
    requeued = moves.requeue(session, message_id, owner, decision.not_before, decision.reason)
    return QUEUED if requeued else None


def _log_request(
    chunk: Chunk,
    sent_to: Sequence[Recipient],
    exchange: Exchange,
    answers: Sequence[NumberAnswer],
    retrying: int,
    request_id: uuid.UUID,
) -> None:
    outcomes = Counter(str(answer.outcome) for answer in answers)
    log.info(
        "group request of %d number(s) (%s): %s %s; per number %s; %d to try again",
        len(sent_to), chunk.account, exchange.outcome, exchange.error or "OK",
        dict(outcomes), retrying,
        extra={"account": chunk.account, "numbers": len(sent_to),
               "outcome": str(exchange.outcome), "request_id": str(request_id)},
    )  # fmt: skip
