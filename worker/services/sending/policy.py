"""The send policy of single and group sends alike: what to do before a request, after an answer.

Pure: no database, no HTTP, no Celery. The services read the facts (``Facts``, an answer's
outcome and code), ask ``before_request`` or ``after_answer``, and apply the decision to one
message (``sending.single``) or to many (``sending.group``). The budgets the policy works within,
the reasons operators read in ``sms_messages.reason`` and the deferral metric labels are named
here once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from worker.ledger.status import (
    CANCELLED,
    EXPIRED,
    FAILED,
    MARKETING,
    SUPPRESSED,
    UNKNOWN,
)
from worker.observability import metrics
from worker.tencent.codes import Outcome, code_info
from worker.tencent.codes import Wait as Window
from worker.tencent.types import BEIJING, MARKETING_CLOSES, MARKETING_OPENS

# --- budgets ---------------------------------------------------------------------------------
# In-task tries for a transient answer: a few quick ones, each re-signed and recorded as its own
# attempt, then the message waits outside the task; a task that holds a worker slot for long
# starves the other messages of its queue.
IN_TASK_TRIES = 3
IN_TASK_BUDGET_SECONDS = 10.0
# The longest wait published as a Celery countdown. A countdown task sits unacknowledged in the
# broker: it must come due well within Redis's visibility timeout and RabbitMQ's consumer_timeout
# (tests/celery/test_budgets.py checks both). A longer wait goes back to the database as
# `not_before` and the sweeper publishes it when due.
MAX_COUNTDOWN_SECONDS = 300.0
# Attempts a message may spend in all before it ends failed: each is a gateway request, and a
# message that cannot get through in ten is failing for a reason retries will not fix.
MAX_ATTEMPTS = 10
# An account slot further away than this is not slept for: the task is deferred instead, so a
# worker slot is never held idle for long.
MAX_SLOT_SLEEP_SECONDS = 1.0
# A throttled answer that names no window (HTTP 429, or a code without wait_seconds): a minute
# is longer than any short window the gateway documents.
DEFAULT_WAIT_SECONDS = 60.0

# --- reasons (sms_messages.reason), named once ------------------------------------------------
LOST_NOT_RESENT = "a worker stopped before recording the answer; not resent by policy"
BATCH_CANCELLED = "batch cancelled before it went out"
BATCH_PAUSED = "the batch is paused"
ACCOUNT_ON_HOLD = "the account is paused"
DEADLINE_PASSED = "deadline passed before sending"
WINDOW_ENDED = "the batch's window ended before it went out"
OPTED_OUT = "the number opted out of marketing"
ATTEMPTS_SPENT = f"no success after {MAX_ATTEMPTS} attempts"
PARAMS_DIFFER = "params differ from its chunk's"
QUIET_HOURS = "quiet hours (22:00-08:00 Beijing time)"
QUIET_PAST_WINDOW = "quiet hours last past the batch's window"
PER_NUMBER_LIMIT = "per-number limit"
ACCOUNT_RATE = "account rate"
_BATCH_WINDOW = "the batch's window"
TRANSIENT = "transient"  # the quick tries ended without an answer that says more


def delivered_too_often(deliveries: int) -> str:
    """The poison guard's reason: the broker handed the message out this often, never finished."""
    return f"delivered to workers {deliveries} times without finishing"


def account_paused(error: str) -> str:
    """Why a message waits after the gateway stopped its account (1031, 1033)."""
    return f"account paused: {error}"


def not_resent(error: str) -> str:
    """Why an ambiguous answer ends ``unknown`` for a kind that is not resent."""
    return f"{error}; may have been delivered, not resent by policy"


def past_deadline(reason: str, *, in_batch: bool) -> str:
    """Why a wait ends ``expired``: it would reach past the message's deadline."""
    deadline = _BATCH_WINDOW if in_batch else "deadline"
    return f"{reason}; would wait past {deadline}"


# --- decisions ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class GoAhead:
    """Nothing stands in the way: request it."""


