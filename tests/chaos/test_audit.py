"""The chaos audit on made-up ledgers and gateway logs: it sees each kind of trouble it counts.

No servers: rows built in memory, so a case of the suite can only pass when the audit could
have told otherwise.
"""

from __future__ import annotations

import itertools
import uuid

from tests.chaos.audit import Audit, compute_audit, table
from worker.ledger.schema import SmsAttempt, SmsMessage
from worker.ledger.status import FAILED, QUEUED, SENT, UNKNOWN
from worker.simulator.control import InboxMessage, RequestRecord

SIGNED_AT = 1_700_000_000
_randoms = itertools.count(1_000_000_001)


def message(mobile: str, status: str = SENT) -> SmsMessage:
    return SmsMessage(id=uuid.uuid4(), nationcode="86", mobile=mobile, status=status)


def attempt(of: SmsMessage, outcome: str = "ok", random: int | None = None) -> SmsAttempt:
    answered = outcome not in ("ambiguous", "in_flight")
    return SmsAttempt(
        id=next(_randoms),
        message_id=of.id,
        random=random if random is not None else next(_randoms),
        signed_time=SIGNED_AT,
        outcome=outcome,
        http_status=200 if answered else None,
    )


def request(*attempts: SmsAttempt, of: list[SmsMessage]) -> RequestRecord:
    """The gateway's record of one request to the numbers of ``attempts`` (one random)."""
    numbers = {m.id: f"+86{m.mobile}" for m in of}
    return RequestRecord(
        api="sendmultisms2" if len(attempts) > 1 else "sendsms",
        sdkappid="1400000000",
        random=str(attempts[0].random),
        time=SIGNED_AT,
        sig_valid=True,
        numbers=tuple(numbers[a.message_id] for a in attempts),
        http_status=200,
        result=0,
        results=(),
        sids=(),
        fault=None,
        received_at="",
    )


def delivered(of: SmsMessage) -> InboxMessage:
    return InboxMessage("86", of.mobile, "text", "sid", 1, SIGNED_AT, "", "1400000000", "sendsms")


def audit_of(
    messages: list[SmsMessage],
    attempts: list[SmsAttempt],
    requests: list[RequestRecord],
    inbox: list[InboxMessage],
) -> Audit:
    return compute_audit("made up", messages, attempts, requests, inbox, 1.0)


def sent_once(mobile: str) -> tuple[SmsMessage, SmsAttempt, RequestRecord, InboxMessage]:
    sms = message(mobile)
    ok = attempt(sms)
    return sms, ok, request(ok, of=[sms]), delivered(sms)


def test_a_clean_run_counts_nothing_against_it() -> None:
    first, second = sent_once("13700000001"), sent_once("13700000002")
    group = [message("13700000003"), message("13700000004")]
    shared = next(_randoms)
    rows = [attempt(m, random=shared) for m in group]
    audit = audit_of(
        [first[0], second[0], *group],
        [first[1], second[1], *rows],
        [first[2], second[2], request(*rows, of=group)],
        [first[3], second[3], *(delivered(m) for m in group)],
    )
    assert (audit.lost, audit.duplicated, audit.ambiguous, audit.unmatched) == (0, 0, 0, 0)
    assert (audit.messages, audit.final, audit.requests) == (4, 4, 3)
    assert audit.clean, audit.explain()


def test_a_message_never_final_or_sent_yet_never_received_is_lost() -> None:
    stuck = message("13700000001", QUEUED)
    sms, ok, asked, _ = sent_once("13700000002")
    audit = audit_of([stuck, sms], [ok], [asked], [])
    assert audit.lost == 2 and not audit.clean
    assert "never final (1)" in audit.explain() and "never received (1)" in audit.explain()


def test_a_second_delivery_is_a_duplicate_unless_an_attempt_was_ambiguous() -> None:
    sms, ok, asked, got = sent_once("13700000001")
    audit = audit_of([sms], [ok], [asked], [got, got])
    assert (audit.duplicated, audit.ambiguous) == (1, 0) and not audit.clean

    lost_answer, resent = attempt(sms, "ambiguous"), attempt(sms)
    requests = [request(lost_answer, of=[sms]), request(resent, of=[sms])]
    audit = audit_of([sms], [lost_answer, resent], requests, [got, got])
    assert (audit.duplicated, audit.ambiguous, audit.ambiguous_extra) == (0, 1, 1)
    assert audit.clean, audit.explain()


def test_deliveries_the_ledger_denies_count_as_duplicates() -> None:
    refused = message("13700000001", FAILED)
    rejected = attempt(refused, "rejected")
    audit = audit_of([refused], [rejected], [request(rejected, of=[refused])], [delivered(refused)])
    assert audit.duplicated == 1

    maybe = message("13700000002", UNKNOWN)
    unanswered = attempt(maybe, "ambiguous")
    audit = audit_of([maybe], [unanswered], [request(unanswered, of=[maybe])], [delivered(maybe)])
    assert (audit.duplicated, audit.ambiguous) == (0, 1)


def test_requests_need_exactly_one_attempt_row_each() -> None:
    sms, ok, asked, got = sent_once("13700000001")
    unrecorded = request(attempt(sms), of=[sms])  # its attempt row never written
    audit = audit_of([sms], [ok], [asked, unrecorded], [got])
    assert audit.unmatched == 1 and not audit.clean

    audit = audit_of([sms], [ok], [asked, asked], [got])  # the same signed request twice
    assert audit.unmatched == 2

    audit = audit_of([sms], [ok], [], [got])  # an answer no request explains
    assert audit.unmatched == 1


def test_a_delivery_to_a_number_no_message_names_is_a_stray() -> None:
    sms, ok, asked, got = sent_once("13700000001")
    audit = audit_of([sms], [ok], [asked], [got, delivered(message("13799999999"))])
    assert audit.strays == 1 and not audit.clean


def test_the_table_has_a_row_per_case() -> None:
    sms, ok, asked, got = sent_once("13700000001")
    audit = audit_of([sms], [ok], [asked], [got])
    lines = table([audit, audit]).splitlines()
    assert len(lines) == 4 and lines[2] == "| made up | 1 | 0 | 0 | 0 | 1 | 0 | 1 s |"
    audit.notes.append("a worker started again")
    assert table([audit]).splitlines()[-1] == "- made up: a worker started again"
