"""The SMS client: sign a request, send it once, and say what the answer means.

Preparing and executing are separate steps so that a caller can record a request (its
``random`` and ``time``) before spending it, and so that every retry is a new request with a
fresh signature: the gateway refuses a ``time`` more than 10 minutes old (1021).
``execute`` never raises for what the gateway or the network does; it returns an ``Exchange``
whose ``outcome`` (from ``codes``) tells the caller whether and how to try again.
"""

from __future__ import annotations

import secrets
import time as clock_module
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from types import TracebackType
from typing import Protocol, TypeVar
from urllib.parse import quote, urlsplit

from worker.tencent import wire
from worker.tencent.codes import Outcome, classify_http_status, classify_result, code_info
from worker.tencent.rules import InvalidInput, check_group
from worker.tencent.signing import sign
from worker.tencent.transport import HttpTransport, NetworkError, TransportError
from worker.tencent.types import (
    API_PREFIX,
    BEIJING,
    DEFAULT_GATEWAY_URL,
    MAX_PULL,
    Api,
    Content,
    GroupSendResult,
    Phone,
    PullResult,
    SendResult,
    SendStats,
)

# The documentation's example `random` has 10 digits; always 10 keeps requests uniform.
RANDOM_FLOOR, RANDOM_SPAN = 10**9, 9 * 10**9

Answer = TypeVar("Answer", PullResult, SendStats)
# What one attempt came to: outcome, error, HTTP status, parsed response.
Attempt = tuple[Outcome, str, int | None, SendResult | GroupSendResult | None]


class BodyBuilder(Protocol):
    def __call__(self, *, sig: str, time: int) -> wire.Body: ...


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """A request ready to go: ``sdkappid`` and ``random`` in its URL, the signature in its body."""

    api: Api
    url: str
    body: bytes
    random: int
    time: int
    phones: tuple[Phone, ...]


@dataclass(frozen=True, slots=True)
class Exchange:
    """One HTTP attempt, whatever happened."""

    request: SignedRequest
    outcome: Outcome
    http_status: int | None
    response: SendResult | GroupSendResult | None  # None: no answer, or an unreadable one
    error: str  # "" on success; otherwise short and safe to log
    started_at: datetime
    finished_at: datetime

    @property
    def latency_ms(self) -> float:
        return (self.finished_at - self.started_at) / timedelta(milliseconds=1)

    def results(self) -> tuple[SendResult, ...]:
        """One result per number: the single send's, or the group's ``detail``."""
        if isinstance(self.response, GroupSendResult):
            return self.response.detail
        if isinstance(self.response, SendResult):
            return (self.response,)
        return ()


class GatewayError(Exception):
    """A pull or statistics call that did not succeed; ``result`` is None when no answer came."""

    def __init__(self, result: int | None, errmsg: str, outcome: Outcome | None = None) -> None:
        if outcome is None:
            outcome = classify_result(result) if result is not None else Outcome.TRANSIENT
        super().__init__(result, errmsg, outcome)  # all of them, so that it pickles
        self.result = result
        self.errmsg = errmsg
        self.outcome = outcome

    def __str__(self) -> str:
        return self.errmsg if self.result is None else f"result {self.result}: {self.errmsg}"


