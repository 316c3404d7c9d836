"""Prometheus counters and histograms of the send path and of report ingestion.

Each call here is a label lookup and an increment in memory: nothing touches the database or
the network, so recording costs the send path next to nothing. The services call these beside
the ledger writes they count (attempts once their rows are finished and committed).

Gauges of the ledger's state (queue depth, paused accounts, batch progress) are not kept here:
``worker.observability.gauges`` computes them when Prometheus scrapes. Exposition (the worker's
port, the receiver's ``/metrics``, multiprocess mode) is ``worker.observability.endpoint``.
"""

from __future__ import annotations

import os
from collections import Counter as Tally
from collections.abc import Iterable

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROCESS_FOLDER = "PROMETHEUS_MULTIPROC_DIR"  # prometheus-client's own variable
METRICS_PATH = "/metrics"

# Why a message went back to the queue to wait (the ``reason`` label of sms_deferrals_total).
NUMBER_LIMIT = "number_limit"  # the per-number policy (same content in 30 s, 10 a day)
ACCOUNT_RATE = "account_rate"  # the account's shared send rate
THROTTLED = "throttled"  # the gateway answered with a rate or quota code (or HTTP 429)
TRIES_SPENT = "tries_spent"  # the quick in-task tries ended transient: backing off
ACCOUNT_PAUSED = "account_paused"  # the gateway stopped the account (1031, 1033)
PAUSED = "paused"  # the batch or the account was paused by a person
QUIET_HOURS = "quiet_hours"  # marketing outside 08:00-22:00 Beijing time
PARAMS_DIFFER = "params_differ"  # a chunk member whose params are not its chunk's
DEFERRAL_REASONS = (
    NUMBER_LIMIT, ACCOUNT_RATE, THROTTLED, TRIES_SPENT, ACCOUNT_PAUSED, PAUSED, QUIET_HOURS,
    PARAMS_DIFFER,
)  # fmt: skip

# One number's attempt: its outcome, the segments billed (ok only), whether it is tried again.
NumberOutcome = tuple[str, int | None, bool]

# Gateway round trips: most answer in tens of milliseconds; the read timeout is 10 s.
REQUEST_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0)

SENDS = Counter(
    "sms_sends",
    "Numbers sent to: one per number per attempt, by the attempt's outcome "
    "(ok, transient, throttled, rejected, network, ambiguous).",
    ["account", "kind", "outcome"],
)
BILLED_SEGMENTS = Counter(
    "sms_billed_segments",
    "Segments the gateway billed: the fee of every ok attempt.",
    ["account", "kind"],
)
REQUEST_SECONDS = Histogram(
    "sms_request_duration_seconds",
    "Time of one HTTP request to the gateway (one per single-send attempt, one per group "
    "request), from sending to the answer or the failure.",
    ["account", "api"],
    buckets=REQUEST_BUCKETS,
)
RETRIES = Counter(
    "sms_retries",
    "Attempts whose outcome asks for another try, by that outcome "
    "(transient, network, ambiguous under a resend policy).",
    ["account", "reason"],
)
DEFERRALS = Counter(
    "sms_deferrals",
    "Messages handed back to the queue to wait, by reason.",
    ["account", "reason"],
)
REPORTS_RECEIVED = Counter(
    "sms_reports_received",
    "Delivery reports received, duplicates included, by report status (SUCCESS, FAIL) and "
    "source (callback, pull).",
    ["source", "status"],
)
REPLIES_RECEIVED = Counter(
    "sms_replies_received",
    "Replies received, by source and whether the reply opted its number out now.",
    ["source", "opt_out"],
)

# Why the receiver refused a callback (the ``reason`` label of sms_callbacks_refused_total).
WRONG_TOKEN = "wrong_token"  # noqa: S105 (a reason, not a secret): a callback path with a token that is not the receiver's
UNKNOWN_PATH = "unknown_path"  # a POST to a path that is no callback URL at all
BAD_BODY = "bad_body"  # not JSON, or not reports or a reply that can be stored
TOO_LARGE = "too_large"  # a body over the receiver's limit
INCOMPLETE_BODY = "incomplete_body"  # the body was cut short or took too long
LEDGER_UNAVAILABLE = "ledger_unavailable"  # the ledger could not store it; the gateway retries
REFUSAL_REASONS = (
    WRONG_TOKEN, UNKNOWN_PATH, BAD_BODY, TOO_LARGE, INCOMPLETE_BODY, LEDGER_UNAVAILABLE,
)  # fmt: skip
CALLBACKS_REFUSED = Counter(
    "sms_callbacks_refused",
    "Callbacks the receiver did not take, by reason (wrong_token, unknown_path, bad_body, "
    "too_large, incomplete_body, ledger_unavailable): a misconfigured callback URL shows here.",
    ["reason"],
)


def request_answered(
    account: str, kind: str, api: str, seconds: float, numbers: Iterable[NumberOutcome]
) -> None:
    """One HTTP request took ``seconds``; what it came to for each of its numbers."""
    REQUEST_SECONDS.labels(account, api).observe(seconds)
    # Added up first: a group request is 200 numbers but only a few distinct outcomes.
    answered = list(numbers)
    for outcome, count in Tally(outcome for outcome, _, _ in answered).items():
        SENDS.labels(account, kind, outcome).inc(count)
    billed = sum(fee for outcome, fee, _ in answered if fee and outcome == "ok")
    if billed:
        BILLED_SEGMENTS.labels(account, kind).inc(billed)
    for outcome, count in Tally(outcome for outcome, _, again in answered if again).items():
        RETRIES.labels(account, outcome).inc(count)


def deferred(account: str, reason: str, count: int = 1) -> None:
    """``count`` messages went back to the queue to wait, for ``reason`` (DEFERRAL_REASONS)."""
    if count:
        DEFERRALS.labels(account, reason).inc(count)


def reports_received(source: str, statuses: Iterable[str]) -> None:
    for status, count in Tally(statuses).items():
        REPORTS_RECEIVED.labels(source, status).inc(count)


def reply_received(source: str, opted_out: bool) -> None:
    REPLIES_RECEIVED.labels(source, "true" if opted_out else "false").inc()


def callback_refused(reason: str) -> None:
    """The receiver refused one callback, for ``reason`` (REFUSAL_REASONS)."""
    CALLBACKS_REFUSED.labels(reason).inc()


def process_registry() -> CollectorRegistry:
    """This process's metrics: added up from the multiprocess folder when one is set (several
    server processes), else the default registry (with process and runtime metrics)."""
    if os.environ.get(MULTIPROCESS_FOLDER):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY
