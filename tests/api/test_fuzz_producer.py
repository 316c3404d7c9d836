"""The producer API under hostile input, on both dialects of a real ledger.

Every call to ``enqueue`` / ``enqueue_many`` ends one of two ways: accepted, with a queued row
per recipient holding exactly what was asked and its task published once committed; or refused
with ``InvalidInput`` whose ``field`` names what is wrong, having written no row and published
nothing. ``enqueue_many`` is all-or-nothing: "all are validated before any is written".

The publisher records its calls: the broker is not what is tested here, the validation is.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import event, example, given
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.fixtures.pipeline import settings_under
from tests.fixtures.simulator import APPKEY, SDKAPPID
from tests.strategies import (
    ANY_SCALAR,
    CHINA_MOBILE,
    FUZZ,
    HOSTILE_INTS,
    HOSTILE_TEXT,
    INVALID_NUMBERS,
    NUMBER_LIKE,
    VALID_NUMBER,
    fuzz_with,
)
from worker.api.producer import MAX_PUBLISH_DELAY_SECONDS, Producer
from worker.ledger.db import make_engine, session_factory
from worker.ledger.schema import SmsMessage
from worker.ledger.status import KINDS, QUEUED, VERIFICATION
from worker.tencent import InvalidInput, parse_phone

ACCOUNT = "default"
FIELDS = frozenset(
    {
        "to", "mobile", "nationcode", "template", "params", "text", "content", "kind",
        "account", "idempotency_key", "sign", "ext", "extend", "not_before", "expires_at",
    }
)  # fmt: skip
PARAM_FIELD = re.compile(r"params\[[0-9]+\]")
# The error fields a call with exactly one bad argument may be refused under.
NAMED_BY = {
    "recipients": {"to", "mobile"},
    "nationcode": {"nationcode"},
    "template": {"template"},
    "params": {"params"},
    "text": {"text", "content"},
    "kind": {"kind"},
    "account": {"account"},
    "idempotency_key": {"idempotency_key"},
    "sign": {"sign"},
    "ext": {"ext"},
    "extend": {"extend"},
    "not_before": {"not_before"},
    "expires_at": {"expires_at"},
}
# A not_before this close to the publish horizon may land on either side of it.
HORIZON_MARGIN_SECONDS = 60.0

Published = tuple[uuid.UUID, str, float | None]


@dataclass
class Harness:
    producer: Producer
    sessions: sessionmaker[Session]
    published: list[Published]

    def message_count(self) -> int:
        with self.sessions() as session:
            return session.scalar(select(func.count()).select_from(SmsMessage)) or 0

    def rows(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, SmsMessage]:
        with self.sessions() as session:
            found = session.scalars(select(SmsMessage).where(SmsMessage.id.in_(ids)))
            return {row.id: row for row in found}


@pytest.fixture
def harness(ledger_url: str) -> Iterator[Harness]:
    settings = settings_under(
        {"SMS_DATABASE_URL": ledger_url, "SMS_SDKAPPID": SDKAPPID, "SMS_APPKEY": APPKEY}
    )
    engine = make_engine(ledger_url)
    sessions = session_factory(engine)
    published: list[Published] = []

    def publish(message_id: uuid.UUID, kind: str, *, countdown: float | None = None) -> None:
        published.append((message_id, kind, countdown))

    yield Harness(Producer(settings, sessions, publish), sessions, published)
    engine.dispose()


@dataclass
class Call:
    """One producer call; ``bad`` names the arguments drawn from the surely-invalid pools."""

    recipients: Any
    options: dict[str, Any]
    single: bool  # enqueue(to) rather than enqueue_many([to])
    bad: list[str] = field(default_factory=list)
    hostile: list[str] = field(default_factory=list)  # may or may not be valid

    def run(self, producer: Producer) -> list[Any]:
        if self.single:
            return [producer.enqueue(self.recipients[0], **self.options)]
        return producer.enqueue_many(self.recipients, **self.options)


# Template params that are valid for every template: short, no URL (no dot), no NUL.
SAFE_PARAM = st.text(st.characters(categories=["L", "N"]), max_size=12)
CODE_PARAM = st.one_of(st.from_regex(r"\A[0-9]{0,6}\Z"), st.integers(0, 999_999))
SAFE_TEXT = st.text(st.characters(categories=["L", "N", "P", "Zs"]), max_size=60)
SIGN_TEXT = st.text(st.characters(categories=["L", "N"]), min_size=1, max_size=12)
OFFSETS = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
NAIVE = datetime(2030, 1, 1, 9, 0)

BAD = {
    # (National numbers are valid in the calls that give a nationcode.)
    "recipients": st.one_of(
        INVALID_NUMBERS.filter(lambda number: number != "13788888888"),
        st.none(),
        st.binary(max_size=4),
        HOSTILE_INTS,
    ),
    "nationcode": st.sampled_from(["abc", "", "９９", "9" * 5000, "+-86", "0", "-86"]),
    "template": st.sampled_from([0, -1, 2**31, 10**5000, -(10**5000), True, "100", 1.5]),
    "params": st.sampled_from(
        [
            None,
            "123456",
            [None],
            ["x" * 13],
            ["http://a.cn/x"],
            ["www.a.com"],
            [1.5],
            [["a"]],
            [10**5000],
            [10**12],
            [True],
            [b"1"],
            ["1"] * 41,
            ["123456789012"] * 38,
            [""] * 10_000,
            ["a\x00"],
            ["\ud800"],
            {"a": 1},
        ]
    ),
    "text": st.sampled_from(["", "   ", "x" * 451, 5, "a\x00", "\ud800", b"hi"]),
    "kind": st.sampled_from(["", "VERIFICATION", "sms", 1, None, "marketing ", ["marketing"]]),
    "account": st.sampled_from(["other", 5, "a\x00", "x" * 65, "Default", "\udcff"]),
    "idempotency_key": st.sampled_from(["", "k" * 129, "a\x00", "\ud800", 5, b"k"]),
    "sign": st.sampled_from(["s" * 65, "s\x00", "\udcff", 5, b"s", "【腾讯云", "腾讯】云", "【】"]),
    "ext": st.sampled_from(["e" * 257, "\x00", 5, b"e"]),
    "extend": st.sampled_from(["12a", "١٢", "1" * 33, 5, " 1", "+1", "\x00"]),
    "not_before": st.sampled_from(
        [NAIVE, "soon", datetime.max.replace(tzinfo=UTC), date(2030, 1, 1), 5]
    ),
    "expires_at": st.sampled_from(
        [NAIVE, "tomorrow", datetime.min.replace(tzinfo=UTC), date(2030, 1, 1), 5, "past"]
    ),
}


def _pick(
    draw: st.DrawFn, name: str, good: st.SearchStrategy[Any], hostile: Any, call: Call, rate: int
) -> Any:
    """A good value; or, ``rate`` times in a hundred each, a surely bad or a hostile one."""
    roll = draw(st.integers(0, 99))
    if roll < rate:
        call.bad.append(name)
        return draw(BAD[name])
    if roll < 2 * rate:
        call.hostile.append(name)
        return draw(hostile)
    return draw(good)


@st.composite
def calls(draw: st.DrawFn, rate: int = 5) -> Call:
    """Calls near valid input: each argument good, else (``rate`` % each) bad or hostile."""
    call = Call(recipients=[], options={}, single=draw(st.booleans()))
    national = draw(st.booleans())
    if national:  # national numbers with a nationcode of the same country
        nationcode = _pick(
            draw, "nationcode", st.sampled_from(["86", "+86", " 86 "]), HOSTILE_TEXT, call, rate
        )
        good_number: st.SearchStrategy[Any] = CHINA_MOBILE.map(lambda n: n[3:])
        call.options["nationcode"] = nationcode
    else:
        good_number = VALID_NUMBER
    count = 1 if call.single else draw(st.integers(1, 4))
    call.recipients = [
        _pick(draw, "recipients", good_number, NUMBER_LIKE, call, rate) for _ in range(count)
    ]
    if not call.single and draw(st.integers(0, 99)) < rate:  # the container itself is wrong
        call.bad.append("recipients")
        call.recipients = draw(st.sampled_from(["+8613788888888", [], 5, None]))

    kind = _pick(draw, "kind", st.sampled_from(KINDS), ANY_SCALAR, call, rate)
    call.options["kind"] = kind
    if draw(st.integers(0, 9)) < 8:  # a template send
        call.options["template"] = _pick(
            draw, "template", st.integers(1, 2**31 - 1), HOSTILE_INTS, call, rate
        )
        param = CODE_PARAM if kind == VERIFICATION else st.one_of(SAFE_PARAM, CODE_PARAM)
        hostile_params = st.lists(st.one_of(ANY_SCALAR, SAFE_PARAM), max_size=30)
        call.options["params"] = _pick(
            draw, "params", st.lists(param, max_size=6), hostile_params, call, rate
        )
    else:  # a free text send
        # Signed as the gateway wants a mainland text: 【sign】 at its start or its end.
        body = st.text(st.characters(categories=["L", "N", "P"]), min_size=1, max_size=200)
        good_text = st.tuples(SIGN_TEXT, body, st.booleans()).map(
            lambda t: f"【{t[0]}】{t[1]}" if t[2] else f"{t[1]}【{t[0]}】"
        )
        call.options["text"] = _pick(draw, "text", good_text, HOSTILE_TEXT, call, rate)
        if draw(st.integers(0, 99)) < rate:
            call.bad.append("template")  # a text and a template: one too many
            call.options["template"] = draw(st.integers(1, 10**6))
        if draw(st.booleans()):  # params of a text send are ignored, whatever they are
            call.options["params"] = draw(st.lists(ANY_SCALAR, max_size=3))
    call.options["account"] = _pick(
        draw, "account", st.sampled_from([None, ACCOUNT, ""]), ANY_SCALAR, call, rate
    )
    call.options["idempotency_key"] = _pick(
        draw, "idempotency_key", st.none() | st.uuids().map(str), HOSTILE_TEXT, call, rate
    )
    call.options["sign"] = _pick(
        draw, "sign", st.none() | SIGN_TEXT | SIGN_TEXT.map(lambda s: f"【{s}】"), HOSTILE_TEXT,
        call, rate,
    )  # fmt: skip
    call.options["ext"] = _pick(draw, "ext", SAFE_TEXT, HOSTILE_TEXT, call, rate)
    call.options["extend"] = _pick(
        draw, "extend", st.from_regex(r"\A[0-9]{0,32}\Z"), HOSTILE_TEXT, call, rate
    )
    # Times relative to now, away from the publish horizon so which side they fall on is sure.
    now = datetime.now(UTC)
    ahead = st.one_of(
        # Not long past: without expires_at, a verification code's deadline is 5 minutes on.
        st.integers(-60, int(MAX_PUBLISH_DELAY_SECONDS - HORIZON_MARGIN_SECONDS)),
        st.integers(int(MAX_PUBLISH_DELAY_SECONDS + HORIZON_MARGIN_SECONDS), 2 * 86_400),
    )
    good_not_before = st.none() | st.tuples(ahead, OFFSETS).map(
        lambda t: (now + timedelta(seconds=t[0])).astimezone(t[1])
    )
    hostile_times = st.one_of(ANY_SCALAR, st.datetimes(), st.datetimes(timezones=st.just(UTC)))
    not_before = _pick(draw, "not_before", good_not_before, hostile_times, call, rate)
    call.options["not_before"] = not_before
    # A good expires_at comes after a good not_before; a bad or hostile one (up to datetime.max)
    # is no floor: the call is refused for it anyway.
    chosen = "not_before" not in call.bad + call.hostile and isinstance(not_before, datetime)
    floor = max(now, not_before) if chosen else now
    good_expires = st.none() | st.tuples(st.integers(3600, 30 * 86_400), OFFSETS).map(
        lambda t: (floor + timedelta(seconds=t[0])).astimezone(t[1])
    )
    expires_at = _pick(draw, "expires_at", good_expires, hostile_times, call, rate)
    if expires_at == "past":
        expires_at = now - timedelta(minutes=draw(st.integers(1, 10_000)))
    call.options["expires_at"] = expires_at
    # Arguments left out take their defaults.
    for name in draw(
        st.sets(st.sampled_from(["account", "idempotency_key", "sign", "ext", "extend"]))
    ):
        if name not in call.bad and name not in call.hostile:
            del call.options[name]
    return call


def assert_refused_cleanly(harness: Harness, call: Call, error: InvalidInput, before: int) -> None:
    assert error.field in FIELDS or PARAM_FIELD.fullmatch(error.field), error.field
    assert error.problem and str(error) == f"{error.field}: {error.problem}"
    if len(call.bad) == 1 and not call.hostile:
        named = NAMED_BY[call.bad[0]]
        assert error.field in named or error.field.split("[")[0] in named, (call.bad, str(error))
    assert harness.message_count() == before, "a refused call wrote a row"
    assert harness.published == [], "a refused call published a task"


def expected_keys(key: str | None, count: int) -> list[str | None]:
    if key is None:
        return [None] * count
    return [key] if count == 1 else [f"{key}#{index}" for index in range(count)]


def stored_sign(sign: str | None) -> str | None:
    """A sign given as the handset shows it, 【腾讯云】, is stored as its text."""
    if sign and len(sign) >= 2 and sign[0] == "【" and sign[-1] == "】":
        return sign[1:-1]
    return sign


def assert_accepted_validly(harness: Harness, call: Call, results: list[Any], before: int) -> None:
    options = call.options
    assert not call.bad, f"accepted although {call.bad} were invalid: {options}"
    recipients = list(call.recipients)
    assert len(results) == len(recipients)
    created = [result.id for result in results if result.created]
    assert harness.message_count() == before + len(created)
    rows = harness.rows([result.id for result in results])
    assert set(rows) == {result.id for result in results}, "an accepted message has no row"
    keys = expected_keys(options.get("idempotency_key"), len(recipients))
    now = datetime.now(UTC)
    for result, number, key in zip(results, recipients, keys, strict=True):
        row = rows[result.id]
        assert row.idempotency_key == key
        if not result.created:  # the key was used before: the earlier message stands
            continue
        phone = parse_phone(number, options.get("nationcode"))
        assert (row.nationcode, row.mobile) == (phone.nationcode, phone.mobile)
        assert (row.status, row.kind) == (QUEUED, options["kind"])
        assert row.account == (options.get("account") or ACCOUNT)
        if options.get("text") is None:
            expected = [str(param) for param in options.get("params", ())]
            assert (row.tpl_id, row.params, row.content) == (options["template"], expected, None)
            assert all(isinstance(param, str) and len(param) <= 12 for param in row.params)
        else:
            assert (row.tpl_id, row.content) == (None, options["text"])
        assert (row.sign, row.ext, row.extend) == (
            stored_sign(options.get("sign")), options.get("ext", ""), options.get("extend", "")
        )  # fmt: skip
        assert row.not_before == options.get("not_before")
        assert row.expires_at > max(row.created_at, row.not_before or row.created_at)
        if options.get("expires_at") is not None:
            assert row.expires_at == options["expires_at"]
    # Published once committed, unless so far ahead that the sweeper will publish it.
    not_before = options.get("not_before")
    later = (
        not_before is not None and (not_before - now).total_seconds() > MAX_PUBLISH_DELAY_SECONDS
    )
    assert [item[0] for item in harness.published] == ([] if later else created)
    for _, kind, countdown in harness.published:
        assert kind == options["kind"]
        assert countdown is None or 0 < countdown <= MAX_PUBLISH_DELAY_SECONDS


def run_call(harness: Harness, call: Call) -> None:
    before = harness.message_count()
    harness.published.clear()
    try:
        results = call.run(harness.producer)
    except InvalidInput as error:
        event(f"refused: {error.field.split('[')[0]}")
        assert_refused_cleanly(harness, call, error, before)
        return
    event("accepted")
    assert_accepted_validly(harness, call, results, before)


GOOD = {"kind": "notification", "template": 100001, "params": ["482913", "5"]}


@FUZZ
@given(call=calls())
@example(Call(["+8613788888888"], {**GOOD, "sign": "s" * 65}, True, ["sign"]))
@example(Call(["+8613788888888"], {**GOOD, "sign": "腾讯\x00"}, True, ["sign"]))
@example(Call(["+8613788888888"], {**GOOD, "ext": "e" * 257}, True, ["ext"]))
@example(Call(["+8613788888888"], {**GOOD, "extend": "1" * 33}, True, ["extend"]))
@example(Call(["+8613788888888"], {**GOOD, "extend": "١٢"}, True, ["extend"]))
@example(Call(["+8613788888888"], {**GOOD, "template": 2**31}, True, ["template"]))
@example(Call(["+8613788888888"], {**GOOD, "template": 10**5000}, True, ["template"]))
@example(Call(["+8613788888888"], {**GOOD, "params": "123456"}, True, ["params"]))
@example(Call(["+8613788888888"], {**GOOD, "params": [None]}, True, ["params"]))
@example(Call(["+8613788888888"], {**GOOD, "params": [10**5000]}, True, ["params"]))
@example(Call(["+8613788888888"], {**GOOD, "params": ["\ud800"]}, True, ["params"]))
@example(Call(["+8613788888888"], {**GOOD, "idempotency_key": "\ud800"}, True, ["idempotency_key"]))
@example(Call(["+8613788888888"], {**GOOD, "idempotency_key": 5}, True, ["idempotency_key"]))
@example(Call(["+8613788888888"], {**GOOD, "kind": 10**5000}, True, ["kind"]))
@example(Call(["+8613788888888"], {**GOOD, "account": 10**5000}, True, ["account"]))
@example(Call(["+8613788888888"], {**GOOD, "expires_at": "tomorrow"}, True, ["expires_at"]))
@example(
    Call(
        ["+8613788888888"],
        {**GOOD, "not_before": datetime.max.replace(tzinfo=UTC)},
        True,
        ["not_before"],
    )
)
@example(Call([8613788888888], GOOD, True, ["recipients"]))
@example(Call(["13788888888"], {**GOOD, "nationcode": "9" * 5000}, True, ["nationcode"]))
@example(Call(["13788888888"], {**GOOD, "nationcode": 86}, True, ["nationcode"]))
@example(
    Call(
        ["+8613788888888", "+8613788888889"],
        {**GOOD, "idempotency_key": "k" * 127},
        False,
        ["idempotency_key"],
    )
)
@example(Call(["+8613700000001", "not a number", "+8613700000002"], GOOD, False, ["recipients"]))
def test_a_call_is_accepted_validly_or_refused_by_name_writing_nothing(
    harness: Harness, call: Call
) -> None:
    run_call(harness, call)


@FUZZ
@given(call=calls(rate=0))
def test_valid_calls_are_always_accepted(harness: Harness, call: Call) -> None:
    if call.options.get("idempotency_key") is not None:  # one never used, even on a replay
        call.options["idempotency_key"] = uuid.uuid4().hex
    before = harness.message_count()
    harness.published.clear()

    results = call.run(harness.producer)

    assert_accepted_validly(harness, call, results, before)
    assert all(result.created for result in results), "a fresh key was taken as used before"


@fuzz_with(60)
@given(call=calls(rate=3), commit=st.booleans())
def test_in_the_callers_transaction_a_rollback_leaves_nothing(
    harness: Harness, call: Call, commit: bool
) -> None:
    before = harness.message_count()
    harness.published.clear()
    with harness.sessions() as session:
        try:
            results = (
                [harness.producer.enqueue(call.recipients[0], session=session, **call.options)]
                if call.single
                else harness.producer.enqueue_many(call.recipients, session=session, **call.options)
            )
        except InvalidInput as error:
            session.rollback()
            assert_refused_cleanly(harness, call, error, before)
            return
        assert harness.published == [], "published before the caller committed"
        if not commit:
            session.rollback()
            assert harness.message_count() == before
            assert harness.published == []
            return
        session.commit()
    assert_accepted_validly(harness, call, results, before)