class SmsClient:
    """A v5 SMS account. Thread-safe: one client (one connection pool) per process is enough."""

    __slots__ = (
        "_appkey",
        "_clock",
        "_owns_transport",
        "_transport",
        "_urls",
        "base_url",
        "sdkappid",
    )

    def __init__(
        self,
        sdkappid: str,
        appkey: str,
        base_url: str = DEFAULT_GATEWAY_URL,
        *,
        connect_timeout: float = 3.05,
        read_timeout: float = 10.0,
        pool_size: int = 32,
        transport: HttpTransport | None = None,
        clock: Callable[[], float] = clock_module.time,
    ) -> None:
        """``transport``: a shared pool, used instead of one built from the timeouts and size.
        ``clock``: Unix seconds for the signed ``time`` (the gateway refuses 10 minutes off)."""
        if not sdkappid or not appkey:
            raise ValueError("sdkappid and appkey are both required")
        self.sdkappid = str(sdkappid)
        self.base_url = _checked_base_url(base_url)
        self._appkey = appkey
        self._clock = clock
        self._owns_transport = transport is None
        if transport is None:
            transport = HttpTransport(
                connect_timeout=connect_timeout, read_timeout=read_timeout, pool_size=pool_size
            )
        self._transport = transport
        query = f"?sdkappid={quote(self.sdkappid, safe='')}&random="
        self._urls = {api: f"{self.base_url}{API_PREFIX}{api}{query}" for api in Api}

    # --- sends -----------------------------------------------------------------------------

    def prepare_send(
        self, phone: Phone, content: Content, *, ext: str = "", extend: str = ""
    ) -> SignedRequest:
        """``sendsms`` for a domestic number, ``sendisms`` (E.164 ``tel``) for any other."""
        random, now = self._fresh()
        if phone.domestic:
            sig = sign(self._appkey, random, now, mobiles=(phone.mobile,))
            body = wire.sendsms_body(phone, content, sig=sig, time=now, ext=ext, extend=extend)
            api = Api.SENDSMS
        else:
            sig = sign(self._appkey, random, now, tel=phone.e164)
            body = wire.sendisms_body(phone, content, sig=sig, time=now, ext=ext, extend=extend)
            api = Api.SENDISMS
        return self._signed(api, body, random, now, (phone,))

    def prepare_group(
        self, phones: Sequence[Phone], content: Content, *, ext: str = "", extend: str = ""
    ) -> SignedRequest:
        """``sendmultisms2``: 1..200 numbers, all domestic or all international, no repeats."""
        check_group(phones)
        random, now = self._fresh()
        sig = sign(self._appkey, random, now, mobiles=[phone.mobile for phone in phones])
        body = wire.sendmultisms2_body(phones, content, sig=sig, time=now, ext=ext, extend=extend)
        return self._signed(Api.SENDMULTISMS2, body, random, now, tuple(phones))

    def execute(self, request: SignedRequest) -> Exchange:
        """Exactly one HTTP call; its outcome read from this answer alone (``codes``)."""
        # Stamped on the client's clock, the one its requests are signed with (the worker's).
        started_at = datetime.fromtimestamp(self._clock(), UTC)
        outcome, error, status, response = self._attempt(request)
        finished_at = datetime.fromtimestamp(self._clock(), UTC)
        return Exchange(request, outcome, status, response, error, started_at, finished_at)

    def send(self, phone: Phone, content: Content, *, ext: str = "", extend: str = "") -> Exchange:
        return self.execute(self.prepare_send(phone, content, ext=ext, extend=extend))

    def send_group(
        self, phones: Sequence[Phone], content: Content, *, ext: str = "", extend: str = ""
    ) -> Exchange:
        return self.execute(self.prepare_group(phones, content, ext=ext, extend=extend))

    # --- pulls and statistics: not sends, so a failure simply raises ------------------------

    def pull_status(self, *, replies: bool = False, max_items: int = MAX_PULL) -> PullResult:
        """Drain up to ``max_items`` reports (or replies) from the gateway's consume-once queue."""
        _check_max_items(max_items)
        builder = partial(wire.pullstatus_body, replies=replies, max_items=max_items)
        body = self._query(Api.PULLSTATUS, builder)
        return _successful(_read(wire.parse_pull, body, replies=replies))

    def pull_status_for_mobile(
        self,
        phone: Phone,
        begin: datetime,
        end: datetime,
        *,
        replies: bool = False,
        max_items: int = MAX_PULL,
    ) -> PullResult:
        """Reports (or replies) of one number between ``begin`` and ``end`` (aware datetimes)."""
        _check_max_items(max_items)
        begin_time, end_time = _unix_seconds(begin, "begin"), _unix_seconds(end, "end")
        if begin_time > end_time:
            raise InvalidInput("begin_time", "is after end_time")
        builder = partial(
            wire.pullstatus4mobile_body,
            phone,
            begin_time=begin_time,
            end_time=end_time,
            replies=replies,
            max_items=max_items,
        )
        body = self._query(Api.PULLSTATUS4MOBILE, builder)
        return _successful(_read(wire.parse_pull, body, replies=replies))

    def pull_send_stats(self, begin: datetime, end: datetime) -> SendStats:
        """Requests, successes and billed segments for the hours from ``begin`` to ``end``.

        The gateway counts in Beijing hours (``yyyymmddhh``); aware datetimes are converted.
        """
        begin_date, end_date = _beijing_hour(begin, "begin"), _beijing_hour(end, "end")
        if begin_date > end_date:
            raise InvalidInput("begin_date", "is after end_date")
        builder = partial(wire.pullsendstatus_body, begin_date=begin_date, end_date=end_date)
        body = self._query(Api.PULLSENDSTATUS, builder)
        return _successful(_read(wire.parse_send_stats, body))

    # --- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection pool, unless it was handed in (then its owner closes it)."""
        if self._owns_transport:
            self._transport.close()

    def __enter__(self) -> SmsClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SmsClient(sdkappid={self.sdkappid!r}, base_url={self.base_url!r})"

    # --- internals -----------------------------------------------------------------------------

    def _fresh(self) -> tuple[int, int]:
        return RANDOM_FLOOR + secrets.randbelow(RANDOM_SPAN), int(self._clock())

    def _signed(
        self, api: Api, body: wire.Body, random: int, now: int, phones: tuple[Phone, ...]
    ) -> SignedRequest:
        url = f"{self._urls[api]}{random}"
        return SignedRequest(api, url, wire.encode(body), random, now, phones)

    def _attempt(self, request: SignedRequest) -> Attempt:
        try:
            answer = self._transport.post(request.url, request.body)
        except NetworkError as failure:
            return Outcome.NETWORK, str(failure), None, None
        except TransportError as failure:
            return Outcome.AMBIGUOUS, str(failure), None, None
        status = answer.status
        if status != 200:
            return classify_http_status(status), f"HTTP {status}", status, None
        try:
            response = _parse_send_answer(request, answer.body)
        except wire.MalformedResponse as malformed:
            return Outcome.TRANSIENT, str(malformed), status, None
        outcome = classify_result(response.result)
        error = (
            "" if response.result == 0 else response.errmsg or code_info(response.result).meaning
        )
        return outcome, error, status, response

    def _query(self, api: Api, build: BodyBuilder) -> bytes:
        """One signed call of an API that names no recipient; the 200 answer's body."""
        random, now = self._fresh()
        body = build(sig=sign(self._appkey, random, now), time=now)
        try:
            answer = self._transport.post(f"{self._urls[api]}{random}", wire.encode(body))
        except NetworkError as failure:
            raise GatewayError(None, f"{api}: {failure}", outcome=Outcome.NETWORK) from None
        except TransportError as failure:
            raise GatewayError(None, f"{api}: {failure}", outcome=Outcome.AMBIGUOUS) from None
        if answer.status != 200:
            raise GatewayError(
                None, f"{api}: HTTP {answer.status}", outcome=classify_http_status(answer.status)
            )
        return answer.body


