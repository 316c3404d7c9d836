"""Finance's queries on PostgreSQL and SQLite, over a ledger written row by row.

The day D below is a Beijing day in the past; its rows are written with the ledger's own
functions, and the expected figures are counted here from what was written.
"""

from __future__ import annotations

import inspect
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from worker.ledger import attempts, messages, moves
from worker.ledger import finance as ledger_finance
from worker.ledger.db import session_factory
from worker.ledger.reconciliation import (
    BilledAttempt,
    LedgerHour,
    SendFigures,
    ledger_hour,
    orphan_reports,
    sends_without_report,
    unsettled_attempts,
)
from worker.ledger.schema import SmsAttempt, SmsDailyUsage, SmsDeliveryReport
from worker.ledger.status import DELIVERED, MARKETING, NOTIFICATION, SENT
from worker.services import finance
from worker.services.reconciliation import TemplateBook, compare_hours
from worker.tencent import SendStats

D = date(2026, 3, 10)
D_START = datetime(2026, 3, 9, 16, 0, tzinfo=UTC)  # 2026-03-10 00:00 Beijing time
NOW = datetime(2026, 3, 20, 4, 0, tzinfo=UTC)


@pytest.fixture
def sessions(ledger_engine: Engine) -> sessionmaker[Session]:
    return session_factory(ledger_engine)


def add_message(
    session: Session,
    created_at: datetime,
    tries: list[tuple[int | None, int | None, str]],
    **overrides: Any,
) -> uuid.UUID:
    """A message created at ``created_at`` with one attempt per (result, fee, outcome), a minute
    apart; ``sent`` when the last try got result 0, else ``failed``."""
    sent = bool(tries) and tries[-1][0] == 0
    fields: dict[str, Any] = {
        "account": "shop",
        "kind": NOTIFICATION,
        "nationcode": "86",
        "mobile": f"139{uuid.uuid4().int % 10**8:08d}",
        "tpl_id": 100003,
        "params": ["张先生", "20240501001", "5月1日", "顺丰速运", "SF1234567890"],
        "sign": "腾讯云",
        "status": SENT if sent else "failed",
        "created_at": created_at,
        "sent_at": created_at + timedelta(minutes=len(tries)) if sent else None,
        **overrides,
    }
    message, _ = messages.insert_message(session, **fields)
    for number, (result, fee, outcome) in enumerate(tries, start=1):
        started = created_at + timedelta(minutes=number)
        attempt_id = attempts.begin_attempt(
            session, message_id=message.id, attempt_no=number, request_id=uuid.uuid4(),
            api="sendsms", random=10**9 + number, signed_time=int(started.timestamp()),
            worker="test", started_at=started,
        )  # fmt: skip
        attempts.finish_attempt(
            session, attempt_id, finished_at=started + timedelta(seconds=1), http_status=200,
            result=result, errmsg=None, sid=f"8:{uuid.uuid4().hex[:20]}" if result == 0 else None,
            fee=fee, outcome=outcome, latency_ms=100,
        )  # fmt: skip
    if sent:
        session.execute(
            update(messages.SmsMessage)
            .where(messages.SmsMessage.id == message.id)
            .values(sid=select(SmsAttempt.sid).where(SmsAttempt.message_id == message.id,
                                                     SmsAttempt.result == 0).scalar_subquery(),
                    fee=tries[-1][1], result=0)
        )  # fmt: skip
    return message.id


