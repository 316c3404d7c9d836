"""Ingesting delivery reports and replies, on both dialects, through the service functions.

Duplicates, late, out-of-order and orphan reports; the state machine they drive; replies that
opt numbers out. The HTTP side is in test_receiver.py, the pull side in test_reports_pull.py.
"""

from __future__ import annotations

import itertools
import random
import secrets
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from tests.fixtures.receiver import (
    record_answer,
    record_sending,
    record_sent,
    report_rows,
    row_counts,
    statuses,
)
from worker.ledger.db import session_factory
from worker.ledger.moves import transition
from worker.ledger.optouts import is_opted_out, remove_opt_out
from worker.ledger.schema import SmsMessage
from worker.ledger.status import DELIVERED, SENDING, SENT, UNDELIVERED
from worker.services.reports import (
    InvalidItem,
    beijing_to_utc,
    ingest_reply,
    ingest_reports,
    is_opt_out,
    match_orphans,
    match_sent,
    match_sent_many,
)
from worker.tencent.types import DeliveryReport, Reply

MOBILE = "13788888888"
_sids = itertools.count(1)


def new_sid() -> str:
    return f"8:{secrets.token_hex(6)}{next(_sids)}"


def report(
    sid: str, status: str = "SUCCESS", at: str = "2024-05-01 12:00:00", code: str | None = None
) -> DeliveryReport:
    return DeliveryReport(
        user_receive_time=at,
        nationcode="86",
        mobile=MOBILE,
        report_status=status,
        errmsg=code or ("DELIVRD" if status == "SUCCESS" else "UNDELIV"),
        description="",
        sid=sid,
    )


@pytest.fixture
def sessions(ledger_engine: Engine) -> sessionmaker[Session]:
    return session_factory(ledger_engine)


def test_beijing_report_time_is_stored_as_aware_utc(sessions: sessionmaker[Session]) -> None:
    sid = new_sid()
    message_id = record_sent(sessions, MOBILE, sid)

    result = ingest_reports(sessions, [report(sid, at="2024-05-01 07:30:15")], source="callback")

    assert (result.stored, result.orphans, result.delivered) == (1, 0, 1)
    (row,) = report_rows(sessions)
    assert row.user_receive_time == datetime(2024, 4, 30, 23, 30, 15, tzinfo=UTC)
    assert (row.message_id, row.source, row.errmsg) == (message_id, "callback", "DELIVRD")
    assert statuses(sessions, [message_id]) == {message_id: DELIVERED}


def test_a_fail_report_undelivers_and_says_why(sessions: sessionmaker[Session]) -> None:
    sid = new_sid()
    message_id = record_sent(sessions, MOBILE, sid)

    result = ingest_reports(sessions, [report(sid, "FAIL", code="MX:0012")], source="pull")

    assert (result.undelivered, result.delivered) == (1, 0)
    with sessions() as session:
        message = session.get_one(SmsMessage, message_id)
        assert (message.status, message.reason) == (UNDELIVERED, "delivery report FAIL: MX:0012")


def test_a_duplicate_report_is_stored_once_and_changes_nothing(
    sessions: sessionmaker[Session],
) -> None:
    sid = new_sid()
    message_id = record_sent(sessions, MOBILE, sid)
    same = report(sid, "FAIL")

    first = ingest_reports(sessions, [same, same], source="callback")
    again = ingest_reports(sessions, [same], source="pull")

    assert (first.received, first.stored, first.duplicates, first.undelivered) == (2, 1, 1, 1)
    assert (again.stored, again.duplicates, again.undelivered) == (0, 1, 0)
    assert [(row.source, row.report_status) for row in report_rows(sessions)] == [
        ("callback", "FAIL")
    ]
    assert statuses(sessions, [message_id]) == {message_id: UNDELIVERED}


def test_a_late_fail_never_undoes_a_delivery(sessions: sessionmaker[Session]) -> None:
    sid = new_sid()
    message_id = record_sent(sessions, MOBILE, sid)
    ingest_reports(sessions, [report(sid, "SUCCESS", at="2024-05-01 12:00:00")], source="callback")

    late = ingest_reports(sessions, [report(sid, "FAIL", at="2024-05-01 12:05:00")], source="pull")

    assert (late.stored, late.undelivered) == (1, 0)  # kept as evidence, moves nothing
    assert statuses(sessions, [message_id]) == {message_id: DELIVERED}


