"""One message end to end: producer -> Redis -> worker process -> simulator over HTTP -> ledger.

Each test checks the ledger against what the simulator itself recorded (its request log and
the handsets' inbox), never against the worker's own account of events.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.fixtures.pipeline import Pipeline
from tests.fixtures.simulator import (
    CODE_PARAMS,
    LONG_PARAMS,
    SIGN,
    TPL_CODE,
    TPL_LONG,
    TPL_NOTICE,
    TPL_PENDING,
)
from worker.ledger.status import EXPIRED, FAILED, QUEUED, SENT, VERIFICATION
from worker.simulator.control import RequestRecord
from worker.tencent import Phone

# A verification code by the documented template.
CODE: dict[str, Any] = {
    "template": TPL_CODE, "params": CODE_PARAMS, "sign": SIGN, "kind": VERIFICATION
}  # fmt: skip


def requests_for(pipeline: Pipeline, phone: Phone) -> list[RequestRecord]:
    return [r for r in pipeline.simulator.control.requests() if phone.e164 in r.numbers]


@pytest.mark.parametrize("pipeline", ["postgresql", "sqlite"], indirect=True)
def test_a_message_is_sent_and_the_ledger_matches_the_gateway(pipeline: Pipeline) -> None:
    phone = pipeline.new_phone()
    enqueued = pipeline.producer.enqueue(
        phone.e164, template=TPL_LONG, params=LONG_PARAMS, sign=SIGN
    )
    assert (enqueued.created, enqueued.status) == (True, QUEUED)

    message = pipeline.wait_settled([enqueued.id])[enqueued.id]

    (received,) = pipeline.simulator.control.inbox(phone.mobile)
    (request,) = requests_for(pipeline, phone)
    (attempt,) = pipeline.attempts(enqueued.id)
    assert received.text == (
        "【腾讯云】尊敬的张先生，您的订单20240501001已于5月1日发货，承运商为顺丰速运，"
        "运单号为SF1234567890。预计两到三个工作日内送达，请保持手机畅通。"
        "如有疑问请联系在线客服，感谢您的支持。"
    )
    assert (request.http_status, request.result, request.sig_valid) == (200, 0, True)
    assert (attempt.random, attempt.signed_time) == (int(request.random), request.time)
    assert (attempt.outcome, attempt.http_status, attempt.result) == ("ok", 200, 0)
    assert (attempt.sid, attempt.fee) == (received.sid, received.fee) == (request.sids[0], 2)
    assert (message.status, message.sid, message.fee, message.result) == (
        SENT,
        received.sid,
        2,
        0,
    )
    assert message.attempt_count == 1 and message.sent_at is not None


def test_transient_answers_are_retried_each_with_a_fresh_signature(pipeline: Pipeline) -> None:
    phone = pipeline.new_phone()
    pipeline.simulator.control.script(phone.mobile, [1008, {"http": 502}, 60008])
    enqueued = pipeline.producer.enqueue(phone.e164, **CODE)

    # Three quick tries, then the message waits in the broker before the fourth.
    message = pipeline.wait_settled([enqueued.id], timeout=120)[enqueued.id]

    attempts = pipeline.attempts(enqueued.id)
    requests = requests_for(pipeline, phone)
    assert [(a.attempt_no, a.http_status, a.result, a.outcome) for a in attempts] == [
        (1, 200, 1008, "transient"),
        (2, 502, None, "transient"),
        (3, 200, 60008, "transient"),
        (4, 200, 0, "ok"),
    ]
    assert [(r.http_status, r.result) for r in requests] == [
        (200, 1008),
        (502, None),
        (200, 60008),
        (200, 0),
    ]
    # Each try was signed anew: its own random (the signed time may repeat within a second, so
    # the random is what proves a fresh signature), and the gateway found every signature valid.
    assert [a.random for a in attempts] == [int(r.random) for r in requests]
    assert len({a.random for a in attempts}) == 4
    assert [a.signed_time for a in attempts] == [r.time for r in requests]
    assert all(r.sig_valid for r in requests)
    assert sorted(a.signed_time for a in attempts) == [a.signed_time for a in attempts]
    # The fourth waited in the broker after the three quick tries, so its time is later too.
    assert attempts[3].signed_time > attempts[0].signed_time
    (received,) = pipeline.simulator.control.inbox(phone.mobile)
    assert (message.status, message.sid, message.attempt_count) == (SENT, received.sid, 4)


@pytest.mark.parametrize(
    ("code", "template", "script"),
    [(1016, TPL_NOTICE, [1016]), (1014, TPL_PENDING, [])],
    ids=["1016-scripted", "1014-unapproved-template"],
)
def test_a_permanent_code_fails_the_message_after_one_attempt(
    pipeline: Pipeline, code: int, template: int, script: list[object]
) -> None:
    phone = pipeline.new_phone()
    if script:
        pipeline.simulator.control.script(phone.mobile, script)  # type: ignore[arg-type]
    params = ["验证码", "1234", "4"] if template == TPL_NOTICE else ["1"]
    enqueued = pipeline.producer.enqueue(phone.e164, template=template, params=params, sign=SIGN)

    message = pipeline.wait_settled([enqueued.id])[enqueued.id]
    # A sweep finds nothing to publish: a failed message is never tried again.
    assert pipeline.sweep() == 0

    (attempt,) = pipeline.attempts(enqueued.id)
    (request,) = requests_for(pipeline, phone)
    assert (message.status, message.result) == (FAILED, code)
    assert (attempt.result, attempt.outcome, request.result) == (code, "rejected", code)
    assert pipeline.simulator.control.inbox(phone.mobile) == []


@pytest.mark.slow  # the gateway's 1023 window is 30 s, and the message waits it out
def test_a_throttled_message_waits_for_the_window_then_goes_out(pipeline: Pipeline) -> None:
    phone = pipeline.new_phone()
    pipeline.simulator.control.script(phone.mobile, [1023])
    enqueued = pipeline.producer.enqueue(
        phone.e164, template=TPL_LONG, params=LONG_PARAMS, sign=SIGN
    )

    # The answer and the hand-back are one transaction: once the attempt is finished, the
    # message is back in the queue with the time it may go out again.
    pipeline.wait_until(
        lambda: [a.outcome for a in pipeline.attempts(enqueued.id)] == ["throttled"],
        timeout=20,
        what="throttled attempt",
    )
    waiting = pipeline.message(enqueued.id)
    (throttled,) = pipeline.attempts(enqueued.id)
    assert (waiting.status, throttled.result) == (QUEUED, 1023)
    assert waiting.not_before is not None and throttled.finished_at is not None
    assert waiting.not_before >= throttled.finished_at + timedelta(seconds=30)

    message = pipeline.wait_settled([enqueued.id], timeout=60)[enqueued.id]

    _, second = pipeline.attempts(enqueued.id)
    assert second.started_at >= waiting.not_before
    assert [r.result for r in requests_for(pipeline, phone)] == [1023, 0]
    (received,) = pipeline.simulator.control.inbox(phone.mobile)
    assert (message.status, message.sid, second.outcome) == (SENT, received.sid, "ok")


def test_a_verification_code_past_its_deadline_is_never_sent(pipeline: Pipeline) -> None:
    # The workers are down while the code waits in the queue, and come back after its deadline.
    pipeline.worker.stop()
    phone = pipeline.new_phone()
    expires_at = datetime.now(UTC) + timedelta(seconds=1)
    enqueued = pipeline.producer.enqueue(phone.e164, **CODE, expires_at=expires_at)
    for _ in range(50):
        if datetime.now(UTC) > expires_at:
            break
        time.sleep(0.05)
    pipeline.worker.start()

    message = pipeline.wait_settled([enqueued.id])[enqueued.id]

    assert message.status == EXPIRED
    assert pipeline.attempts(enqueued.id) == []
    assert requests_for(pipeline, phone) == []
    assert pipeline.simulator.control.inbox(phone.mobile) == []


def test_the_same_idempotency_key_twice_sends_one_sms(pipeline: Pipeline) -> None:
    phone = pipeline.new_phone()
    first = pipeline.producer.enqueue(phone.e164, **CODE, idempotency_key="login-42")
    again = pipeline.producer.enqueue(phone.e164, **CODE, idempotency_key="login-42")
    assert (first.created, again.created, again.id) == (True, False, first.id)

    message = pipeline.wait_settled([first.id])[first.id]

    assert pipeline.count_messages() == 1
    (received,) = pipeline.simulator.control.inbox(phone.mobile)
    assert len(requests_for(pipeline, phone)) == 1
    assert (message.status, message.sid) == (SENT, received.sid)


def test_enqueue_in_a_transaction_publishes_after_commit_and_never_after_rollback(
    pipeline: Pipeline,
) -> None:
    rolled_back_phone, committed_phone = pipeline.new_phone(), pipeline.new_phone()
    with pipeline.sessions() as session:
        rolled_back = pipeline.producer.enqueue(
            rolled_back_phone.e164, template=TPL_LONG, params=LONG_PARAMS, session=session
        )
        session.rollback()
    with pipeline.sessions() as session:
        committed = pipeline.producer.enqueue(
            committed_phone.e164, template=TPL_LONG, params=LONG_PARAMS, session=session
        )
        # Had the task gone out before the commit, the worker would have found no row and
        # dropped it; without a sweeper the message would then never be sent.
        time.sleep(0.5)
        session.commit()

    message = pipeline.wait_settled([committed.id])[committed.id]

    assert message.status == SENT
    assert pipeline.count_messages() == 1
    # The rolled-back task was never published: the worker, which logs every task it
    # receives, saw the later one and never this one; the gateway never heard of it.
    log = pipeline.worker.log_text()
    assert f"sms.send[{committed.id}] received" in log
    assert str(rolled_back.id) not in log
    assert requests_for(pipeline, rolled_back_phone) == []
    assert pipeline.simulator.control.inbox(rolled_back_phone.mobile) == []