def build_day(session: Session) -> dict[str, uuid.UUID]:
    """Day D: five messages, and one just before D began and one just after it ended."""
    ids = {
        "two_segments": add_message(session, D_START + timedelta(hours=1), [(0, 2, "ok")]),
        "retried": add_message(
            session,
            D_START + timedelta(hours=2),
            [(1008, None, "transient"), (1008, None, "transient"), (0, 1, "ok")],
            tpl_id=19,
            params=["验证码", "1234", "4"],
        ),
        "failed": add_message(session, D_START + timedelta(hours=3), [(1016, None, "rejected")]),
        "uk_marketing": add_message(
            session,
            D_START + timedelta(hours=4),
            [(0, 1, "ok")],
            nationcode="44",
            mobile="7911123456",
            kind=MARKETING,
            sign=None,
            tpl_id=100004,
            params=["1", "2"],
        ),
        "free_text": add_message(
            session,
            D_START + timedelta(hours=23, minutes=50),
            [(0, 1, "ok")],
            tpl_id=None,
            params=[],
            content="【腾讯云】您的验证码是123456，5分钟内有效，请勿泄露。",
            sign=None,
        ),
        "day_before": add_message(session, D_START - timedelta(minutes=30), [(0, 1, "ok")]),
        "day_after": add_message(session, D_START + timedelta(hours=24), [(0, 1, "ok")]),
    }
    session.commit()
    return ids


def totals(rows: list[finance.SummaryRow]) -> dict[str, int]:
    return dict(finance.usage_totals(rows))


