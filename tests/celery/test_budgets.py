"""The broker's patience against the send policy's budgets: a task waiting on a countdown, then
running to its time limit, must be acknowledged before the broker hands it to a second worker.
No broker needed: these are the numbers the app is configured with."""

from __future__ import annotations

from worker.celery.application import (
    RABBITMQ_CONSUMER_TIMEOUT_SECONDS,
    TASK_TIME_LIMIT_SECONDS,
    transport_options,
)
from worker.services.sending.policy import (
    IN_TASK_BUDGET_SECONDS,
    MAX_COUNTDOWN_SECONDS,
    backoff_after_tries,
)

LONGEST_HOLD = MAX_COUNTDOWN_SECONDS + TASK_TIME_LIMIT_SECONDS


def test_redis_hands_a_task_on_only_after_its_longest_countdown_and_run() -> None:
    visibility_timeout = transport_options("redis://127.0.0.1:6379/0")["visibility_timeout"]
    assert visibility_timeout > LONGEST_HOLD


def test_rabbitmq_keeps_a_consumer_past_its_longest_countdown_and_run() -> None:
    assert RABBITMQ_CONSUMER_TIMEOUT_SECONDS > LONGEST_HOLD


def test_no_wait_of_the_policy_is_published_as_a_longer_countdown() -> None:
    assert max(backoff_after_tries(made) for made in range(100)) <= MAX_COUNTDOWN_SECONDS


def test_the_quick_tries_end_well_within_the_task_time_limit() -> None:
    assert IN_TASK_BUDGET_SECONDS < TASK_TIME_LIMIT_SECONDS / 2
