"""One HTTP POST over a pooled keep-alive session, failures sorted by what they mean for a retry.

The v5 API has no idempotency key, so the only question that matters after a failure is
whether the gateway might have received the request: ``NetworkError`` means it cannot have
(DNS, refused, connect timeout: retry freely), ``AmbiguousError`` means it may have (the
request was written and the answer was lost: a retry may deliver the SMS twice).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from http.client import IncompleteRead, RemoteDisconnected

import urllib3
from urllib3.exceptions import (
    ClosedPoolError,
    ConnectTimeoutError,
    HTTPError,
    LocationValueError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ProxyError,
    ReadTimeoutError,
    SSLError,
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
    """A urllib3 pool of keep-alive connections, shared by the threads of one process.

    urllib3 directly rather than through ``requests``: nothing of what ``requests`` adds
    (cookies, auth, environment settings, redirects) applies to these POSTs, and it cost more
    client CPU per request than the exchange itself (bench/RESULTS.md, the client section).
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
        timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)
        # A proxy is configured here, never picked up from the environment.
        self._pools: urllib3.PoolManager = (
            urllib3.ProxyManager(proxy, num_pools=4, maxsize=pool_size, timeout=timeout)
            if proxy
            else urllib3.PoolManager(num_pools=4, maxsize=pool_size, timeout=timeout)
        )

    def post(self, url: str, body: bytes) -> HttpAnswer:
        """POST ``body``; any HTTP status is an answer, only a failed exchange raises."""
        try:
            # No urllib3 retries: whether to try again is the caller's decision, made with the
            # knowledge of whether this failure may have delivered the message.
            response = self._pools.urlopen(
                "POST", url, body=body, headers=HEADERS, retries=False, redirect=False
            )
        except (HTTPError, ValueError) as error:
            raise self._classify(error) from error
        return HttpAnswer(response.status, response.data)

    def close(self) -> None:
        self._pools.clear()

    def __enter__(self) -> HttpTransport:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"HttpTransport(connect_timeout={self.connect_timeout}, "
            f"read_timeout={self.read_timeout})"
        )

    def _classify(self, error: Exception) -> TransportError:
        connect, read = f"{self.connect_timeout:g}s", f"{self.read_timeout:g}s"
        match error:
            # NewConnectionError is a ConnectTimeoutError too (urllib3 keeps it so): first.
            case NameResolutionError():
                return NetworkError("cannot resolve the gateway host")
            case NewConnectionError() if _caused_by(error, ConnectionRefusedError):
                return NetworkError("connection refused")
            case NewConnectionError():
                return NetworkError("cannot connect to the gateway")
            case ConnectTimeoutError():
                return NetworkError(f"connect timeout after {connect}")
            case ReadTimeoutError():
                return AmbiguousError(f"read timeout after {read}")
            case ProxyError():
                return NetworkError("proxy connection failed")
            case SSLError() if _caused_by(error, ssl.SSLCertVerificationError):
                # Refused during the handshake: the request was never written.
                return NetworkError("TLS certificate refused")
            case SSLError():
                return AmbiguousError("TLS error")
            case ClosedPoolError():
                return NetworkError("transport is closed")
            case LocationValueError() | ValueError():
                return NetworkError("invalid URL")
            case ProtocolError():
                return _broken_exchange(error)
        return AmbiguousError(f"unexpected transport failure: {type(error).__name__}")


def _broken_exchange(error: ProtocolError) -> TransportError:
    """The connection broke while the request or its answer was on the wire."""
    # RemoteDisconnected is itself a ConnectionResetError: an orderly close, not a reset.
    if _caused_by(error, RemoteDisconnected):
        return AmbiguousError("connection closed before a complete response")
    if _caused_by(error, IncompleteRead):
        return AmbiguousError("incomplete response")
    if _caused_by(error, ConnectionResetError):
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
