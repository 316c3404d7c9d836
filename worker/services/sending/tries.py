"""The in-task tries of single and group sends, wired with tenacity (their budgets: ``policy``).

A transient answer is tried again at once, a few times, each try re-signed with a fresh ``time``
and ``random`` and recorded as its own attempt; then the message waits, backing off, outside the
task (a countdown, or ``not_before`` in the database).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tenacity import (
    RetryCallState,
    Retrying,
    retry_base,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from worker.services.sending.policy import IN_TASK_BUDGET_SECONDS, IN_TASK_TRIES


def quick_tries(sleep: Callable[[float], None], retry: retry_base) -> Retrying:
    """The in-task tries: a few quick ones, exponential backoff with jitter, a small budget.

    ``retry`` says from a try's result whether to try again; after the last try that result is
    returned as it is, not raised.
    """
    return Retrying(
        stop=stop_after_attempt(IN_TASK_TRIES) | stop_after_delay(IN_TASK_BUDGET_SECONDS),
        wait=wait_exponential_jitter(multiplier=0.2, max=2.0, jitter=0.2),
        retry=retry,
        retry_error_callback=_last_result,
        sleep=sleep,
    )


def _last_result(state: RetryCallState) -> Any:
    assert state.outcome is not None
    return state.outcome.result()