def test_a_success_after_a_fail_wins(sessions: sessionmaker[Session]) -> None:
    sid = new_sid()
    message_id = record_sent(sessions, MOBILE, sid)
    ingest_reports(sessions, [report(sid, "FAIL", at="2024-05-01 12:00:00")], source="callback")

    success = report(sid, "SUCCESS", at="2024-05-01 12:09:00")
    later = ingest_reports(sessions, [success], source="pull")

    assert later.delivered == 1
    with sessions() as session:
        message = session.get_one(SmsMessage, message_id)
        assert (message.status, message.reason) == (DELIVERED, None)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    kinds=st.lists(st.sampled_from(["SUCCESS", "FAIL"]), min_size=1, max_size=4),
    order=st.randoms(use_true_random=False),
    together=st.booleans(),
)
def test_the_final_state_does_not_depend_on_the_order_of_reports(
    sessions: sessionmaker[Session], kinds: list[str], order: random.Random, together: bool
) -> None:
    sid = new_sid()
    message_id = record_sent(sessions, MOBILE, sid)
    reports = [report(sid, kind, at=f"2024-05-01 12:0{n}:00") for n, kind in enumerate(kinds)]
    order.shuffle(reports)

    if together:
        ingest_reports(sessions, reports, source="callback")
    else:
        for item in reports:
            ingest_reports(sessions, [item], source="callback")

    expected = DELIVERED if "SUCCESS" in kinds else UNDELIVERED
    assert statuses(sessions, [message_id]) == {message_id: expected}


def test_a_report_before_its_send_is_recorded_waits_and_then_applies(
    sessions: sessionmaker[Session],
) -> None:
    message_id = record_sending(sessions, MOBILE)  # the request is in the air
    sid = new_sid()

    early = ingest_reports(sessions, [report(sid)], source="callback")

    assert (early.stored, early.orphans, early.delivered) == (1, 1, 0)
    assert report_rows(sessions)[0].message_id is None
    # The send service records the answer and, in the same transaction, matches.
    with sessions() as session:
        assert transition(session, message_id, SENT, from_statuses=(SENDING,), sid=sid)
        assert match_sent(session, message_id, sid) == 1
        session.commit()
    assert statuses(sessions, [message_id]) == {message_id: DELIVERED}
    assert report_rows(sessions)[0].message_id == message_id
    assert match_orphans(sessions, datetime.now(UTC)) == 0


def test_a_group_answer_applies_only_the_reports_that_overtook_it(
    sessions: sessionmaker[Session],
) -> None:
    early, on_time, other = (record_sending(sessions, f"1370000000{n}") for n in (1, 2, 3))
    early_sid, on_time_sid, other_sid = new_sid(), new_sid(), new_sid()
    ingest_reports(sessions, [report(early_sid, "FAIL"), report(other_sid)], source="callback")
    with sessions() as session:
        sent = {early: early_sid, on_time: on_time_sid}
        for message_id, sid in sent.items():
            assert transition(session, message_id, SENT, from_statuses=(SENDING,), sid=sid)
        assert match_sent_many(session, sent) == 1
        assert match_sent_many(session, {}) == 0
        session.commit()
    assert statuses(sessions, [early, on_time, other]) == {
        early: UNDELIVERED, on_time: SENT, other: SENDING
    }  # fmt: skip
    owners = {row.sid: row.message_id for row in report_rows(sessions)}
    assert owners == {early_sid: early, other_sid: None}


