"""Every answer the gateway can give, and what we do about it.

One table, as data: a result code, an HTTP status or a transport failure maps to an
``Outcome``. The retry policy, the ledger and the simulator all read this table, so a code's
meaning is decided in exactly one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Outcome(StrEnum):
    """What one attempt amounts to. The values are the ``sms_attempts.outcome`` column."""

    OK = "ok"
    TRANSIENT = "transient"  # retry soon, with a fresh signature
    THROTTLED = "throttled"  # a rate or quota window: wait for it, do not hammer
    REJECTED = "rejected"  # permanent for this message
    NETWORK = "network"  # the request never left: a retry cannot duplicate
    AMBIGUOUS = "ambiguous"  # the request may have been delivered: a retry may duplicate


class Wait(StrEnum):
    """How long a throttled message should wait before its next try."""

    SHORT = "short"  # seconds to a minute
    HOUR = "hour"  # the per-number hourly window
    NEXT_DAY = "next_day"  # until midnight Beijing time
    QUIET_HOURS = "quiet_hours"  # until 08:00 Beijing time


@dataclass(frozen=True, slots=True)
class CodeInfo:
    code: int
    meaning: str
    outcome: Outcome
    # How often a TRANSIENT code may be retried for one message before it counts as REJECTED
    # (1021 once: a queue delay heals with a fresh time, a skewed clock does not). The client
    # answers for one request; whoever keeps a message's history applies the limit.
    transient_limit: int | None = None
    wait: Wait | None = None
    wait_seconds: int | None = None
    # The account itself cannot send: pause its queue and call a human.
    pauses_account: bool = False
    # A configuration error on our side rather than a problem with this message.
    configuration: bool = False


T, RL, P = Outcome.TRANSIENT, Outcome.THROTTLED, Outcome.REJECTED

RESULT_CODES: dict[int, CodeInfo] = {
    info.code: info
    for info in (
        CodeInfo(0, "success", Outcome.OK),
        CodeInfo(1001, "sig verification failed", P, configuration=True),
        CodeInfo(1002, "sensitive words in the content", P),
        CodeInfo(1003, "sig missing", P, configuration=True),
        CodeInfo(1004, "request body could not be parsed", P),
        CodeInfo(1006, "no permission", P, configuration=True),
        CodeInfo(1007, "other error", T, transient_limit=2),
        CodeInfo(1008, "gateway timed out sending onward", T),
        CodeInfo(1009, "caller IP not on the allow list", P, configuration=True),
        CodeInfo(1011, "no such API", P, configuration=True),
        CodeInfo(1012, "signature malformed or not approved", P),
        CodeInfo(1013, "frequency policy hit", RL, wait=Wait.SHORT, wait_seconds=60),
        CodeInfo(1014, "template not approved or content does not match it", P),
        CodeInfo(1015, "number blacklisted or unsubscribed", P),
        CodeInfo(1016, "number format invalid", P),
        CodeInfo(1017, "content too long", P),
        CodeInfo(1019, "sdkappid unknown", P, configuration=True),
        CodeInfo(1020, "sdkappid disabled", P, configuration=True),
        CodeInfo(1021, "request time more than 10 minutes off", T, transient_limit=1),
        CodeInfo(1022, "account daily quota reached", RL, wait=Wait.NEXT_DAY),
        CodeInfo(1023, "per-number limit in 30 s", RL, wait=Wait.SHORT, wait_seconds=30),
        CodeInfo(1024, "per-number limit in 1 h", RL, wait=Wait.HOUR, wait_seconds=3600),
        CodeInfo(1025, "per-number daily limit", RL, wait=Wait.NEXT_DAY),
        CodeInfo(
            1026, "same content to the same number too often", RL, wait=Wait.SHORT, wait_seconds=30
        ),
        CodeInfo(
            1029, "marketing only between 08:00 and 22:00 Beijing time", RL, wait=Wait.QUIET_HOURS
        ),
        CodeInfo(1030, "request not supported", P),
        CodeInfo(1031, "prepaid package exhausted", P, pauses_account=True),
        CodeInfo(1032, "individual accounts may not send marketing", P, configuration=True),
        CodeInfo(1033, "account suspended for arrears", P, pauses_account=True),
        CodeInfo(1034, "group mixes domestic and international numbers", P),
        CodeInfo(1036, "template variable longer than 12 characters", P),
        CodeInfo(1038, "verification code variable not 0-6 digits", P),
        CodeInfo(1045, "region not supported", P),
        CodeInfo(1046, "more than 200 numbers in a group", P),
        CodeInfo(1047, "international daily limit", RL, wait=Wait.NEXT_DAY),
        CodeInfo(1048, "template variable contains a URL", P),
        # The shared access layer in front of the SMS service answers with its own 600xx codes.
        CodeInfo(60007, "access layer call-rate limit", RL, wait=Wait.SHORT, wait_seconds=5),
        CodeInfo(60008, "processing timed out at the gateway", T),
        CodeInfo(60011, "access layer sdkappid rate limit", RL, wait=Wait.SHORT, wait_seconds=5),
        CodeInfo(60018, "access layer: too frequent", RL, wait=Wait.SHORT, wait_seconds=5),
        CodeInfo(60019, "access layer: too frequent", RL, wait=Wait.SHORT, wait_seconds=5),
    )
}

UNKNOWN_CODE = CodeInfo(-1, "result code not documented", P)


def code_info(code: int) -> CodeInfo:
    """The table row for ``code``; an undocumented code is treated as permanent, never retried."""
    return RESULT_CODES.get(code, UNKNOWN_CODE)


def classify_result(code: int) -> Outcome:
    """The outcome of a response carrying ``code``, from the answer alone.

    A code's ``transient_limit`` is for a caller that knows a message's history: the send policy
    (``worker.services.sending.policy``) turns such a code permanent once it has been seen often
    enough for one message.
    """
    return code_info(code).outcome


def classify_http_status(status: int) -> Outcome:
    """The outcome of an HTTP answer that is not a 200 with a JSON body."""
    if status == 429:
        return Outcome.THROTTLED
    if status >= 500:
        return Outcome.TRANSIENT
    if 400 <= status < 500:
        return Outcome.REJECTED
    # A 2xx/3xx without a usable body: the gateway may have acted on it.
    return Outcome.TRANSIENT
