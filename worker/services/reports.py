"""Delivery reports and replies into the ledger: from the receiver's callbacks and from pulls.

Both paths run the same code, so a report pushed and also pulled ends in the same state. Every
report is stored once (a duplicate is refused by its unique key), attached to its message by
``sid``, and moves that message at most forward:

- ``sent`` / ``unknown`` -> ``delivered`` on SUCCESS, -> ``undelivered`` on FAIL;
- ``undelivered`` -> ``delivered`` on a later SUCCESS (the operator may retry on its own; the
  handset has it), never ``delivered`` -> anything. So the final state is the same whatever
  order the reports of a message arrive in: delivered if any says SUCCESS.

A report for a send not recorded yet is stored as an orphan and applied when the send is
recorded (``match_sent``, called by the send service) or by the beat's ``match_orphans``.
A reply whose text is an opt-out keyword puts its number on the opt-out list.
"""

from __future__ import annotations

import logging
import re
import unicodedata
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from worker import clock
from worker.ledger import reports as ledger
from worker.ledger.moves import transition
from worker.ledger.optouts import add_opt_out
from worker.ledger.schema import SmsDeliveryReport, SmsReply
from worker.ledger.schema.reports import REPORT_SOURCES
from worker.ledger.status import AWAITING_REPORT, DELIVERED, UNDELIVERED
from worker.ledger.types import text_problem
from worker.observability import metrics
from worker.tencent.types import BEIJING, REPORT_FAIL, REPORT_SUCCESS, DeliveryReport, Reply

log = logging.getLogger(__name__)

# Replies that mean "no more marketing", compared after normalising (see is_opt_out): the
# conventions of mainland operators (TD, T, N, 退订) and the international ones (STOP...).
OPT_OUT_KEYWORDS = frozenset(
    {
        "td", "t", "n",
        "stop", "stopall", "unsubscribe", "unsub", "cancel", "end", "quit", "optout",
        "退订", "退", "取消", "退订短信", "取消订阅", "拒收", "qxdy",
    }
)  # fmt: skip
# Orphans older than this are not looked at by the matcher any more; reconciliation lists them.
ORPHAN_WINDOW = timedelta(days=7)
MATCH_LIMIT = 1000

REPORT_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}")
# Reply times beyond these are not a handset's clock (and would overflow a datetime).
EARLIEST_REPLY, LATEST_REPLY = 0, 253_402_214_400  # 1970 .. 9999-12-31
# A reply's text is part of its unique key, and a PostgreSQL index entry holds at most 2704
# bytes: a longer text could never be stored, and a 5xx would have the gateway send it forever.
MAX_REPLY_TEXT_BYTES = 2000
_REPORT_COLUMNS = SmsDeliveryReport.__table__.columns
_REPLY_COLUMNS = SmsReply.__table__.columns


