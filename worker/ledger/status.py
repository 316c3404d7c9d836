"""The words the ledger stores: message states and their groups, kinds, attempt outcomes.

They are plain strings because finance reads them with plain SQL; the CHECK constraints of the
tables are built from these tuples, so a new state is added here and in a migration.
"""

from __future__ import annotations

from collections.abc import Mapping

from worker.tencent.codes import Outcome

# Message states (DESIGN.md 4.2).
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

MESSAGE_STATUSES = (
    QUEUED,
    SENDING,
    SENT,
    DELIVERED,
    UNDELIVERED,
    FAILED,
    EXPIRED,
    UNKNOWN,
    CANCELLED,
    SUPPRESSED,
)

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

# Kinds of message: each has its own deadline and ambiguous-outcome policy (see worker.config).
VERIFICATION = "verification"
NOTIFICATION = "notification"
MARKETING = "marketing"
KINDS = (VERIFICATION, NOTIFICATION, MARKETING)

# Attempt outcomes: the gateway's outcome classes plus the state before the answer is known.
IN_FLIGHT = "in_flight"
ATTEMPT_OUTCOMES = (IN_FLIGHT, *(outcome.value for outcome in Outcome))
