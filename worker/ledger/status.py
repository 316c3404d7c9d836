"""The words the ledger stores: message and batch states and their groups, kinds, attempt
outcomes.

Each is a ``StrEnum`` whose values are the stored strings: finance reads them with plain SQL, and
the CHECK constraints of the tables are built from them, so a new state is added here and in a
migration. A message state is also importable by its short name (``QUEUED`` is
``MessageStatus.QUEUED``, the same object); a batch state only through ``BatchStatus``, since
batches and messages share the words ``sending`` and ``cancelled``.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from worker.tencent.codes import Outcome


class MessageStatus(StrEnum):
    """A message's state (``sms_messages.status``); the moves between them are ``NEXT``."""

    QUEUED = "queued"  # waiting for a worker (or for its not_before)
    SENDING = "sending"  # claimed: a worker holds the lease
    SENT = "sent"  # the gateway accepted it (result 0); waiting for the delivery report
    DELIVERED = "delivered"  # the report says the handset got it
    UNDELIVERED = "undelivered"  # the report says it did not
    FAILED = "failed"  # permanent code, retries spent, or a poison message
    EXPIRED = "expired"  # its deadline passed before it could go out
    UNKNOWN = "unknown"  # ambiguous outcome not resent by policy; reports may settle it
    CANCELLED = "cancelled"  # withdrawn before it went out
    SUPPRESSED = "suppressed"  # the number opted out


# The members by their short names, typed as the column's strings they compare and store as.
QUEUED: str = MessageStatus.QUEUED
SENDING: str = MessageStatus.SENDING
SENT: str = MessageStatus.SENT
DELIVERED: str = MessageStatus.DELIVERED
UNDELIVERED: str = MessageStatus.UNDELIVERED
FAILED: str = MessageStatus.FAILED
EXPIRED: str = MessageStatus.EXPIRED
UNKNOWN: str = MessageStatus.UNKNOWN
CANCELLED: str = MessageStatus.CANCELLED
SUPPRESSED: str = MessageStatus.SUPPRESSED
MESSAGE_STATUSES: tuple[str, ...] = tuple(MessageStatus)

# Not out yet: a worker may claim these (SENDING only once its lease has expired).
CLAIMABLE = frozenset({QUEUED, SENDING})
# Out of our hands: a delivery report (or pullstatus) may still move these.
AWAITING_REPORT = frozenset({SENT, UNKNOWN})
# Nothing moves these any more (but a late SUCCESS report, see NEXT[UNDELIVERED]).
FINAL = frozenset({DELIVERED, UNDELIVERED, FAILED, EXPIRED, CANCELLED, SUPPRESSED})
# The gateway accepted the request, so it billed the segments in `fee`. UNKNOWN is not here: whether
# it was billed is exactly what is unknown, and reconciliation counts it separately.
BILLABLE = frozenset({SENT, DELIVERED, UNDELIVERED})

# The state machine: the states each state may move to. `transition()` refuses anything else, so
# a typo in a caller is an error at once rather than a message stuck in a strange state.
NEXT: Mapping[str, frozenset[str]] = {
    QUEUED: frozenset({SENDING, FAILED, EXPIRED, CANCELLED, SUPPRESSED}),
    SENDING: frozenset({QUEUED, SENT, FAILED, EXPIRED, UNKNOWN, SUPPRESSED}),
    SENT: frozenset({DELIVERED, UNDELIVERED}),
    UNKNOWN: frozenset({SENT, DELIVERED, UNDELIVERED}),
    DELIVERED: frozenset(),
    # A SUCCESS report after a FAIL wins: the operator may have retried on its own, and the
    # handset has the message. Never the other way round: nothing undoes a delivery. So the
    # final state does not depend on the order reports arrive in.
    UNDELIVERED: frozenset({DELIVERED}),
    FAILED: frozenset(),
    EXPIRED: frozenset(),
    CANCELLED: frozenset(),
    SUPPRESSED: frozenset(),
}


class Kind(StrEnum):
    """A kind of message: each has its own deadline and ambiguous-outcome policy (worker.config)."""

    VERIFICATION = "verification"
    NOTIFICATION = "notification"
    MARKETING = "marketing"


VERIFICATION: str = Kind.VERIFICATION
NOTIFICATION: str = Kind.NOTIFICATION
MARKETING: str = Kind.MARKETING
KINDS: tuple[str, ...] = tuple(Kind)

# Attempt outcomes (``sms_attempts.outcome``): the gateway's outcome classes (``Outcome``, a
# StrEnum of its own in worker.tencent) plus the state before the answer is known.
IN_FLIGHT = "in_flight"
ATTEMPT_OUTCOMES = (IN_FLIGHT, *(outcome.value for outcome in Outcome))


class BatchStatus(StrEnum):
    """A batch's state (``sms_batches.status``). ``importing`` until every row is accounted for;
    the dispatcher only looks at ``scheduled`` and ``sending`` batches whose start has come;
    ``done`` once nothing is left to send."""

    IMPORTING = "importing"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    DONE = "done"


BATCH_STATUSES: tuple[str, ...] = tuple(BatchStatus)
# The dispatcher works on these (once `start_at` has come).
DISPATCHABLE: tuple[str, ...] = (BatchStatus.SCHEDULED, BatchStatus.SENDING)
# Pause, resume and cancel no longer apply.
FINISHED: frozenset[str] = frozenset({BatchStatus.CANCELLED, BatchStatus.DONE})