def test_orphans_are_matched_later_by_the_beat(sessions: sessionmaker[Session]) -> None:
    early = record_sending(sessions, MOBILE)
    other = record_sending(sessions, "13700000002")
    sid, other_sid, unknown_sid = new_sid(), new_sid(), new_sid()
    ingest_reports(
        sessions,
        [report(sid, "FAIL"), report(other_sid), report(unknown_sid)],
        source="pull",
    )
    # Recorded without matching (a report committed while the send's transaction ran).
    record_answer(sessions, early, sid)
    record_answer(sessions, other, other_sid)

    # Past the window nothing is looked at; within it both are matched, then nothing is left.
    assert match_orphans(sessions, datetime.now(UTC) + timedelta(days=30)) == 0
    assert match_orphans(sessions, datetime.now(UTC)) == 2
    assert match_orphans(sessions, datetime.now(UTC)) == 0

    assert statuses(sessions, [early, other]) == {early: UNDELIVERED, other: DELIVERED}
    owners = {row.sid: row.message_id for row in report_rows(sessions)}
    assert owners == {sid: early, other_sid: other, unknown_sid: None}


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"user_receive_time": "2024-05-01T12:00:00"}, "item 1: user_receive_time must be"),
        ({"user_receive_time": "2024-02-30 12:00:00"}, "item 1: user_receive_time is not a"),
        ({"report_status": "success"}, "item 1: report_status must be SUCCESS or FAIL"),
        ({"sid": ""}, "item 1: sid must not be empty"),
        ({"sid": "8:" + "x" * 80}, "item 1: sid is longer than 64 characters"),
        ({"errmsg": "DELIV\x00RD"}, "item 1: errmsg contains a NUL character"),
        ({"description": "\ud800"}, "item 1: description is not valid Unicode text"),
    ],
)
def test_one_bad_report_refuses_the_whole_body(
    sessions: sessionmaker[Session], bad: dict[str, str], message: str
) -> None:
    sid = new_sid()
    message_id = record_sent(sessions, MOBILE, sid)
    good = report(sid)
    fields = {name: getattr(good, name) for name in DeliveryReport.__dataclass_fields__}

    with pytest.raises(InvalidItem, match=message.replace("(", r"\(")):
        ingest_reports(sessions, [good, DeliveryReport(**{**fields, **bad})], source="callback")

    assert row_counts(sessions) == (0, 0, 0)
    assert statuses(sessions, [message_id]) == {message_id: SENT}


def test_beijing_time_conversion_refuses_what_is_not_a_time() -> None:
    assert beijing_to_utc("2024-01-01 00:00:00") == datetime(2023, 12, 31, 16, tzinfo=UTC)
    for text in ("", "2024-1-1 00:00:00", "0001-01-01 00:00:00", "2024-01-01 24:00:00"):
        with pytest.raises(InvalidItem):
            beijing_to_utc(text)


# --- replies ---------------------------------------------------------------------------------


def reply(text: str, mobile: str = MOBILE, time: int = 1_714_536_000) -> Reply:
    return Reply(extend="", mobile=mobile, nationcode="86", sign="腾讯云", text=text, time=time)


@pytest.mark.parametrize(
    "text", ["TD", "td", " Td ", "t", "N", "STOP", "stop!", "Unsubscribe.", "退订", "【退订】",
             "取消", "退", "ＴＤ", "TD。", "\tqxdy\n", "退订😀"],
)  # fmt: skip
def test_opt_out_keywords(text: str) -> None:
    assert is_opt_out(text)


@pytest.mark.parametrize(
    "text", ["", "hello", "TDD", "T D X", "不要退订", "stop sending me the link please", "好的",
             "NO", "1"],
)  # fmt: skip
def test_other_replies_are_not_opt_outs(text: str) -> None:
    assert not is_opt_out(text)


def test_a_td_reply_opts_the_number_out_once(sessions: sessionmaker[Session]) -> None:
    first = ingest_reply(sessions, reply(" td。"), source="callback")
    again = ingest_reply(sessions, reply(" td。"), source="pull")

    assert (first.stored, first.opted_out) == (True, True)
    assert (again.stored, again.opted_out) == (False, False)
    with sessions() as session:
        assert is_opted_out(session, "86", MOBILE)
        # Taken off the list by a person: the same reply pulled again does not put it back.
        assert remove_opt_out(session, "86", MOBILE)
        session.commit()
    ingest_reply(sessions, reply(" td。"), source="pull")
    with sessions() as session:
        assert not is_opted_out(session, "86", MOBILE)
    assert row_counts(sessions) == (0, 1, 0)


def test_an_ordinary_reply_is_stored_without_opting_out(sessions: sessionmaker[Session]) -> None:
    result = ingest_reply(sessions, reply("谢谢，已收到"), source="callback")

    assert (result.stored, result.opted_out) == (True, False)
    assert row_counts(sessions) == (0, 1, 0)


def test_a_reply_that_cannot_be_stored_writes_nothing(sessions: sessionmaker[Session]) -> None:
    for bad in (reply("TD", mobile=""), reply("TD", time=-1), reply("TD\x00")):
        with pytest.raises(InvalidItem):
            ingest_reply(sessions, bad, source="callback")
    assert row_counts(sessions) == (0, 0, 0)