def _parse_send_answer(request: SignedRequest, body: bytes) -> SendResult | GroupSendResult:
    if request.api is Api.SENDMULTISMS2:
        return wire.parse_group(body)
    # A single send's answer does not repeat the number; fill it in so results() are complete.
    phone = request.phones[0]
    result = wire.parse_send(body)
    return replace(
        result,
        nationcode=result.nationcode or phone.nationcode,
        mobile=result.mobile or phone.mobile,
    )


def _read(parse: Callable[..., Answer], body: bytes, **options: bool) -> Answer:
    try:
        return parse(body, **options)
    except wire.MalformedResponse as malformed:
        raise GatewayError(None, str(malformed)) from None


def _successful(answer: Answer) -> Answer:
    if answer.result != 0:
        raise GatewayError(answer.result, answer.errmsg or code_info(answer.result).meaning)
    return answer


def _check_max_items(max_items: int) -> None:
    if not 1 <= max_items <= MAX_PULL:
        raise InvalidInput("max", f"{max_items} is outside 1..{MAX_PULL}")


def _unix_seconds(moment: datetime, name: str) -> int:
    if moment.tzinfo is None:
        raise InvalidInput(name, "must be a timezone-aware datetime")
    return int(moment.timestamp())


def _beijing_hour(moment: datetime, name: str) -> int:
    if moment.tzinfo is None:
        raise InvalidInput(name, "must be a timezone-aware datetime")
    return int(moment.astimezone(BEIJING).strftime("%Y%m%d%H"))


def _checked_base_url(base_url: str) -> str:
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ValueError(f"base_url must be an http(s) URL without a query, got {base_url!r}")
    return base_url.rstrip("/")