class InvalidItem(ValueError):
    """A report or reply that cannot be stored; the message names the field (and the item)."""

    def __init__(self, field: str, problem: str, index: int | None = None) -> None:
        where = "" if index is None else f"item {index}: "
        super().__init__(f"{where}{field} {problem}")
        self.field = field
        self.problem = problem
        self.index = index


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What one body of reports did to the ledger."""

    received: int
    stored: int  # new rows; the others were duplicates
    orphans: int  # new rows whose send is not recorded (yet)
    delivered: int  # messages moved to delivered
    undelivered: int  # messages moved to undelivered

    @property
    def duplicates(self) -> int:
        return self.received - self.stored


@dataclass(frozen=True, slots=True)
class ReplyResult:
    stored: bool  # False: the same reply was stored before
    opted_out: bool  # its number was added to the opt-out list now


# --- delivery reports ----------------------------------------------------------------------


def report_problem(report: DeliveryReport) -> InvalidItem | None:
    """Why ``report`` cannot be stored, or None."""
    try:
        _report_row(report, source="callback", now=clock.now())
    except InvalidItem as problem:
        return problem
    return None


def ingest_reports(
    sessions: sessionmaker[Session],
    reports: Sequence[DeliveryReport],
    *,
    source: str,
    now: datetime | None = None,
) -> IngestResult:
    """Store the reports and move their messages, all in one transaction or not at all.

    Raises ``InvalidItem`` (naming the item's index and field) before writing anything when
    one of them cannot be stored.
    """
    now = now or clock.now()
    rows: dict[tuple[Any, ...], dict[str, Any]] = {}
    for index, report in enumerate(reports):
        try:
            row = _report_row(report, source=source, now=now)
        except InvalidItem as problem:
            raise InvalidItem(problem.field, problem.problem, index) from None
        rows.setdefault(tuple(row[key] for key in ledger.REPORT_KEY), row)
    # In key order, so two concurrent bodies take their locks in the same order.
    unique = [rows[key] for key in sorted(rows)]
    with sessions() as session:
        owners = ledger.message_ids_by_sid(session, {row["sid"] for row in unique})
        for row in unique:
            row["message_id"] = owners.get(row["sid"])
        stored = ledger.insert_reports(session, unique)
        delivered, undelivered = _settle(session, stored)
        session.commit()
    metrics.reports_received(source, (report.report_status for report in reports))
    return IngestResult(
        received=len(reports),
        stored=len(stored),
        orphans=sum(1 for report in stored if report.message_id is None),
        delivered=delivered,
        undelivered=undelivered,
    )


def match_sent(session: Session, message_id: uuid.UUID, sid: str) -> int:
    """Apply the reports that arrived before the send was recorded; how many there were.

    Called in the transaction that records ``sent``, so a report that overtook its send moves
    the message at once. (One that is committed while this transaction runs is seen by
    ``match_orphans`` instead.) Does not commit.
    """
    if not sid:
        return 0
    attached = ledger.attach_reports(session, sid, message_id)
    _settle(session, attached)
    return len(attached)


def match_sent_many(session: Session, sent: Mapping[uuid.UUID, str]) -> int:
    """``match_sent`` for many messages just recorded (message id to ``sid``); how many reports.

    One lookup for all of them; only the few whose report overtook the answer are matched one
    by one. Does not commit.
    """
    waiting = ledger.orphan_sids(session, [sid for sid in sent.values() if sid])
    return sum(
        match_sent(session, message_id, sid) for message_id, sid in sent.items() if sid in waiting
    )


def match_orphans(sessions: sessionmaker[Session], now: datetime, limit: int = MATCH_LIMIT) -> int:
    """Attach orphan reports whose send has been recorded since, and move their messages.

    Looks at orphans received in the last ``ORPHAN_WINDOW``, at most ``limit`` sids per call;
    the count of reports attached.
    """
    with sessions() as session:
        attached: list[ledger.StoredReport] = []
        for sid, message_id in ledger.matchable_orphans(session, now - ORPHAN_WINDOW, limit):
            attached += ledger.attach_reports(session, sid, message_id)
        _settle(session, attached)
        session.commit()
    if attached:
        log.info("matched %d orphan delivery report(s)", len(attached))
    return len(attached)


def _settle(session: Session, reports: Iterable[ledger.StoredReport]) -> tuple[int, int]:
    """Move each report's message; how many went to delivered and to undelivered."""
    winning: dict[uuid.UUID, ledger.StoredReport] = {}
    for report in reports:
        if report.message_id is None:
            continue
        current = winning.get(report.message_id)
        if current is None or report.report_status == REPORT_SUCCESS:
            winning[report.message_id] = report
    delivered = undelivered = 0
    for message_id in sorted(winning):  # one lock order for concurrent bodies
        report = winning[message_id]
        if report.report_status == REPORT_SUCCESS:
            delivered += transition(
                session, message_id, DELIVERED,
                from_statuses=(*AWAITING_REPORT, UNDELIVERED), reason=None,
            )  # fmt: skip
        else:
            undelivered += transition(
                session, message_id, UNDELIVERED, from_statuses=AWAITING_REPORT,
                reason=f"delivery report FAIL: {report.errmsg}",
            )  # fmt: skip
    return delivered, undelivered


def _report_row(report: DeliveryReport, *, source: str, now: datetime) -> dict[str, Any]:
    _check_source(source)
    status = report.report_status
    if status not in (REPORT_SUCCESS, REPORT_FAIL):
        raise InvalidItem("report_status", f"must be SUCCESS or FAIL, got {status!r:.40}")
    return {
        "sid": _text(report.sid, "sid", _REPORT_COLUMNS, required=True),
        "nationcode": _text(report.nationcode, "nationcode", _REPORT_COLUMNS, required=True),
        "mobile": _text(report.mobile, "mobile", _REPORT_COLUMNS, required=True),
        "report_status": status,
        "errmsg": _text(report.errmsg, "errmsg", _REPORT_COLUMNS),
        "description": _text(report.description, "description", _REPORT_COLUMNS),
        "user_receive_time": beijing_to_utc(report.user_receive_time),
        "received_at": now,
        "source": source,
    }


def beijing_to_utc(text: str) -> datetime:
    """The gateway's ``YYYY-MM-DD HH:MM:SS`` in Beijing time, as an aware UTC datetime."""
    if not REPORT_TIME.fullmatch(text):
        raise InvalidItem(
            "user_receive_time", f"must be 'YYYY-MM-DD HH:MM:SS' (Beijing time), got {text!r:.40}"
        )
    try:
        local = datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=BEIJING)
        return local.astimezone(UTC)
    except (ValueError, OverflowError):
        raise InvalidItem("user_receive_time", f"is not a valid time: {text!r}") from None