def test_the_summary_counts_beijing_days_exactly(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        build_day(session)
    # The free text was created at 23:50 on D; its attempt, a minute later, also falls in D.
    day = finance.summary(sessions, D_START, D_START + timedelta(days=1), now=NOW)
    assert totals(day) == {
        "messages": 5, "accepted": 4, "delivered": 0, "attempts": 7, "successes": 4,
        "billed_segments": 5, "retry_attempts": 2,
    }  # fmt: skip

    by_day = finance.summary(
        sessions, D_START - timedelta(days=1), D_START + timedelta(days=2), by=["day"], now=NOW
    )
    assert [(row.key["day"], row.figures.messages) for row in by_day] == [
        (D - timedelta(days=1), 1),
        (D, 5),
        (D + timedelta(days=1), 1),
    ]

    by_country = finance.summary(
        sessions, D_START, D_START + timedelta(days=1), by=["kind", "country"], now=NOW
    )
    assert [
        (row.key, row.figures.billed_segments, row.figures.successes) for row in by_country
    ] == [
        ({"country": "44", "kind": MARKETING}, 1, 1),
        ({"country": "86", "kind": NOTIFICATION}, 4, 3),
    ]
    by_template = finance.summary(
        sessions, D_START, D_START + timedelta(days=1), by=["template", "sign"], now=NOW
    )
    attempts_by_template = {
        (row.key["template"], row.key["sign"]): row.figures.attempts for row in by_template
    }
    assert attempts_by_template == {
        (19, "腾讯云"): 3, (100003, "腾讯云"): 2, (100004, None): 1, (None, None): 1,
    }  # fmt: skip
    with pytest.raises(ValueError, match="unknown dimension"):
        finance.summary(sessions, D_START, D_START + timedelta(days=1), by=["colour"])


def test_the_rollup_upserts_on_its_key_and_the_summary_reads_it(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as session:
        ids = build_day(session)
    day_bounds = (D_START, D_START + timedelta(days=1))
    written = finance.rollup(sessions, [D])
    with sessions() as session:
        assert ledger_finance.daily_usage(session, D, D) == {
            D: ledger_finance.live_usage(session, *day_bounds)
        }
        assert session.scalar(select(func.count()).select_from(SmsDailyUsage)) == written
    assert finance.rollup(sessions, [D]) == written  # again: the same rows, no duplicates
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(SmsDailyUsage)) == written

    # A late report moves a message: its old key must not keep its figures.
    with sessions() as session:
        assert moves.transition(session, ids["two_segments"], DELIVERED, from_statuses=(SENT,))
        # And a message appears that the rollup has not seen yet.
        add_message(session, D_START + timedelta(hours=5), [(0, 1, "ok")])
        session.commit()
    # A whole past day comes from the rollup, so the new message is not in it yet; a part of the
    # day is queried live.
    assert totals(finance.summary(sessions, *day_bounds, now=NOW))["messages"] == 5
    part = finance.summary(sessions, D_START, D_START + timedelta(hours=12), now=NOW)
    assert totals(part)["messages"] == 4 + 1  # four of the day's first twelve hours, and the new
    # A day counts as today (live) when it is today.
    today = finance.summary(sessions, *day_bounds, now=D_START + timedelta(hours=20))
    assert totals(today)["messages"] == 6

    finance.rollup(sessions, [D])
    with sessions() as session:
        assert ledger_finance.daily_usage(session, D, D) == {
            D: ledger_finance.live_usage(session, *day_bounds)
        }
        statuses = set(session.scalars(select(SmsDailyUsage.status).distinct()))
    rolled = finance.summary(sessions, *day_bounds, by=["status"], now=NOW)
    assert {row.key["status"]: row.figures.delivered for row in rolled} == {
        "delivered": 1, "failed": 0, "sent": 0,
    }  # fmt: skip
    assert statuses == {"delivered", "failed", "sent"}
    assert totals(rolled)["messages"] == 6
    assert rolled[0].delivery_rate == Decimal("1.0000")


def test_prices_turn_segments_into_decimal_money(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        build_day(session)
        month_before = D - timedelta(days=30)
        ledger_finance.set_price(session, nationcode="86", kind="*", valid_from=month_before,
                                 price_per_segment=Decimal("0.045"))  # fmt: skip
        # A new price for mainland notifications from D on.
        ledger_finance.set_price(session, nationcode="86", kind=NOTIFICATION, valid_from=D,
                                 price_per_segment=Decimal("0.040"))  # fmt: skip
        ledger_finance.set_price(session, nationcode="*", kind="*", valid_from=month_before,
                                 price_per_segment=Decimal("0.3175"))  # fmt: skip
        session.commit()
        with pytest.raises(TypeError):
            ledger_finance.set_price(session, nationcode="1", kind="*", valid_from=D,
                                     price_per_segment=0.1)  # type: ignore[arg-type]  # fmt: skip
    prices = finance.PriceList.load(sessions)
    rows = finance.summary(
        sessions, D_START - timedelta(days=1), D_START + timedelta(days=1),
        by=["day", "country"], prices=prices, now=NOW,
    )  # fmt: skip
    costs = {(row.key["day"], row.key["country"]): (row.cost, row.currency) for row in rows}
    assert costs == {
        (D - timedelta(days=1), "86"): (Decimal("0.045"), "CNY"),  # the older price
        (D, "44"): (Decimal("0.317500"), "CNY"),
        (D, "86"): (Decimal("0.160000"), "CNY"),  # 4 segments at 0.040
    }
    assert all(isinstance(cost, Decimal) for cost, _ in costs.values())
    assert rows[1].as_dict(priced=True)["cost"] == "0.317500"

    with sessions() as session:
        ledger_finance.set_price(session, nationcode="44", kind="*", valid_from=D,
                                 price_per_segment=Decimal("0.05"), currency="USD")  # fmt: skip
        session.commit()
    with pytest.raises(ValueError, match="currency"):
        finance.summary(sessions, D_START, D_START + timedelta(days=1),
                        prices=finance.PriceList.load(sessions), now=NOW)  # fmt: skip


def test_an_unpriced_country_is_counted_apart(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        build_day(session)
        ledger_finance.set_price(session, nationcode="86", kind="*", valid_from=D,
                                 price_per_segment=Decimal("0.045"))  # fmt: skip
        session.commit()
    (row,) = finance.summary(
        sessions, D_START, D_START + timedelta(days=1),
        prices=finance.PriceList.load(sessions), now=NOW,
    )  # fmt: skip
    assert (row.cost, row.unpriced_segments) == (Decimal("0.180"), 1)


def test_a_summary_from_the_rollup_groups_and_prices_as_the_live_one(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as session:
        build_day(session)
        add_message(session, D_START + timedelta(hours=6), [(0, 1, "ok")], account="other")
        ledger_finance.set_price(session, nationcode="86", kind="*", valid_from=D,
                                 price_per_segment=Decimal("0.045"))  # fmt: skip
        session.commit()
    finance.rollup(sessions, [D - timedelta(days=1), D, D + timedelta(days=1)])
    period = (D_START - timedelta(days=1), D_START + timedelta(days=2))
    prices = finance.PriceList.load(sessions)
    groupings = [[], ["day", "account"], ["template", "sign"], ["country", "kind", "status"]]
    for by in groupings:
        for priced in (None, prices):
            # The clock at the period's start: no day of it is past, so every day is live.
            live = finance.summary(sessions, *period, by=by, prices=priced, now=period[0])
            rolled = finance.summary(sessions, *period, by=by, prices=priced, now=NOW)
            assert [row.as_dict(priced=True) for row in rolled] == [
                row.as_dict(priced=True) for row in live
            ], (by, priced)
    assert [row.key for row in finance.summary(sessions, *period, by=["account"], now=NOW)] == [
        {"account": "other"}, {"account": "shop"},
    ]  # fmt: skip
    # The rolled-up summary did read the rollup: a message it has not seen is not in it.
    with sessions() as session:
        add_message(session, D_START + timedelta(hours=7), [(0, 1, "ok")])
        session.commit()
    assert totals(finance.summary(sessions, *period, now=NOW))["messages"] == 8
    assert totals(finance.summary(sessions, *period, now=period[0]))["messages"] == 9


def test_the_export_streams_every_row(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        build_day(session)
    period = (D_START, D_START + timedelta(days=1))
    rows = finance.export(sessions, "attempts", *period, batch=2)
    assert inspect.isgenerator(rows)
    exported = list(rows)
    assert len(exported) == 7
    assert list(exported[0]) == list(finance.export_columns("attempts"))
    assert sum(row["fee"] or 0 for row in exported if row["result"] == 0) == 5
    assert [row["started_at"] for row in exported] == sorted(row["started_at"] for row in exported)
    assert {row["account"] for row in exported} == {"shop"}
    messages_rows = list(finance.export(sessions, "messages", *period, batch=2))
    assert len(messages_rows) == 5
    assert list(messages_rows[0]) == list(finance.export_columns("messages"))
    assert list(finance.export(sessions, "messages", *period, accounts=["other"])) == []


def test_what_reconciliation_lists(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        ids = build_day(session)
        message = messages.get_message(session, ids["two_segments"])
        assert message is not None and message.sid is not None
        for sid, message_id in ((message.sid, message.id), ("8:unknown", None)):
            session.add(
                SmsDeliveryReport(
                    sid=sid,
                    message_id=message_id,
                    nationcode="86",
                    mobile=message.mobile,
                    report_status="SUCCESS",
                    errmsg="DELIVRD",
                    description="",
                    user_receive_time=D_START + timedelta(hours=2),
                    received_at=D_START + timedelta(hours=2),
                    source="pull",
                )
            )
        session.commit()
        total, unreported = sends_without_report(session, D_START, D_START + timedelta(days=1))
        assert total == 3 and ids["two_segments"] not in {m.id for m in unreported}
        total, orphans = orphan_reports(session, D_START, D_START + timedelta(days=1))
        assert (total, [report.sid for report in orphans]) == (1, ["8:unknown"])


def billed(**fields: Any) -> BilledAttempt:
    base: dict[str, Any] = {
        "attempt_id": 1, "message_id": uuid.uuid4(), "sid": "8:x", "fee": 1,
        "started_at": NOW, "account": "shop", "nationcode": "86", "tpl_id": 100001,
        "params": ["123456", "5"], "content": None, "sign": None,
    }  # fmt: skip
    return BilledAttempt(**{**base, **fields})


def test_the_template_book_rebuilds_the_billed_text() -> None:
    book = TemplateBook.from_mapping(
        {
            "templates": [{"id": 100001, "text": "您的验证码是{1}，{2}分钟内有效，请勿泄露。"}],
            "signs": [{"text": "腾讯云", "approved": True}],
        }
    )
    assert book.default_sign == "腾讯云"
    assert book.expected_fee(billed()) == 1
    long_code = "您的验证码是{1}，{2}分钟内有效，请勿泄露。" + "请" * 50
    assert TemplateBook({100001: long_code}, "腾讯云").expected_fee(billed()) == 2
    assert TemplateBook({100001: long_code}).expected_fee(billed()) is None  # no sign known
    assert book.expected_fee(billed(tpl_id=42)) is None  # unknown template
    assert book.expected_fee(billed(params=["1"])) is None  # the book does not fit the params
    text = "Your code is 123456 " + "x" * 150  # GSM, 170 characters: 2 segments abroad
    assert book.expected_fee(billed(tpl_id=None, content=text, nationcode="44")) == 2
    as_table = TemplateBook.from_mapping({"templates": {"7": "hi {1}"}, "default_sign": "s"})
    assert (as_table.texts, as_table.default_sign) == ({7: "hi {1}"}, "s")
    with pytest.raises(ValueError, match="templates"):
        TemplateBook.from_mapping({"templates": {"x": 3}})


def ledger_hours(*hours: tuple[int, int, int]) -> list[LedgerHour]:
    """Hours from NOW on with (requests counted, of them answered in the next hour, of them
    started within the skew of the hour's start); one success and one segment each."""
    return [
        LedgerHour(
            start=NOW + index * timedelta(hours=1),
            figures=SendFigures(counted, counted, counted),
            late=SendFigures(late, late, late),
            early=SendFigures(early, early, early),
            unsettled=0,
        )
        for index, (counted, late, early) in enumerate(hours)
    ]


def stats(*figures: int) -> list[SendStats]:
    return [SendStats(0, "OK", request=n, success=n, bill_number=n) for n in figures]


def test_an_attempt_across_an_hour_may_be_on_either_side_but_not_lost() -> None:
    # The hour before, two hours of the period, the hour after; one attempt of the first hour
    # was answered in the second.
    ledger = ledger_hours((0, 0, 0), (3, 1, 0), (2, 0, 0), (0, 0, 0))
    for gateway in (stats(3, 2), stats(2, 3)):  # the gateway put it in either hour
        hours, whole = compare_hours(ledger, gateway)
        assert all(hour.matches for hour in hours) and whole.matches
    hours, whole = compare_hours(ledger, stats(2, 2))  # the gateway never had it
    assert all(hour.matches for hour in hours) and not whole.matches
    hours, whole = compare_hours(ledger, stats(3, 3))  # counted in both hours
    assert all(hour.matches for hour in hours) and not whole.matches
    hours, whole = compare_hours(ledger, stats(3, 4))  # beyond what the edge allows
    assert [hour.matches for hour in hours] == [True, False] and not whole.matches
    # At the period's outer edge it may leave the period.
    ledger = ledger_hours((0, 0, 0), (3, 0, 0), (2, 1, 0), (0, 0, 0))
    hours, whole = compare_hours(ledger, stats(3, 1))
    assert all(hour.matches for hour in hours) and whole.matches
    assert (whole.ledger, whole.gateway) == (SendFigures(5, 5, 5), SendFigures(4, 4, 4))


def test_the_ledger_counts_an_hour_as_the_gateway_does(sessions: sessionmaker[Session]) -> None:
    hour = D_START + timedelta(hours=10)
    with sessions() as session:
        # Its attempt starts 1 s into the hour: within the skew of its start.
        add_message(session, hour - timedelta(seconds=59), [(0, 2, "ok")])
        add_message(session, hour + timedelta(minutes=10), [(1016, None, "rejected")])
        # Refused before the gateway took it: not a request in its figures.
        add_message(session, hour + timedelta(minutes=20), [(1001, None, "rejected")])
        add_message(session, hour + timedelta(minutes=30), [(None, None, "ambiguous")])
        # Started a second before the next hour, answered in it.
        add_message(session, hour + timedelta(minutes=58, seconds=59), [(0, 1, "ok")])
        add_message(session, hour + timedelta(minutes=40), [(0, 1, "ok")], account="other")
        session.commit()
        counted = ledger_hour(session, hour, accounts=["shop"], skew=timedelta(seconds=2))
        total, unsettled = unsettled_attempts(
            session, hour, hour + timedelta(hours=1), stale_before=NOW
        )
    assert counted.figures == SendFigures(requests=3, successes=2, billed=3)
    assert counted.early == SendFigures(1, 1, 2)
    assert counted.late == SendFigures(1, 1, 1)
    assert counted.unsettled == 1
    assert total == 1 and unsettled[0].outcome == "ambiguous"