@dataclass(frozen=True, slots=True)
class Settle:
    """End the message, now, in ``status`` (failed, expired, unknown, cancelled, suppressed)."""

    status: str
    reason: str


@dataclass(frozen=True, slots=True)
class Wait:
    """Back to ``queued`` until ``not_before`` (None: until a resume hands it out again)."""

    not_before: datetime | None
    reason: str
    cause: str  # the metrics label (one of metrics.DEFERRAL_REASONS)


@dataclass(frozen=True, slots=True)
class Sent:
    """The gateway accepted it."""


@dataclass(frozen=True, slots=True)
class Fail:
    """The gateway refused it for good: ``failed``, recording the code and its message."""

    reason: str
    code: int | None


@dataclass(frozen=True, slots=True)
class PauseAccount:
    """The account cannot send: pause it, and keep the message queued for the resume."""

    reason: str  # the message's reason ("account paused: ...")
    error: str  # the account's reason, as the gateway said it
    code: int


@dataclass(frozen=True, slots=True)
class TryAgain:
    """Worth another try now, with a fresh signature."""


Before = GoAhead | Settle | Wait
After = Sent | Fail | PauseAccount | Wait | Settle | TryAgain
GO_AHEAD, SENT, TRY_AGAIN = GoAhead(), Sent(), TryAgain()


