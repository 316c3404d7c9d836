"""A message may have to wait many times (the account's rate, throttles, transient answers)
before it goes out. Waiting is not failing: neither Celery's retry limit nor the poison guard
against lost deliveries may end it."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

from redis import Redis

from tests.fixtures.pipeline import Pipeline, settings_under
from tests.fixtures.simulator import LONG_PARAMS, SIGN, TPL_LONG
from worker.api.producer import Producer
from worker.celery.tasks import send
from worker.ledger.status import QUEUED
from worker.services.sending.context import SendContext
from worker.services.sending.single import send_message
from worker.services.sending.throttle import Throttle
from worker.tencent import SmsClient

DEFERRALS = 8  # more than SMS_MAX_DELIVERIES (5)


def test_the_send_task_retries_without_a_limit_of_its_own() -> None:
    # Celery's default (3) would drop the task at a fourth wait, leaving the message queued
    # until the sweeper notices; the ledger bounds attempts and deadlines instead.
    assert send.max_retries is None


def test_waiting_again_and_again_is_not_taken_for_a_poison_message(pipeline: Pipeline) -> None:
    rate = 0.01  # one send per 100 s: every run finds the account's slot taken and waits
    settings = settings_under({**pipeline.environment, "SMS_SEND_RATE": str(rate)})
    redis = Redis.from_url(settings.broker_url)
    throttle = Throttle(redis, prefix=f"test-{secrets.token_hex(4)}:")
    assert throttle.account_wait("default", rate) == 0  # the slot is taken
    # Written without publishing, so the running worker leaves it to this test.
    producer = Producer(settings, pipeline.sessions, lambda *args, **kwargs: None)
    phone = pipeline.new_phone()
    message_id = producer.enqueue(phone.e164, template=TPL_LONG, params=LONG_PARAMS, sign=SIGN).id
    clock = [datetime.now(UTC)]
    account = settings.account()
    client = SmsClient(account.sdkappid, account.appkey.get_secret_value(), account.gateway_url)
    context = SendContext(
        sessions=pipeline.sessions,
        settings=settings,
        client_for=lambda account: client,
        throttle=throttle,
        worker="test",
        now=lambda: clock[0],
    )
    try:
        verdicts = []
        for _ in range(DEFERRALS):
            verdict = send_message(message_id, context)
            verdicts.append((verdict.status, verdict.reason))
            clock[0] += timedelta(seconds=(verdict.retry_in or 0) + 1)
    finally:
        client.close()
        redis.close()

    assert verdicts == [(QUEUED, "account rate")] * DEFERRALS
    message = pipeline.message(message_id)
    assert (message.status, message.attempt_count, message.delivery_count) == (QUEUED, 0, 0)
    assert pipeline.simulator.control.requests() == []
