"""One HTTP POST over a pooled keep-alive session, failures sorted by what they mean for a retry.

The v5 API has no idempotency key, so the only question that matters after a failure is
whether the gateway might have received the request: ``NetworkError`` means it cannot have
(DNS, refused, connect timeout: retry freely), ``AmbiguousError`` means it may have (the
request was written and the answer was lost: a retry may deliver the SMS twice).
"""

from __future__ import annotations

from dataclasses import dataclass
from http.client import RemoteDisconnected
from http.cookiejar import DefaultCookiePolicy

import requests
from requests import exceptions as errors
from requests.adapters import HTTPAdapter
from urllib3.exceptions import (
    ClosedPoolError,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ReadTimeoutError,
)

HEADERS = {"Content-Type": "application/json; charset=utf-8", "Accept": "application/json"}


class TransportError(Exception):
    """The HTTP exchange failed; the message names what happened and never carries a secret."""


class NetworkError(TransportError):
    """The request never reached the gateway: a retry cannot duplicate it."""


class AmbiguousError(TransportError):
    """The request may have reached the gateway: a retry may duplicate it."""


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    status: int
    body: bytes


class HttpTransport:
    """A ``requests.Session`` shared by the threads of one process.

    Nothing in the session changes per request (no cookies, no environment lookups), which is
    what makes sharing it safe, and what keeps a call to the cost of the exchange itself.
    """

    def __init__(
        self,
        *,
        connect_timeout: float = 3.05,
        read_timeout: float = 10.0,
        pool_size: int = 32,
        proxy: str | None = None,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._session = requests.Session()
        # A proxy is configured here, not picked up from the environment on every call.
        self._session.trust_env = False
        if proxy is not None:
            self._session.proxies = {"http": proxy, "https": proxy}
        self._session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
        # No urllib3 retries: whether to try again is the caller's decision, made with the
        # knowledge of whether this failure may have delivered the message.
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    def post(self, url: str, body: bytes) -> HttpAnswer:
        """POST ``body``; any HTTP status is an answer, only a failed exchange raises."""
        # Prepared by hand: Session.post would merge cookies, hooks, auth and environment
        # settings on every call, none of which this session has (about a third of its cost).
        request = requests.PreparedRequest()
        try:
            request.prepare(method="POST", url=url, headers=HEADERS, data=body)
            response = self._session.send(
                request,
                timeout=(self.connect_timeout, self.read_timeout),
                allow_redirects=False,
                proxies=self._session.proxies,
            )
        except errors.RequestException as error:
            raise self._classify(error) from error
        return HttpAnswer(response.status_code, response.content)

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> HttpTransport:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"HttpTransport(connect_timeout={self.connect_timeout}, "
            f"read_timeout={self.read_timeout})"
        )

    def _classify(self, error: errors.RequestException) -> TransportError:
        connect, read = f"{self.connect_timeout:g}s", f"{self.read_timeout:g}s"
        inner = error.args[0] if error.args else None
        before_sending = isinstance(inner, MaxRetryError)  # urllib3 failed to connect
        if isinstance(inner, MaxRetryError):
            inner = inner.reason
        match error:
            case errors.ConnectTimeout():
                return NetworkError(f"connect timeout after {connect}")
            case errors.ReadTimeout():
                return AmbiguousError(f"read timeout after {read}")
            case errors.ProxyError():
                return NetworkError("proxy connection failed")
            case errors.SSLError():
                if before_sending:
                    return NetworkError("TLS handshake failed")
                return AmbiguousError("TLS error while reading the response")
            case errors.ChunkedEncodingError() | errors.ContentDecodingError():
                return AmbiguousError("incomplete response")
            case errors.InvalidURL() | errors.MissingSchema() | errors.InvalidSchema():
                return NetworkError("invalid URL")
            case errors.InvalidHeader():
                return NetworkError("invalid request header")
            case errors.ConnectionError():
                return _connection_failure(inner, read)
        return AmbiguousError(f"unexpected transport failure: {type(error).__name__}")


def _connection_failure(inner: object, read_timeout: str) -> TransportError:
    match inner:
        case NameResolutionError():
            return NetworkError("cannot resolve the gateway host")
        case NewConnectionError() if isinstance(inner.__cause__, ConnectionRefusedError):
            return NetworkError("connection refused")
        case NewConnectionError():
            return NetworkError("cannot connect to the gateway")
        case ClosedPoolError():
            return NetworkError("transport is closed")
        case ReadTimeoutError():
            return AmbiguousError(f"read timeout after {read_timeout}")
    # RemoteDisconnected is itself a ConnectionResetError: an orderly close, not a reset.
    if _caused_by(inner, RemoteDisconnected):
        return AmbiguousError("connection closed before a complete response")
    if _caused_by(inner, ConnectionResetError):
        return AmbiguousError("connection reset after the request was sent")
    return AmbiguousError("connection closed before a complete response")


def _caused_by(error: object, kind: type[BaseException]) -> bool:
    """Whether ``kind`` appears among the args or causes of ``error`` (urllib3 nests them)."""
    pending, seen = [error], 0
    while pending and seen < 16:
        current = pending.pop()
        seen += 1
        if isinstance(current, kind):
            return True
        if isinstance(current, BaseException):
            pending.extend(a for a in current.args if isinstance(a, BaseException))
            if current.__cause__ is not None:
                pending.append(current.__cause__)
    return False
