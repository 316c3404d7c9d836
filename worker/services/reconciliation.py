"""Reconciliation: does the ledger agree with what the gateway says it took and billed?

For each Beijing hour of the period, the ledger's requests, successes and billed segments are
compared with the gateway's ``pullsendstatus`` for that hour (one call per hour, at most
``MAX_HOURS``), counted the same way (see ``worker.ledger.reconciliation``). The ledger places an
attempt by its ``started_at``; the gateway by the moment it received it. Attempts answered
across an hour's edge (or within ``skew`` of it) may fall on either side, so an hour matches
when the gateway's figures lie between what the ledger is sure of and what it might include,
and the whole period must then match within its outer edges.

Besides the hours, it lists what a person must look at: sends still without a delivery report
after N hours, successful attempts whose ``fee`` differs from the segments computed locally
from the text, ambiguous attempts (the gateway may have sent and billed them), and reports no
message claims after a grace period.

The text of a template send is not in the ledger: the gateway knows the template, the client
only its id. A ``TemplateBook`` (a TOML file of id = text, and the account's default sign)
supplies it; attempts whose text cannot be rebuilt are counted as unchecked, not as wrong.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Generic, TypeVar

from sqlalchemy.orm import Session, sessionmaker

from worker import clock
from worker.config_values import read_toml
from worker.ledger import reconciliation as queries
from worker.ledger.reconciliation import BilledAttempt, LedgerHour, SendFigures
from worker.ledger.schema import SmsAttempt, SmsDeliveryReport, SmsMessage
from worker.tencent import (
    InvalidInput,
    SendStats,
    SmsClient,
    count_segments,
    render,
    render_template,
)
from worker.tencent.types import DOMESTIC_NATIONCODE

Item = TypeVar("Item")
HOUR = timedelta(hours=1)
MAX_HOURS = 31 * 24  # one gateway call per hour: a month at most per run
# An in-flight attempt older than this lost its worker: count it as ambiguous.
STALE_IN_FLIGHT = timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class TemplateBook:
    """Template texts by id, and the sign the gateway adds when a domestic send names none."""

    texts: Mapping[int, str] = field(default_factory=dict)
    default_sign: str | None = None

    @classmethod
    def load(cls, path: Path) -> TemplateBook:
        """Read a TOML file; raises ValueError naming the file and the key at fault.

        Either ``[templates]`` with ``100003 = "text"`` lines, or ``[[templates]]`` tables with
        ``id`` and ``text`` (the simulator's format; other keys are ignored). The default sign
        is ``default_sign = "..."``, else the first approved ``[[signs]]`` entry.
        """
        raw = read_toml(path)
        try:
            return cls.from_mapping(raw)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> TemplateBook:
        templates = raw.get("templates", {})
        if isinstance(templates, Mapping):
            entries = list(templates.items())
        elif isinstance(templates, list) and all(isinstance(t, Mapping) for t in templates):
            entries = [(entry.get("id"), entry.get("text")) for entry in templates]
        else:
            raise ValueError("templates must be a table of id = text, or [[templates]] entries")
        texts: dict[int, str] = {}
        for ident, text in entries:
            if not str(ident).isdigit() or not isinstance(text, str) or not text:
                raise ValueError(f"templates: {ident!r} needs a numeric id and a text")
            texts[int(ident)] = text
        default_sign = raw.get("default_sign")
        signs = raw.get("signs", [])
        if default_sign is None and isinstance(signs, list):
            approved = (s.get("text") for s in signs if isinstance(s, Mapping))
            default_sign = next((t for t in approved if isinstance(t, str) and t), None)
        if default_sign is not None and not isinstance(default_sign, str):
            raise ValueError("default_sign must be the sign's text, without 【】")
        return cls(texts, default_sign or None)

    def expected_fee(self, attempt: BilledAttempt) -> int | None:
        """The segments the rendered text costs; None when the text cannot be rebuilt."""
        domestic = attempt.nationcode == DOMESTIC_NATIONCODE
        if attempt.tpl_id is None:
            # Free text goes out as is: it carries its own signature.
            return count_segments(attempt.content, domestic=domestic) if attempt.content else None
        template = self.texts.get(attempt.tpl_id)
        if template is None:
            return None
        try:
            content = render_template(template, attempt.params or ())
        except InvalidInput:
            return None  # the book's text does not fit the params the gateway accepted
        sign = attempt.sign or (self.default_sign if domestic else None)
        if domestic and sign is None:
            return None
        return count_segments(render(content, sign, domestic=domestic), domestic=domestic)


@dataclass(frozen=True, slots=True)
class HourCheck:
    """One hour (or the whole period): the ledger's figures, the gateway's, and the range the
    gateway's may take given the attempts at the edges (``low`` to ``high``, componentwise)."""

    start: datetime
    end: datetime
    ledger: SendFigures
    gateway: SendFigures
    low: SendFigures
    high: SendFigures
    unsettled: int  # ambiguous attempts started in it: they may explain a difference

    @property
    def matches(self) -> bool:
        pairs = zip(_figures(self.low), _figures(self.gateway), _figures(self.high), strict=True)
        return all(low <= gateway <= high for low, gateway, high in pairs)


def _figures(figures: SendFigures) -> tuple[int, int, int]:
    return figures.requests, figures.successes, figures.billed


@dataclass(frozen=True, slots=True)
class FeeMismatch:
    attempt_id: int
    message_id: uuid.UUID
    sid: str | None
    started_at: datetime
    fee: int | None
    expected: int


@dataclass(frozen=True, slots=True)
class Findings(Generic[Item]):
    """How many there are, and the first few (oldest first)."""

    total: int = 0
    items: tuple[Item, ...] = ()


@dataclass(frozen=True, slots=True)
class Reconciliation:
    start: datetime
    end: datetime
    accounts: tuple[str, ...] | None  # None: every account in the ledger
    hours: tuple[HourCheck, ...]
    period: HourCheck  # the whole period
    unreported: Findings[SmsMessage]  # still `sent`, without a report
    fee_mismatches: Findings[FeeMismatch]
    unchecked_fees: int  # successful attempts whose text could not be rebuilt
    unsettled: Findings[SmsAttempt]  # ambiguous, or lost in flight
    orphans: Findings[SmsDeliveryReport]  # reports no message claims

    @property
    def mismatched_hours(self) -> tuple[HourCheck, ...]:
        return tuple(hour for hour in self.hours if not hour.matches)

    @property
    def ok(self) -> bool:
        """Everything matches and nothing is left for a person to look at."""
        return (
            not self.mismatched_hours
            and self.period.matches
            and not self.unreported.total
            and not self.fee_mismatches.total
            and not self.unsettled.total
            and not self.orphans.total
        )


def _hour_floor(moment: datetime) -> datetime:
    # Beijing is a whole number of hours from UTC: its hours start when UTC's do.
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _hour_ceiling(moment: datetime) -> datetime:
    floor = _hour_floor(moment)
    return floor if floor == moment else floor + HOUR


def reconcile(
    sessions: sessionmaker[Session],
    client: SmsClient,
    period: tuple[datetime, datetime],
    *,
    accounts: Collection[str] | None = None,
    report_after_hours: float = 24.0,
    templates: TemplateBook | None = None,
    orphan_grace: timedelta = timedelta(hours=1),
    skew: timedelta = timedelta(seconds=2),
    limit: int = 100,
    now: datetime | None = None,
) -> Reconciliation:
    """Compare the ledger with the gateway over ``period`` (widened to whole hours, and cut at
    the current hour) and collect what needs a look.

    ``client`` is the account whose ``pullsendstatus`` is read; ``accounts`` the ledger's account
    names sending through that sdkappid (None: every account). Raises ``GatewayError`` when the
    gateway does not answer, ValueError for a period without hours or longer than ``MAX_HOURS``.
    """
    now = now or clock.now()
    start, end = _hour_floor(period[0]), min(_hour_ceiling(period[1]), _hour_ceiling(now))
    if end <= start:
        raise ValueError("the period has no hour that has begun yet")
    if end - start > MAX_HOURS * HOUR:
        raise ValueError(f"at most {MAX_HOURS // 24} days at a time (one gateway call per hour)")
    chosen = tuple(accounts) if accounts is not None else None
    count = round((end - start) / HOUR)
    with sessions() as session:
        # The hour before and the hour after too: their edge attempts may belong to the period.
        ledger = [
            queries.ledger_hour(session, start + offset * HOUR, accounts=chosen, skew=skew)
            for offset in range(-1, count + 1)
        ]
        unreported = queries.sends_without_report(
            session, start, min(end, now - timedelta(hours=report_after_hours)),
            accounts=chosen, limit=limit,
        )  # fmt: skip
        mismatches, unchecked = _check_fees(session, start, end, chosen, templates, limit)
        unsettled = queries.unsettled_attempts(
            session, start, end, stale_before=now - STALE_IN_FLIGHT, accounts=chosen, limit=limit
        )
        orphans = queries.orphan_reports(session, start, min(end, now - orphan_grace), limit=limit)
    # No database connection is held while the gateway answers.
    stats = [client.pull_send_stats(hour.start, hour.start) for hour in ledger[1:-1]]
    hours, whole = compare_hours(ledger, stats)
    return Reconciliation(
        start=start,
        end=end,
        accounts=chosen,
        hours=tuple(hours),
        period=whole,
        unreported=Findings(unreported[0], tuple(unreported[1])),
        fee_mismatches=mismatches,
        unchecked_fees=unchecked,
        unsettled=Findings(unsettled[0], tuple(unsettled[1])),
        orphans=Findings(orphans[0], tuple(orphans[1])),
    )


def compare_hours(
    ledger: list[LedgerHour], stats: list[SendStats]
) -> tuple[list[HourCheck], HourCheck]:
    """Each hour checked, and the whole period; ``ledger`` has the hour before the period and
    the hour after it around the period's hours, ``stats`` the gateway's for the period's."""
    checks = []
    for before, hour, after, answer in zip(ledger, ledger[1:], ledger[2:], stats, strict=False):
        checks.append(
            HourCheck(
                start=hour.start,
                end=hour.start + HOUR,
                ledger=hour.figures,
                gateway=SendFigures(answer.request, answer.success, answer.bill_number),
                low=hour.figures - hour.late - hour.early,
                high=hour.figures + before.late + after.early,
                unsettled=hour.unsettled,
            )
        )
    inner = ledger[1:-1]
    total, gateway = SendFigures(), SendFigures()
    for hour, check in zip(inner, checks, strict=True):
        total, gateway = total + hour.figures, gateway + check.gateway
    # Inside the period an edge attempt only moves between its hours; at the two outer edges
    # it may leave the period or come into it.
    whole = HourCheck(
        start=inner[0].start,
        end=inner[-1].start + HOUR,
        ledger=total,
        gateway=gateway,
        low=total - inner[0].early - inner[-1].late,
        high=total + ledger[0].late + ledger[-1].early,
        unsettled=sum(hour.unsettled for hour in inner),
    )
    return checks, whole


def _check_fees(
    session: Session,
    start: datetime,
    end: datetime,
    accounts: tuple[str, ...] | None,
    templates: TemplateBook | None,
    limit: int,
) -> tuple[Findings[FeeMismatch], int]:
    """Successful attempts whose fee is not what their text costs, and how many went unchecked.

    Streams the attempts, so a month of them takes constant memory.
    """
    book = templates or TemplateBook()
    total = unchecked = 0
    first: list[FeeMismatch] = []
    for attempt in queries.billed_attempts(session, start, end, accounts=accounts):
        expected = book.expected_fee(attempt)
        if expected is None:
            unchecked += 1
        elif attempt.fee != expected:
            total += 1
            if len(first) < limit:
                first.append(
                    FeeMismatch(
                        attempt.attempt_id,
                        attempt.message_id,
                        attempt.sid,
                        attempt.started_at,
                        attempt.fee,
                        expected,
                    )
                )
    return Findings(total, tuple(first)), unchecked
