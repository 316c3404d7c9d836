"""The audit that ends every chaos case: the ledger against what the gateway actually saw.

From the ledger (every message and attempt of the case: it starts empty) and the simulator (its
request log and inbox, reset with it):

- ``lost``: accepted by a producer but never final (still queued or sending at the end), or
  called sent by the ledger while the handset never got it;
- ``duplicated``: deliveries beyond what the ledger accounts for (one per sent message, at most
  one per ``unknown`` one), to a number none of whose attempts was ambiguous: a duplicate the
  ledger cannot explain;
- ``ambiguous``: messages with an attempt whose answer never came (``ambiguous``, or still
  ``in_flight``); their extra deliveries are the price of the resend policy, counted apart;
- ``unmatched``: gateway requests (one per number of a group send) without exactly one attempt
  row, matched on what the ledger stores of the signed request (``random``, ``signed_time``) and
  the number; plus attempts recording an HTTP answer that no request in the log explains.
  Zero means nothing went out without its attempt row written first.
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from worker.ledger.schema import SmsAttempt, SmsMessage
from worker.ledger.status import BILLABLE, CLAIMABLE, IN_FLIGHT, UNKNOWN
from worker.simulator.control import InboxMessage, RequestRecord, SimulatorControl
from worker.tencent.codes import Outcome

SEND_APIS = frozenset({"sendsms", "sendisms", "sendmultisms2"})
UNANSWERED = frozenset({Outcome.AMBIGUOUS.value, IN_FLIGHT})
EXAMPLES = 5  # problems quoted per kind in a failure message

# (random, signed time, number in E.164): one request to one number.
RequestKey = tuple[int, int | None, str]


@dataclass
class Audit:
    case: str
    messages: int
    final: int
    lost: int
    duplicated: int
    ambiguous: int
    requests: int
    unmatched: int
    seconds: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)
    ambiguous_extra: int = 0  # deliveries beyond the ledger's, explained by an ambiguous attempt
    strays: int = 0  # deliveries to numbers no message names
    problems: list[str] = field(default_factory=list)  # a few examples of each kind
    notes: list[str] = field(default_factory=list)  # what else the case saw, for the summary

    @property
    def clean(self) -> bool:
        return not (self.lost or self.duplicated or self.unmatched or self.strays)

    def line(self) -> str:
        statuses = ", ".join(f"{state} {count}" for state, count in sorted(self.statuses.items()))
        return (
            f"{self.case}: {self.messages} messages ({statuses}); lost {self.lost}, duplicated "
            f"{self.duplicated}, ambiguous {self.ambiguous} (+{self.ambiguous_extra} deliveries), "
            f"requests {self.requests}, unmatched {self.unmatched}, strays {self.strays}; "
            f"{self.seconds:.0f} s"
        )

    def explain(self) -> str:
        return "\n".join([self.line(), *self.problems])


def e164(nationcode: str, mobile: str) -> str:
    return f"+{nationcode}{mobile}"


def audit_case(
    case: str, sessions: sessionmaker[Session], control: SimulatorControl, seconds: float
) -> Audit:
    """The audit of everything the ledger and the simulator hold now."""
    with sessions() as session:
        messages = list(session.scalars(select(SmsMessage)))
        attempts = list(session.scalars(select(SmsAttempt)))
    requests = [r for r in control.requests() if r.api in SEND_APIS]
    return compute_audit(case, messages, attempts, requests, control.inbox(), seconds)


def compute_audit(
    case: str,
    messages: Sequence[SmsMessage],
    attempts: Sequence[SmsAttempt],
    requests: Sequence[RequestRecord],
    inbox: Iterable[InboxMessage],
    seconds: float,
) -> Audit:
    number_of = {m.id: e164(m.nationcode, m.mobile) for m in messages}
    unanswered = {a.message_id for a in attempts if a.outcome in UNANSWERED}
    audit = Audit(
        case=case,
        messages=len(messages),
        final=sum(1 for m in messages if m.status not in CLAIMABLE),
        lost=0,
        duplicated=0,
        ambiguous=len(unanswered & number_of.keys()),
        requests=len(requests),
        unmatched=0,
        seconds=seconds,
        statuses=dict(Counter(m.status for m in messages)),
    )
    _count_deliveries(audit, messages, unanswered, inbox)
    _match_requests(audit, attempts, requests, number_of)
    return audit


def _count_deliveries(
    audit: Audit,
    messages: Sequence[SmsMessage],
    unanswered: set[uuid.UUID],
    inbox: Iterable[InboxMessage],
) -> None:
    delivered = Counter(e164(entry.nationcode, entry.mobile) for entry in inbox)
    by_number: dict[str, list[SmsMessage]] = defaultdict(list)
    for message in messages:
        by_number[e164(message.nationcode, message.mobile)].append(message)
    never_final = [m for m in messages if m.status in CLAIMABLE]
    audit.lost = len(never_final)
    _note(audit, "never final", [f"{m.id} {m.status} ({m.reason})" for m in never_final])
    unreceived: list[str] = []
    unexplained: list[str] = []
    for number, group in by_number.items():
        sent = sum(1 for m in group if m.status in BILLABLE)
        maybe = sum(1 for m in group if m.status == UNKNOWN)
        got = delivered[number]
        if got < sent:
            audit.lost += sent - got
            unreceived.append(f"{number}: ledger says {sent} sent, handset got {got}")
        extra = got - sent - maybe
        if extra > 0 and any(m.id in unanswered for m in group):
            audit.ambiguous_extra += extra
        elif extra > 0:
            audit.duplicated += extra
            states = [m.status for m in group]
            unexplained.append(f"{number}: got {got}, ledger {states}, no ambiguous attempt")
    _note(audit, "sent but never received", unreceived)
    _note(audit, "duplicated", unexplained)
    strays = [number for number in delivered if number not in by_number]
    audit.strays = sum(delivered[number] for number in strays)
    _note(audit, "delivered to a number no message names", strays)


def _match_requests(
    audit: Audit,
    attempts: Sequence[SmsAttempt],
    requests: Sequence[RequestRecord],
    number_of: dict[uuid.UUID, str],
) -> None:
    def key_of(attempt: SmsAttempt) -> RequestKey:
        return (attempt.random, attempt.signed_time, number_of.get(attempt.message_id, "?"))

    rows = Counter(key_of(attempt) for attempt in attempts)
    asked: Counter[RequestKey] = Counter()
    for request in requests:
        random = int(request.random) if request.random.isdigit() else -1
        for number in request.numbers or ("?",):
            asked[random, request.time, number] += 1
    # Each (request, number) once in the log and once in the ledger; a key asked twice would be
    # a signed request replayed.
    unmatched = [
        f"{key}: {count} request(s), {rows[key]} attempt row(s)"
        for key, count in asked.items()
        if count != 1 or rows[key] != 1
    ]
    audit.unmatched = sum(asked[k] for k in asked if asked[k] != 1 or rows[k] != 1)
    phantoms = [
        f"attempt {a.id} of {a.message_id} ({a.outcome}, HTTP {a.http_status}) has no request"
        for a in attempts
        if a.http_status is not None and key_of(a) not in asked
    ]
    audit.unmatched += len(phantoms)
    _note(audit, "requests without exactly one attempt row", unmatched)
    _note(audit, "answered attempts without a request", phantoms)


def _note(audit: Audit, kind: str, examples: Sequence[str]) -> None:
    if examples:
        shown = "; ".join(examples[:EXAMPLES])
        audit.problems.append(f"  {kind} ({len(examples)}): {shown}")


TABLE_HEADER = (
    "| case | messages | lost | duplicated | ambiguous | requests | unmatched | wall time |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|"
)


def table(audits: Iterable[Audit]) -> str:
    """The audits as a Markdown table, in the order the cases ran, their notes below it."""
    audits = list(audits)
    rows = [
        f"| {a.case} | {a.messages:,} | {a.lost} | {a.duplicated} | {a.ambiguous} | "
        f"{a.requests:,} | {a.unmatched} | {a.seconds:.0f} s |"
        for a in audits
    ]
    notes = [f"- {a.case}: {note}" for a in audits for note in a.notes]
    return "\n".join([TABLE_HEADER, *rows, *([""] if notes else []), *notes])