class SendSettings(Protocol):
    """What the policy reads of the settings (``worker.config.Settings``)."""

    @property
    def max_deliveries(self) -> int: ...

    def resends_ambiguous(self, kind: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class Facts:
    """What the ledger says of one message before its request. Facts a check did not read keep
    their defaults, which never stand in the way."""

    kind: str
    in_batch: bool
    expires_at: datetime | None
    attempts_made: int = 0
    delivery_count: int = 0
    lost_attempts: bool = False  # a dead worker left an attempt in flight (now ambiguous)
    batch_cancelled: bool = False
    batch_paused: bool = False
    account_paused: bool = False
    opted_out: bool = False
    params_differ: bool = False  # a chunk member whose content is not its chunk's


def before_request(facts: Facts, settings: SendSettings, now: datetime) -> Before:
    """Whether the message may be requested now, else where it goes instead.

    One order for every path. A request a dead worker may have sent is settled first, whatever
    else holds: a message it left in flight must not be sent again when its kind is not resent,
    nor be called cancelled or failed while that attempt is left unsettled (the caller marks the
    lost attempts ``ambiguous`` before asking).
    """
    if facts.lost_attempts and not settings.resends_ambiguous(facts.kind):
        return Settle(UNKNOWN, LOST_NOT_RESENT)
    if facts.batch_cancelled:
        return Settle(CANCELLED, BATCH_CANCELLED)
    if facts.batch_paused:
        return Wait(None, BATCH_PAUSED, metrics.PAUSED)
    if facts.account_paused:
        return Wait(None, ACCOUNT_ON_HOLD, metrics.PAUSED)
    if facts.delivery_count > settings.max_deliveries:
        return Settle(FAILED, delivered_too_often(facts.delivery_count))
    if facts.expires_at is not None and facts.expires_at <= now:
        return Settle(EXPIRED, WINDOW_ENDED if facts.in_batch else DEADLINE_PASSED)
    if facts.opted_out and facts.kind == MARKETING:
        return Settle(SUPPRESSED, OPTED_OUT)
    if facts.attempts_made >= MAX_ATTEMPTS:
        return Settle(FAILED, ATTEMPTS_SPENT)
    if facts.params_differ:
        return Wait(None, PARAMS_DIFFER, metrics.PARAMS_DIFFER)
    if facts.in_batch and not within_marketing_hours(now):
        opens = now + timedelta(seconds=seconds_until_beijing_hour(now, MARKETING_OPENS))
        if facts.expires_at is not None and opens >= facts.expires_at:
            return Settle(EXPIRED, QUIET_PAST_WINDOW)
        return Wait(opens, QUIET_HOURS, metrics.QUIET_HOURS)
    return GO_AHEAD


def effective_outcome(outcome: Outcome, code: int | None, history: Mapping[int, int]) -> Outcome:
    """The outcome an answer counts as for this message, given the codes its earlier attempts got.

    A transient code with a ``transient_limit`` turns permanent once the message has seen it that
    many times (1021 once: a queue delay heals with a fresh time, a skewed clock does not).
    """
    if outcome is not Outcome.TRANSIENT or code is None:
        return outcome
    limit = code_info(code).transient_limit
    if limit is not None and history.get(code, 0) >= limit:
        return Outcome.REJECTED
    return outcome


def after_answer(
    outcome: Outcome,
    code: int | None,
    error: str,
    *,
    kind: str,
    history: Mapping[int, int],
    expires_at: datetime | None,
    in_batch: bool,
    settings: SendSettings,
    now: datetime,
) -> After:
    """What follows the answer ``outcome`` (with result ``code``, None for none, and ``error``,
    the words to store) for one message whose earlier attempts got the codes in ``history``."""
    outcome = effective_outcome(outcome, code, history)
    if outcome is Outcome.OK:
        return SENT
    if outcome is Outcome.REJECTED:
        if code is not None and code_info(code).pauses_account:
            return PauseAccount(account_paused(error), error, code)
        return Fail(error, code)
    if outcome is Outcome.THROTTLED:
        wait = throttled_wait(code, now)
        return wait_or_expire(wait, now, error, metrics.THROTTLED, expires_at, in_batch=in_batch)
    if outcome is Outcome.AMBIGUOUS and not settings.resends_ambiguous(kind):
        return Settle(UNKNOWN, not_resent(error))
    return TRY_AGAIN  # transient, network, or ambiguous with a resend policy


def wait_or_expire(
    seconds: float,
    now: datetime,
    reason: str,
    cause: str,
    expires_at: datetime | None,
    *,
    in_batch: bool,
) -> Wait | Settle:
    """Wait ``seconds`` from ``now``, or end ``expired`` when that reaches the deadline."""
    not_before = now + timedelta(seconds=seconds)
    if expires_at is not None and not_before >= expires_at:
        return Settle(EXPIRED, past_deadline(reason, in_batch=in_batch))
    return Wait(not_before, reason, cause)


def countdown(wait: Wait, now: datetime) -> float | None:
    """The Celery countdown for ``wait``; None when it is too long to sit in the broker."""
    if wait.not_before is None:
        return None
    seconds = (wait.not_before - now).total_seconds()
    return seconds if seconds <= MAX_COUNTDOWN_SECONDS else None


def backoff_after_tries(attempts_made: int) -> float:
    """Seconds to wait once the quick tries are spent: longer as attempts add up, capped."""
    return min(5.0 * 2.0 ** (attempts_made // IN_TASK_TRIES), MAX_COUNTDOWN_SECONDS)


# --- the Beijing calendar ----------------------------------------------------------------------
def throttled_wait(code: int | None, now: datetime) -> float:
    """Seconds to wait after a throttled answer with ``code`` (None: an HTTP 429)."""
    info = code_info(code) if code is not None else None
    if info is None or info.wait is None:
        return DEFAULT_WAIT_SECONDS
    if info.wait is Window.NEXT_DAY:
        return seconds_until_beijing_hour(now, 0)
    if info.wait is Window.QUIET_HOURS:
        return seconds_until_beijing_hour(now, MARKETING_OPENS)
    return float(info.wait_seconds or DEFAULT_WAIT_SECONDS)


def seconds_until_beijing_hour(now: datetime, hour: int) -> float:
    """Seconds from ``now`` (aware) to the next ``hour``:00 Beijing time."""
    local = now.astimezone(BEIJING)
    target = local.replace(hour=hour, minute=0, second=0, microsecond=0)
    if target <= local:
        target += timedelta(days=1)
    return (target - local).total_seconds()


def within_marketing_hours(now: datetime) -> bool:
    """Whether marketing may go out at ``now`` (aware): 08:00 to 22:00 Beijing time."""
    return MARKETING_OPENS <= now.astimezone(BEIJING).hour < MARKETING_CLOSES
