"""The callback receiver under hostile requests, in-process, over both dialects of a real ledger.

The ASGI app is driven by httpx's ASGITransport (an app exception fails the test rather than
becoming a 500), with bodies of random bytes, JSON of every shape, near-valid reports and
replies with odd, huge, missing or mistyped fields, raw JSON oddities (numbers of thousands of
digits, NaN, lone surrogates, deep nesting), wrong content types, streamed and oversized bodies,
and wrong tokens. Every answer is one of:

- 404 ``Not Found`` for a wrong token (what a path that does not exist gets), writing nothing;
- 200 ``{"result": 0, "errmsg": "OK"}``, having stored at most what the body held;
- 400 or 413 ``{"result": 1004, "errmsg": <why>}``, having written nothing.

Never a 5xx. Valid bodies are always taken, and taking one again changes nothing.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from hypothesis import event, example, given
from hypothesis import strategies as st
from sqlalchemy.orm import Session, sessionmaker
from starlette.applications import Starlette

from tests.fixtures.receiver import record_sent, report_rows, row_counts, statuses
from tests.strategies import FUZZ, HOSTILE_TEXT, JSON_VALUES, mostly
from worker.ledger.db import make_engine, session_factory
from worker.ledger.status import DELIVERED, SENT, UNDELIVERED
from worker.receiver import make_receiver_app
from worker.services.reports import MAX_REPLY_TEXT_BYTES

MAX_BODY = 4096  # small, so that the fuzzer reaches the limit
KNOWN_SID = "8:fuzz-known-sid"
KNOWN_MOBILE = "13799990000"
OK = {"result": 0, "errmsg": "OK"}
REFUSED = 1004


@dataclass
class Receiver:
    app: Starlette
    token: str
    sessions: sessionmaker[Session]
    message_id: uuid.UUID  # sent, with KNOWN_SID: reports for it move it
    loop: asyncio.Runner
    client: httpx.AsyncClient

    def post(
        self,
        path: str,
        body: bytes,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        streamed: bool = False,
    ) -> httpx.Response:
        url = f"/callbacks/{self.token if token is None else token}{path}"
        content: bytes | AsyncIterator[bytes] = _chunks(body) if streamed else body
        return self.loop.run(self.client.post(url, content=content, headers=headers or {}))

    def snapshot(self) -> tuple[tuple[int, int, int], str]:
        """Rows of reports, replies and opt-outs; the known message's state."""
        return row_counts(self.sessions), statuses(self.sessions, [self.message_id])[
            self.message_id
        ]


async def _chunks(body: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(body), 1000):
        yield body[start : start + 1000]


@pytest.fixture
def receiver(ledger_url: str) -> Iterator[Receiver]:
    engine = make_engine(ledger_url)
    sessions = session_factory(engine)
    token = secrets.token_urlsafe(24)
    app = make_receiver_app(sessions, token, max_body_bytes=MAX_BODY, metrics=False)
    message_id = record_sent(sessions, KNOWN_MOBILE, KNOWN_SID)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=True)
    with asyncio.Runner() as loop:
        client = httpx.AsyncClient(transport=transport, base_url="http://receiver.test")
        yield Receiver(app, token, sessions, message_id, loop, client)
        loop.run(client.aclose())
    engine.dispose()


# --- bodies ---------------------------------------------------------------------------------


def incompressible(length: int) -> str:
    """ASCII text that compression cannot shrink (a chain of hashes): a long reply's worst case
    for the unique index of sms_replies, whose entries PostgreSQL compresses."""
    text, digest = "", b""
    while len(text) < length:
        digest = hashlib.sha256(digest).digest()
        text += base64.b64encode(digest).decode()
    return text[:length]


@dataclass(frozen=True)
class Raw:
    """JSON text put into a body as is: what json.dumps would never write."""

    text: bytes


