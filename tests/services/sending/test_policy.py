"""The send policy on its own: no database, no HTTP, no servers.

``after_answer`` over every row of the result-code table (written out here again, independently
of ``RESULT_CODES``), then HTTP-level outcomes and the deadline; ``before_request`` over each
fact and the order in which they are checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest

from worker.ledger.status import (
    CANCELLED,
    EXPIRED,
    FAILED,
    MARKETING,
    NOTIFICATION,
    SUPPRESSED,
    UNKNOWN,
    VERIFICATION,
)
from worker.observability import metrics
from worker.services.sending import policy
from worker.services.sending.policy import (
    GO_AHEAD,
    MAX_ATTEMPTS,
    SENT,
    TRY_AGAIN,
    Facts,
    Fail,
    PauseAccount,
    Settle,
    Wait,
    after_answer,
    before_request,
    effective_outcome,
)
from worker.tencent.codes import RESULT_CODES, Outcome

# 10:00 Beijing time: inside the marketing window, two hours from midnight UTC.
NOW = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
SECONDS_TO_BEIJING_MIDNIGHT = 14 * 3600
SECONDS_TO_BEIJING_EIGHT = 22 * 3600


@dataclass
class Rules:
    max_deliveries: int = 5
    resent: frozenset[str] = field(default_factory=lambda: frozenset({VERIFICATION, NOTIFICATION}))

    def resends_ambiguous(self, kind: str) -> bool:
        return kind in self.resent


RULES = Rules()
SEND, PAUSE, FAIL, RETRY = "sent", "pause", "fail", "retry"
# code -> what follows a first answer with it, and for a throttle the seconds to wait.
AFTER_FIRST_ANSWER: dict[int, tuple[str, float | None]] = {
    0: (SEND, None),
    1001: (FAIL, None), 1002: (FAIL, None), 1003: (FAIL, None), 1004: (FAIL, None),
    1006: (FAIL, None), 1007: (RETRY, None), 1008: (RETRY, None), 1009: (FAIL, None),
    1011: (FAIL, None), 1012: (FAIL, None), 1013: ("wait", 60), 1014: (FAIL, None),
    1015: (FAIL, None), 1016: (FAIL, None), 1017: (FAIL, None), 1019: (FAIL, None),
    1020: (FAIL, None), 1021: (RETRY, None), 1022: ("wait", SECONDS_TO_BEIJING_MIDNIGHT),
    1023: ("wait", 30), 1024: ("wait", 3600), 1025: ("wait", SECONDS_TO_BEIJING_MIDNIGHT),
    1026: ("wait", 30), 1029: ("wait", SECONDS_TO_BEIJING_EIGHT), 1030: (FAIL, None),
    1031: (PAUSE, None), 1032: (FAIL, None), 1033: (PAUSE, None), 1034: (FAIL, None),
    1036: (FAIL, None), 1038: (FAIL, None), 1045: (FAIL, None), 1046: (FAIL, None),
    1047: ("wait", SECONDS_TO_BEIJING_MIDNIGHT), 1048: (FAIL, None),
    60007: ("wait", 5), 60008: (RETRY, None), 60011: ("wait", 5), 60018: ("wait", 5),
    60019: ("wait", 5),
}  # fmt: skip
# Transient codes that turn permanent for a message once seen this often.
TRANSIENT_LIMITS = {1007: 2, 1021: 1}


def answer(
    code: int | None,
    outcome: Outcome | None = None,
    *,
    history: dict[int, int] | None = None,
    kind: str = NOTIFICATION,
    expires_at: datetime | None = None,
    in_batch: bool = False,
) -> policy.After:
    return after_answer(
        outcome or RESULT_CODES[code or 0].outcome, code, "gateway words", kind=kind,
        history=history or {}, expires_at=expires_at, in_batch=in_batch, settings=RULES, now=NOW,
    )  # fmt: skip


def test_the_table_here_covers_every_documented_code() -> None:
    assert sorted(AFTER_FIRST_ANSWER) == sorted(RESULT_CODES)


@pytest.mark.parametrize(("code", "expected"), sorted(AFTER_FIRST_ANSWER.items()))
def test_a_first_answer_leads_to_its_decision(code: int, expected: tuple[str, float]) -> None:
    what, seconds = expected
    decision = answer(code)
    if what == SEND:
        assert decision == SENT
    elif what == PAUSE:
        assert decision == PauseAccount("account paused: gateway words", "gateway words", code)
    elif what == FAIL:
        assert decision == Fail("gateway words", code)
    elif what == RETRY:
        assert decision == TRY_AGAIN
    else:
        assert seconds is not None
        assert decision == Wait(
            NOW + timedelta(seconds=seconds), "gateway words", metrics.THROTTLED
        )


@pytest.mark.parametrize("code", sorted(RESULT_CODES))
def test_a_wait_that_reaches_the_deadline_expires_instead(code: int) -> None:
    deadline = NOW + timedelta(seconds=1)
    decision = answer(code, expires_at=deadline)
    batch = answer(code, expires_at=deadline, in_batch=True)
    if AFTER_FIRST_ANSWER[code][0] == "wait":
        assert decision == Settle(EXPIRED, "gateway words; would wait past deadline")
        assert batch == Settle(EXPIRED, "gateway words; would wait past the batch's window")
    else:
        assert decision == batch == answer(code)


@pytest.mark.parametrize("code", sorted(RESULT_CODES))
def test_a_transient_code_turns_permanent_once_seen_often_enough(code: int) -> None:
    limit = TRANSIENT_LIMITS.get(code)
    outcome = RESULT_CODES[code].outcome
    many = {code: 50}
    if limit is None:
        assert effective_outcome(outcome, code, many) is outcome
        assert answer(code, history=many) == answer(code)
        return
    assert effective_outcome(outcome, code, {code: limit - 1}) is Outcome.TRANSIENT
    assert answer(code, history={code: limit - 1}) == TRY_AGAIN
    assert effective_outcome(outcome, code, {code: limit}) is Outcome.REJECTED
    assert answer(code, history={code: limit}) == Fail("gateway words", code)
    assert answer(code, history={1008: 9}) == TRY_AGAIN  # other codes do not count


def test_1021_is_transient_once_then_rejected() -> None:
    assert effective_outcome(Outcome.TRANSIENT, 1021, {1021: 0}) is Outcome.TRANSIENT
    assert effective_outcome(Outcome.TRANSIENT, 1021, {1021: 1}) is Outcome.REJECTED
    assert effective_outcome(Outcome.TRANSIENT, 1021, {1021: 5}) is Outcome.REJECTED


def test_an_undocumented_code_fails_the_message() -> None:
    assert answer(1099, Outcome.REJECTED) == Fail("gateway words", 1099)


@pytest.mark.parametrize(
    ("outcome", "kind", "expected"),
    [
        (Outcome.NETWORK, MARKETING, TRY_AGAIN),
        (Outcome.TRANSIENT, MARKETING, TRY_AGAIN),
        (Outcome.REJECTED, NOTIFICATION, Fail("gateway words", None)),
        (Outcome.AMBIGUOUS, NOTIFICATION, TRY_AGAIN),
        (Outcome.AMBIGUOUS, VERIFICATION, TRY_AGAIN),
        (
            Outcome.AMBIGUOUS,
            MARKETING,
            Settle(UNKNOWN, "gateway words; may have been delivered, not resent by policy"),
        ),
        (
            Outcome.THROTTLED,
            NOTIFICATION,
            Wait(NOW + timedelta(seconds=60), "gateway words", metrics.THROTTLED),
        ),
    ],
)
def test_an_answer_without_a_result_code(outcome: Outcome, kind: str, expected: object) -> None:
    assert answer(None, outcome, kind=kind) == expected


# --- before the request ----------------------------------------------------------------------
PLAIN = Facts(kind=MARKETING, in_batch=True, expires_at=NOW + timedelta(days=1))
LOST = "a worker stopped before recording the answer; not resent by policy"
POISON = "delivered to workers 6 times without finishing"
SPENT = "no success after 10 attempts"
QUIET_NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # 23:00 Beijing time
OPENS = datetime(2026, 3, 3, 0, 0, tzinfo=UTC)  # 08:00 Beijing time

# Each fact alone, and where it sends the message.
ALONE: list[tuple[str, dict[str, object], object]] = [
    ("lost attempt, not resent", {"lost_attempts": True}, Settle(UNKNOWN, LOST)),
    ("batch cancelled", {"batch_cancelled": True}, Settle(CANCELLED, policy.BATCH_CANCELLED)),
    ("batch paused", {"batch_paused": True}, Wait(None, policy.BATCH_PAUSED, metrics.PAUSED)),
    ("account paused", {"account_paused": True}, Wait(None, policy.ACCOUNT_ON_HOLD, "paused")),
    ("poison", {"delivery_count": 6}, Settle(FAILED, POISON)),
    ("expired", {"expires_at": NOW}, Settle(EXPIRED, policy.WINDOW_ENDED)),
    ("opted out", {"opted_out": True}, Settle(SUPPRESSED, "the number opted out of marketing")),
    ("attempts spent", {"attempts_made": MAX_ATTEMPTS}, Settle(FAILED, SPENT)),
    ("params differ", {"params_differ": True}, Wait(None, policy.PARAMS_DIFFER, "params_differ")),
]  # fmt: skip


@pytest.mark.parametrize(("fact", "changes", "expected"), ALONE, ids=[a[0] for a in ALONE])
def test_each_fact_alone_settles_the_message(
    fact: str, changes: dict[str, object], expected: object
) -> None:
    assert before_request(replace(PLAIN, **changes), RULES, NOW) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("earlier", range(len(ALONE)))
def test_the_facts_are_checked_in_one_order(earlier: int) -> None:
    # Every fact from `earlier` on holds at once: the first of them decides.
    changes: dict[str, object] = {}
    for _, fact_changes, _ in ALONE[earlier:]:
        changes.update(fact_changes)
    assert before_request(replace(PLAIN, **changes), RULES, NOW) == ALONE[earlier][2]  # type: ignore[arg-type]


def test_a_lost_attempt_comes_before_the_poison_guard_whatever_the_kind() -> None:
    # The drift this policy ends: the single path failed a poison message before settling the
    # attempt its dead worker left in flight. Here the lost attempt is known first.
    both = replace(PLAIN, lost_attempts=True, delivery_count=6)
    assert before_request(both, RULES, NOW) == Settle(UNKNOWN, LOST)
    resent = replace(both, kind=NOTIFICATION, in_batch=False)
    assert before_request(resent, RULES, NOW) == Settle(FAILED, POISON)


def test_a_lost_attempt_of_a_kind_that_is_resent_goes_ahead() -> None:
    facts = Facts(kind=VERIFICATION, in_batch=False, expires_at=None, lost_attempts=True)
    assert before_request(facts, RULES, NOW) is GO_AHEAD


def test_a_single_message_past_its_deadline_says_so_in_its_own_words() -> None:
    facts = Facts(kind=NOTIFICATION, in_batch=False, expires_at=NOW)
    assert before_request(facts, RULES, NOW) == Settle(EXPIRED, "deadline passed before sending")


def test_opting_out_suppresses_marketing_only() -> None:
    facts = Facts(kind=NOTIFICATION, in_batch=False, expires_at=None, opted_out=True)
    assert before_request(facts, RULES, NOW) is GO_AHEAD


def test_quiet_hours_hold_a_batch_message_until_eight() -> None:
    assert before_request(PLAIN, RULES, QUIET_NOW) == Wait(
        OPENS, "quiet hours (22:00-08:00 Beijing time)", metrics.QUIET_HOURS
    )
    ending = replace(PLAIN, expires_at=OPENS)
    assert before_request(ending, RULES, QUIET_NOW) == Settle(
        EXPIRED, "quiet hours last past the batch's window"
    )
    single = replace(PLAIN, in_batch=False)
    assert before_request(single, RULES, QUIET_NOW) is GO_AHEAD


def test_nothing_in_the_way_goes_ahead() -> None:
    assert before_request(PLAIN, RULES, NOW) is GO_AHEAD


def test_a_countdown_only_for_a_short_wait() -> None:
    assert policy.countdown(Wait(NOW + timedelta(seconds=30), "", ""), NOW) == 30
    long_wait = NOW + timedelta(seconds=policy.MAX_COUNTDOWN_SECONDS + 1)
    assert policy.countdown(Wait(long_wait, "", ""), NOW) is None
    assert policy.countdown(Wait(None, "", ""), NOW) is None