# --- replies -------------------------------------------------------------------------------


def ingest_reply(
    sessions: sessionmaker[Session], reply: Reply, *, source: str, now: datetime | None = None
) -> ReplyResult:
    """Store a reply; an opt-out keyword puts its number on the opt-out list (same transaction).

    Only a newly stored reply opts out, so a reply pulled again after the number was taken off
    the list does not put it back. Raises ``InvalidItem`` before writing when it cannot be stored.
    """
    row = _reply_row(reply, source=source, now=now or clock.now())
    with sessions() as session:
        stored = ledger.insert_reply(session, **row)
        opted_out = (
            stored
            and is_opt_out(reply.text)
            and add_opt_out(
                session, row["nationcode"], row["mobile"], source="reply", reason=row["text"]
            )
        )
        session.commit()
    metrics.reply_received(source, opted_out)
    if opted_out:
        log.info("number ending %s opted out by reply", row["mobile"][-4:])
    return ReplyResult(stored=stored, opted_out=opted_out)


def is_opt_out(text: str) -> bool:
    """Whether a reply asks to stop: a keyword, ignoring case, width, spaces and punctuation."""
    normal = unicodedata.normalize("NFKC", text).casefold()
    start, end = 0, len(normal)
    while start < end and _is_filler(normal[start]):
        start += 1
    while end > start and _is_filler(normal[end - 1]):
        end -= 1
    return normal[start:end] in OPT_OUT_KEYWORDS


def _is_filler(char: str) -> bool:
    """Whitespace, punctuation, symbols (emoji) and control characters around a keyword."""
    return unicodedata.category(char)[0] in "ZPSC"


def _reply_row(reply: Reply, *, source: str, now: datetime) -> dict[str, Any]:
    _check_source(source)
    seconds = reply.time
    if not EARLIEST_REPLY <= seconds <= LATEST_REPLY:
        raise InvalidItem("time", f"must be Unix seconds, got {seconds}")
    if len(reply.text.encode("utf-8", "surrogatepass")) > MAX_REPLY_TEXT_BYTES:
        raise InvalidItem("text", f"is longer than {MAX_REPLY_TEXT_BYTES} bytes of UTF-8")
    return {
        "nationcode": _text(reply.nationcode, "nationcode", _REPLY_COLUMNS, required=True),
        "mobile": _text(reply.mobile, "mobile", _REPLY_COLUMNS, required=True),
        "text": _text(reply.text, "text", _REPLY_COLUMNS),
        "sign": _text(reply.sign, "sign", _REPLY_COLUMNS),
        "extend": _text(reply.extend, "extend", _REPLY_COLUMNS),
        "time": datetime.fromtimestamp(seconds, UTC),
        "received_at": now,
        "source": source,
    }


def _check_source(source: str) -> None:
    if source not in REPORT_SOURCES:  # a caller's mistake, not the input's
        raise ValueError(f"source must be one of {', '.join(REPORT_SOURCES)}, not {source!r}")


def _text(value: str, field: str, columns: Any, *, required: bool = False) -> str:
    """``value`` if its column in ``columns`` can store it as is on both dialects.

    PostgreSQL refuses what SQLite would take: text over a VARCHAR's length, NUL characters,
    and lone surrogates (which JSON can spell); each is an ``InvalidItem`` here instead.
    """
    if required and not value:
        raise InvalidItem(field, "must not be empty")
    problem = text_problem(value, getattr(columns[field].type, "length", None))
    if problem is not None:
        raise InvalidItem(field, problem)
    return value