RAW_JSON = st.sampled_from(
    [
        Raw(b"1" + b"0" * 5000),  # beyond Python's int-from-text limit
        Raw(b"9" * 4300),
        Raw(b"1e400"),
        Raw(b"-1e400"),
        Raw(b"NaN"),
        Raw(b"Infinity"),
        Raw(b"-0"),
        Raw(b"1714536000.0"),
        Raw(b"1714536000.5"),
        Raw(b"1e308"),
        Raw(b'"\\ud800"'),
        Raw(b'"\\udc00x"'),
        Raw(b'"\\u0000"'),
        Raw(b'"DELIVRD\\u0000"'),
        Raw(b"[" * 3000 + b"]" * 3000),
        Raw(b'{"a": 1, "a": 2}'),
        Raw(b'"' + "字".encode() * 700 + b'"'),
        Raw(json.dumps(incompressible(2800)).encode()),
    ]
)
MISSING = object()


def encode(value: Any, *, ascii_only: bool) -> bytes:
    """JSON bytes of ``value``, with Raw parts as they are and lone surrogates kept (so that
    ``ascii_only=False`` writes bytes that are not UTF-8)."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, list):
        return b"[" + b",".join(encode(item, ascii_only=ascii_only) for item in value) + b"]"
    if isinstance(value, dict):
        members = (
            encode(str(key), ascii_only=ascii_only) + b":" + encode(item, ascii_only=ascii_only)
            for key, item in value.items()
        )
        return b"{" + b",".join(members) + b"}"
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


def beijing(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


PLAIN = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")
REPORT_FIELDS = {
    "user_receive_time": st.datetimes(datetime(1971, 1, 1), datetime(2099, 12, 31)).map(beijing),
    "nationcode": st.one_of(st.sampled_from(["86", "1", "852"]), st.integers(1, 999)),
    "mobile": st.one_of(st.from_regex(r"\A[0-9]{5,15}\Z"), st.integers(10_000, 10**15)),
    "report_status": st.sampled_from(["SUCCESS", "FAIL"]),
    "errmsg": st.one_of(
        st.sampled_from(["DELIVRD", "UNDELIV", "REJECTD", "EXPIRED", "MX:0012", ""]),
        st.text(PLAIN, max_size=64),
    ),
    "description": st.text(PLAIN, max_size=80),
    "sid": st.one_of(st.just(KNOWN_SID), st.text(PLAIN, min_size=1, max_size=64)),
}
REPLY_FIELDS = {
    "mobile": REPORT_FIELDS["mobile"],
    "nationcode": REPORT_FIELDS["nationcode"],
    "text": st.one_of(
        st.sampled_from(["TD", "退订", " stop! ", "好的"]), st.text(PLAIN, max_size=120)
    ),
    "time": st.one_of(st.integers(0, 2**32), st.integers(0, 2**31).map(float)),
    "sign": st.text(PLAIN, max_size=64),
    "extend": st.from_regex(r"\A[0-9]{0,32}\Z"),
}
HOSTILE_VALUE = st.one_of(JSON_VALUES, RAW_JSON, HOSTILE_TEXT, st.just(MISSING))


def items(
    fields: dict[str, st.SearchStrategy[Any]], optional: set[str], *, valid: bool
) -> st.SearchStrategy[Any]:
    """Objects with these fields (the ``optional`` ones sometimes left out): valid ones; or each
    field valid 14 times in 15, else hostile (a value of any JSON type or size, raw JSON, or
    missing), with an unknown field now and then."""

    def field(name: str) -> st.SearchStrategy[Any]:
        good = fields[name] | st.just(MISSING) if name in optional else fields[name]
        if valid:
            return good
        return st.integers(0, 14).flatmap(lambda n: good if n < 14 else HOSTILE_VALUE)

    extra = st.dictionaries(st.text(max_size=6), JSON_VALUES, max_size=2 if not valid else 0)
    shaped = st.tuples(st.fixed_dictionaries({name: field(name) for name in fields}), extra)
    return shaped.map(
        lambda pair: {**pair[1], **{k: v for k, v in pair[0].items() if v is not MISSING}}
    )


VALID_REPORTS = st.lists(items(REPORT_FIELDS, {"description"}, valid=True), min_size=1, max_size=6)
VALID_REPLY = items(REPLY_FIELDS, {"nationcode", "sign", "extend"}, valid=True)
NEAR_BODIES = st.one_of(
    st.lists(items(REPORT_FIELDS, {"description"}, valid=False), min_size=0, max_size=6),
    items(REPLY_FIELDS, {"nationcode", "sign", "extend"}, valid=False),
    st.lists(
        st.one_of(items(REPORT_FIELDS, {"description"}, valid=False), JSON_VALUES), max_size=4
    ),
    st.lists(
        items(REPLY_FIELDS, {"nationcode", "sign", "extend"}, valid=True), min_size=1, max_size=2
    ),  # replies as an array
    VALID_REPORTS.map(lambda reports: reports[0]),  # one report, not in an array
    JSON_VALUES,
    RAW_JSON,
)


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    """Request bodies: mostly JSON near what the routes take, else bytes of any kind."""
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.binary(max_size=300))
    if kind == 1:  # over the size limit, valid JSON or not
        return draw(st.sampled_from([b"[" + b" " * MAX_BODY + b"]", b"x" * (MAX_BODY + 1)]))
    data = encode(draw(NEAR_BODIES), ascii_only=draw(st.booleans()))
    prefix = draw(st.sampled_from([b"", b"", b"", b"\xef\xbb\xbf", b" \n\t", b"\x00"]))
    suffix = draw(st.sampled_from([b"", b"", b"", b"\n", b"]", b"garbage", b"\x00"]))
    if draw(st.integers(0, 9)) == 0:  # the same JSON in an encoding JSON allows
        return (
            (prefix + data + suffix)
            .decode("utf-8", "surrogatepass")
            .encode("utf-16", "surrogatepass")
        )
    return prefix + data + suffix


CONTENT_TYPES = st.sampled_from(
    [
        None,
        "application/json",
        "application/json; charset=utf-8",
        "application/json; charset=gbk",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=xyz",
        "application/octet-stream",
        "",
    ]
)


def wrong_tokens(token: str) -> list[str]:
    return [
        token[:-1],
        token + "x",
        token.upper() if token.upper() != token else token.lower(),
        secrets.token_urlsafe(24),
        "%E2%82%AC" * 8,
        token[::-1],
        "a" * 200,
        f"{token}%00",
    ]


# --- what an answer may be ------------------------------------------------------------------


def assert_clear_answer(
    receiver: Receiver, answer: httpx.Response, before: Any, right_token: bool
) -> str:
    """The answer is one the receiver documents; returns "ok", "refused" or "not found"."""
    assert answer.status_code < 500, answer.text
    assert receiver.token not in answer.text, "the answer gave the token away"
    if not right_token:
        assert (answer.status_code, answer.text) == (404, "Not Found")
        assert receiver.snapshot() == before, "a request under a wrong token wrote something"
        return "not found"
    assert answer.headers["content-type"].startswith("application/json"), answer.headers
    payload = answer.json()
    if answer.status_code == 200:
        assert payload == OK
        return "ok"
    assert answer.status_code in (400, 413), answer.text
    assert payload["result"] == REFUSED
    assert isinstance(payload["errmsg"], str) and payload["errmsg"].strip()
    assert receiver.snapshot() == before, f"a refused body wrote something: {payload}"
    return "refused"


# A reply too long for the unique index of sms_replies: PostgreSQL failed the insert (503, and
# the gateway would have sent it again and again) where it is now refused as input.
LONG_REPLY = encode({"mobile": "1", "text": incompressible(3000), "time": 1}, ascii_only=True)
YEAR_ONE = encode(
    [{"sid": "s", "mobile": "1", "nationcode": "86", "report_status": "FAIL", "errmsg": "x",
      "user_receive_time": "0001-01-01 00:00:00"}],
    ascii_only=True,
)  # fmt: skip


@FUZZ
@given(
    body=bodies(),
    path=st.sampled_from(["/status", "/reply", ""]),
    content_type=CONTENT_TYPES,
    streamed=st.integers(0, 4).map(lambda n: n == 0),
    wrong_token=mostly(st.none(), st.integers(0, len(wrong_tokens("x")) - 1), in_ten=8),
)
@example(body=LONG_REPLY, path="", content_type=None, streamed=False, wrong_token=None)
@example(body=b"[" * 50_000, path="/status", content_type=None, streamed=False, wrong_token=None)
@example(body=YEAR_ONE, path="", content_type=None, streamed=True, wrong_token=None)
def test_any_request_gets_a_clear_answer_and_a_refusal_writes_nothing(
    receiver: Receiver, body: bytes, path: str, content_type: str | None, streamed: bool,
    wrong_token: int | None,
) -> None:  # fmt: skip
    right_token = wrong_token is None
    token = receiver.token if wrong_token is None else wrong_tokens(receiver.token)[wrong_token]
    headers = {"content-type": content_type} if content_type is not None else {}
    before = receiver.snapshot()

    answer = receiver.post(path, body, token=token, headers=headers, streamed=streamed)

    outcome = assert_clear_answer(receiver, answer, before, right_token)
    event(f"{outcome} {answer.status_code}")
    if outcome != "ok":
        return
    (reports, replies, opt_outs), _ = receiver.snapshot()
    data = json.loads(body)
    if isinstance(data, list):  # delivery reports, stored once each at most
        assert 0 <= reports - before[0][0] <= len(data)
        assert (replies, opt_outs) == before[0][1:]
    else:  # one reply, and maybe its number opted out
        assert reports == before[0][0]
        assert 0 <= replies - before[0][1] <= 1 and 0 <= opt_outs - before[0][2] <= 1


LONGEST_REPLY = {"mobile": "13788888888", "text": incompressible(MAX_REPLY_TEXT_BYTES), "time": 1}


@FUZZ
@given(
    body=st.one_of(VALID_REPORTS, VALID_REPLY),
    routed=st.booleans(),
    ascii_only=st.booleans(),
)
@example(body=LONGEST_REPLY, routed=True, ascii_only=False)
def test_a_valid_body_is_taken_and_taking_it_again_changes_nothing(
    receiver: Receiver, body: Any, routed: bool, ascii_only: bool
) -> None:
    is_status = isinstance(body, list)
    path = ("/status" if is_status else "/reply") if routed else ""
    data = encode(body, ascii_only=ascii_only)
    before = receiver.snapshot()

    first = receiver.post(path, data)
    after_first = receiver.snapshot()
    again = receiver.post(path, data)

    assert (first.status_code, first.json()) == (200, OK), first.text
    assert (again.status_code, again.json()) == (200, OK), again.text
    assert receiver.snapshot() == after_first, "a body taken again stored more"
    (reports, replies, _), state = after_first
    if is_status:
        keys = {(r["sid"], r["report_status"], r["errmsg"], r["user_receive_time"]) for r in body}
        assert reports - before[0][0] <= len(keys) and replies == before[0][1]
        known = [r["report_status"] for r in body if r["sid"] == KNOWN_SID]
        if "SUCCESS" in known:
            assert state == DELIVERED
        elif known:
            assert state in (UNDELIVERED, DELIVERED)  # delivered by an earlier SUCCESS
        else:
            assert state == before[1]
    else:
        assert reports == before[0][0] and replies - before[0][1] <= 1
        assert state == before[1]
    assert state in (SENT, DELIVERED, UNDELIVERED)


def test_the_clock_of_a_report_is_read_as_beijing_time(receiver: Receiver) -> None:
    """A sanity check that the fuzzed path stores what it says: one report, read back."""
    report = {
        "user_receive_time": "2024-05-01 20:00:00", "nationcode": "86", "mobile": KNOWN_MOBILE,
        "report_status": "SUCCESS", "errmsg": "DELIVRD", "sid": KNOWN_SID,
    }  # fmt: skip
    answer = receiver.post("/status", json.dumps([report]).encode())
    assert answer.json() == OK
    (row,) = report_rows(receiver.sessions)
    assert row.user_receive_time == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert row.message_id == receiver.message_id
    assert statuses(receiver.sessions, [receiver.message_id]) == {receiver.message_id: DELIVERED}
