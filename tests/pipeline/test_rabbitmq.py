"""RabbitMQ as the broker: the same pipeline, with real acknowledgements.

The settings that choose the throttle's Redis, a worker that refuses to start without one, a
countdown held by the worker until it is due, and a worker killed with SIGKILL mid-run: RabbitMQ
puts back every delivery the dead worker held as soon as its connection drops, and the ledger
still agrees one to one with what the simulator received.
"""

from __future__ import annotations

import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.fixtures.pipeline import CeleryWorker, Pipeline, settings_under
from tests.fixtures.rabbitmq import rabbitmqctl, wait_for_no_consumers
from tests.fixtures.simulator import LONG_PARAMS, SIGN, TPL_LONG
from tests.pipeline.interrupted_run import assert_accounted_for, enqueue_run, settled_count
from worker.api.producer import MAX_PUBLISH_DELAY_SECONDS
from worker.celery.application import (
    RABBITMQ_CONSUMER_TIMEOUT_SECONDS,
    TASK_TIME_LIMIT_SECONDS,
    transport_options,
)
from worker.celery.routing import QUEUE_TRANSACTIONAL
from worker.celery.runtime import require_shared_throttle
from worker.config import ConfigError
from worker.ledger.status import SENT
from worker.services.sending.policy import MAX_COUNTDOWN_SECONDS

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/sms"
THROTTLE_REDIS_URL = "redis://127.0.0.1:6379/7"
DEFERRED_SECONDS = 3.0


def test_with_rabbitmq_the_throttle_lives_in_the_redis_named_by_sms_redis_url() -> None:
    settings = settings_under({"SMS_BROKER_URL": AMQP_URL, "SMS_REDIS_URL": THROTTLE_REDIS_URL})
    assert settings.throttle_redis_url == THROTTLE_REDIS_URL
    require_shared_throttle(settings)  # nothing to refuse


def test_a_redis_broker_holds_the_throttle_unless_sms_redis_url_says_otherwise() -> None:
    broker = "redis://127.0.0.1:6379/3"
    assert settings_under({"SMS_BROKER_URL": broker}).throttle_redis_url == broker
    moved = settings_under({"SMS_BROKER_URL": broker, "SMS_REDIS_URL": THROTTLE_REDIS_URL})
    assert moved.throttle_redis_url == THROTTLE_REDIS_URL


def test_rabbitmq_without_a_redis_for_the_throttle_is_refused_with_the_setting_named() -> None:
    settings = settings_under({"SMS_BROKER_URL": AMQP_URL})
    assert settings.throttle_redis_url is None
    with pytest.raises(ConfigError, match="SMS_REDIS_URL: not set") as refused:
        require_shared_throttle(settings)
    assert "guest" not in str(refused.value)  # broker URLs may carry passwords


def test_the_demos_filesystem_broker_runs_its_single_worker_without_a_shared_throttle() -> None:
    settings = settings_under({"SMS_BROKER_URL": "filesystem:///tmp/sms-broker"})
    assert settings.throttle_redis_url is None
    require_shared_throttle(settings)


def test_sms_redis_url_must_be_a_redis_url() -> None:
    with pytest.raises(ConfigError, match="SMS_REDIS_URL: must be a Redis URL"):
        settings_under({"SMS_BROKER_URL": AMQP_URL, "SMS_REDIS_URL": AMQP_URL})


def test_rabbitmq_publishes_are_confirmed_and_have_no_visibility_timeout() -> None:
    options = transport_options(AMQP_URL)
    assert options["confirm_publish"] is True
    assert "visibility_timeout" not in options  # a Redis notion: RabbitMQ acks for real


def test_no_delivery_is_held_unacked_near_rabbitmqs_consumer_timeout() -> None:
    # A countdown task stays unacknowledged in the worker until it is due and has run; past the
    # server's consumer_timeout RabbitMQ would close the channel and redeliver everything on it.
    longest_hold = max(MAX_COUNTDOWN_SECONDS, MAX_PUBLISH_DELAY_SECONDS) + TASK_TIME_LIMIT_SECONDS
    assert longest_hold < RABBITMQ_CONSUMER_TIMEOUT_SECONDS / 2  # room for the prefetch wait
    # ...and the server under test keeps at least that default ('undefined': no timeout at all).
    answer = rabbitmqctl("eval", "application:get_env(rabbit, consumer_timeout).").strip()
    if answer != "undefined":
        assert answer.startswith("{ok,"), answer
        milliseconds = int(answer.removeprefix("{ok,").removesuffix("}"))
        assert milliseconds >= RABBITMQ_CONSUMER_TIMEOUT_SECONDS * 1000


def test_a_worker_on_rabbitmq_without_a_throttle_redis_refuses_to_start(
    rabbitmq_pipeline_built: Pipeline, tmp_path: Path
) -> None:
    environment = dict(rabbitmq_pipeline_built.environment)
    del environment["SMS_REDIS_URL"]
    worker = CeleryWorker(environment, tmp_path, concurrency=1)
    try:
        with pytest.raises(RuntimeError, match="did not become ready"):
            worker.start()
    finally:
        worker.stop()
    # One line naming the setting (exit code 2), no traceback: tests/config/test_bad_settings.py.
    assert "celery worker: SMS_REDIS_URL: not set" in worker.log_text()
    assert "Traceback" not in worker.log_text()


def test_a_countdown_is_held_by_the_worker_and_sent_when_due(rabbitmq_pipeline: Pipeline) -> None:
    pipeline = rabbitmq_pipeline
    not_before = datetime.now(UTC) + timedelta(seconds=DEFERRED_SECONDS)
    phones = [pipeline.new_phone().e164 for _ in range(5)]
    enqueued = pipeline.producer.enqueue_many(
        phones, template=TPL_LONG, params=LONG_PARAMS, sign=SIGN, not_before=not_before
    )
    ids = [message.id for message in enqueued]

    # No sweeper: a task delivered early would find its message not due and be dropped, so
    # only the broker's countdown can bring these to the gateway.
    messages = pipeline.wait_settled(ids, timeout=120)
    assert {message.status for message in messages.values()} == {SENT}
    attempts = [a for a in pipeline.attempts() if a.message_id in messages]
    assert len(attempts) == len(ids)
    assert all(attempt.started_at >= not_before for attempt in attempts)
    assert pipeline.republished == 0


@pytest.mark.slow
def test_a_worker_killed_mid_run_on_rabbitmq_loses_and_duplicates_nothing(
    rabbitmq_pipeline: Pipeline, rabbitmq_url: str
) -> None:
    pipeline = rabbitmq_pipeline
    ids = enqueue_run(pipeline, 200)
    pipeline.wait_until(lambda: settled_count(pipeline, ids) >= 40, what="40 sent", timeout=120)

    pipeline.worker.kill(signal.SIGKILL)
    unfinished = len(ids) - settled_count(pipeline, ids)
    assert unfinished > 0, "the run finished before the kill; nothing was interrupted"
    # Real acknowledgements: what the dead worker held (prefetched, waiting on a countdown, or
    # mid-task) went back to the queue when its connection closed, not after a timeout.
    state = wait_for_no_consumers(rabbitmq_url, QUEUE_TRANSACTIONAL)
    assert state.ready >= unfinished
    pipeline.worker.start()

    assert_accounted_for(pipeline, ids, ambiguous_allowed=True)
