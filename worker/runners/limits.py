"""Limits that keep a slow or idle client from holding an ASGI server: connections and read time.

uvicorn alone leaves three holes: a connection that never sends a byte stays open for good (its
keep-alive timer is armed only after a response); a request whose headers trickle in a byte at
a time is never timed out (any byte cancels the timer); and nothing bounds how long a body may
take. ``limit_concurrency`` does not help: the connection is still accepted and held, and only
answered 503 once its headers are complete. So:

- ``max_connections``: a connection beyond it is answered 503 and closed at once;
- ``idle_timeout``: a connection with no request in progress (new, or between keep-alive
  requests) is closed after this many seconds;
- ``read_timeout``: a request's headers must be complete this many seconds after its first
  byte (else 408 and close), and, separately, its whole body within this many seconds after the
  headers (``BodyDeadline``: 408 and close, the application sees a disconnect); the unread rest
  of a body answered early (413) must also have arrived by then, or the connection is closed;
- ``max_header_bytes``: a request line and headers larger than this are answered 431 and
  closed, never buffered further.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

DEFAULT_MAX_CONNECTIONS = 200
DEFAULT_IDLE_TIMEOUT = 5.0
DEFAULT_READ_TIMEOUT = 10.0
DEFAULT_MAX_HEADER_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class ServerLimits:
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT  # seconds
    read_timeout: float = DEFAULT_READ_TIMEOUT  # seconds, for the headers and for the body
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES

    def __post_init__(self) -> None:
        if not 1 <= self.max_connections <= 1_000_000:
            raise ValueError("max_connections must be a whole number from 1 to 1000000")
        for name in ("idle_timeout", "read_timeout"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0 < value <= 3600):
                raise ValueError(f"{name} must be a number of seconds above 0, at most 3600")
        if not 1024 <= self.max_header_bytes <= 1 << 20:
            raise ValueError("max_header_bytes must be from 1024 to 1048576")


def _answer(status: str, text: str) -> bytes:
    body = text.encode("ascii")
    head = (
        f"HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


_TOO_MANY = _answer("503 Service Unavailable", "too many connections; try again later")
_HEADERS_TOO_SLOW = _answer("408 Request Timeout", "the request headers took too long")
_HEADERS_TOO_LARGE = _answer(
    "431 Request Header Fields Too Large", "the request headers are too large"
)
_BODY_TOO_SLOW = b"the request body took too long"


class _Limited:
    """Mixed into uvicorn's protocol classes; uses only what both of them keep: ``cycle``,
    ``connections``, ``loop``, ``transport`` and the keep-alive timer."""

    limits: ServerLimits
    # uvicorn's attributes, for the type checker (the protocol class provides them).
    cycle: Any
    connections: set[Any]
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    timeout_keep_alive: float
    timeout_keep_alive_task: asyncio.TimerHandle | None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Between requests too: uvicorn takes whole seconds, the limit may be a fraction.
        self.timeout_keep_alive = self.limits.idle_timeout
        self._read_timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        if len(self.connections) > self.limits.max_connections:
            transport.write(_TOO_MANY)
            transport.close()
            return
        # A connection that never sends a byte is idle from the start.
        self._arm_idle_timer()

    def data_received(self, data: bytes) -> None:
        before = self.cycle
        was_waiting = self._awaiting_headers()
        super().data_received(data)  # type: ignore[misc]
        if self.transport.is_closing() or self.cycle is not before:
            # Closed, or a request's headers are complete: the body has BodyDeadline.
            self._stop_read_timer()
        elif self._awaiting_headers():
            if not was_waiting:
                # The rest of an answered request's body ended here: idle until the next one.
                self._stop_read_timer()
                self._arm_idle_timer()
                return
            self._header_bytes += len(data)
            if self._header_bytes > self.limits.max_header_bytes:
                self._stop_read_timer()
                self._refuse(_HEADERS_TOO_LARGE)
            elif self._read_timer is None:
                self._read_timer = self.loop.call_later(
                    self.limits.read_timeout, self._refuse, _HEADERS_TOO_SLOW
                )
        elif self.cycle.response_complete and self._read_timer is None:
            # Answered before its body was read (413, 401...): uvicorn reads on and drops the
            # rest, which must not trickle in for ever either.
            self._read_timer = self.loop.call_later(self.limits.read_timeout, self._refuse, b"")

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_read_timer()
        super().connection_lost(exc)  # type: ignore[misc]

    def _awaiting_headers(self) -> bool:
        """No request in progress, and none still sending the body of an answered request."""
        cycle = self.cycle
        return cycle is None or (cycle.response_complete and not cycle.more_body)

    def _arm_idle_timer(self) -> None:
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
        self.timeout_keep_alive_task = self.loop.call_later(
            self.limits.idle_timeout, self._close_idle
        )

    def _stop_read_timer(self) -> None:
        self._header_bytes = 0
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _refuse(self, answer: bytes) -> None:
        self._read_timer = None
        if not self.transport.is_closing():
            if answer:
                self.transport.write(answer)
            self.transport.close()

    def _close_idle(self) -> None:
        self.timeout_keep_alive_task = None
        if not self.transport.is_closing():
            self.transport.close()


def protocol_class(limits: ServerLimits, *, httptools: bool) -> type[Any]:
    """uvicorn's HTTP protocol (httptools' or h11's) with ``limits`` applied."""
    base: type[Any] = HttpToolsProtocol if httptools else H11Protocol
    return type(f"Limited{base.__name__}", (_Limited, base), {"limits": limits})


class BodyDeadline:
    """ASGI middleware: the whole body of a request arrives within ``seconds`` of its headers.

    Past the deadline the client gets 408 with ``connection: close`` and the application's
    next ``receive`` returns ``http.disconnect``; whatever it answers afterwards is dropped.
    """

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline = asyncio.get_running_loop().time() + self.seconds
        exchange = _Exchange(receive, send, deadline)
        await self.app(scope, exchange.receive, exchange.send)


class _Exchange:
    """One request's ``receive`` and ``send`` under a body deadline.

    ``send`` stays a bound method with a ``transport``, as uvicorn's is: the simulator's
    connection-cutting faults reach the transport that way."""

    def __init__(self, receive: Receive, send: Send, deadline: float) -> None:
        self._receive = receive
        self._send = send
        self._deadline = deadline
        self._body_done = False
        self._timed_out = False
        self._started = False

    @property
    def transport(self) -> Any:
        return getattr(getattr(self._send, "__self__", None), "transport", None)

    async def receive(self) -> Message:
        if self._timed_out:
            return {"type": "http.disconnect"}
        if self._body_done:
            return await self._receive()
        try:
            async with asyncio.timeout_at(self._deadline):
                message = await self._receive()
        except TimeoutError:
            self._timed_out = True
            if not self._started:
                self._started = True
                await self._send_timeout()
            return {"type": "http.disconnect"}
        if message["type"] != "http.request" or not message.get("more_body", False):
            self._body_done = True
        return message

    async def send(self, message: Message) -> None:
        if self._timed_out:
            return  # the 408 went out in the application's place
        if message["type"] == "http.response.start":
            self._started = True
        await self._send(message)

    async def _send_timeout(self) -> None:
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(_BODY_TOO_SLOW)).encode()),
            (b"connection", b"close"),
        ]
        await self._send({"type": "http.response.start", "status": 408, "headers": headers})
        await self._send({"type": "http.response.body", "body": _BODY_TOO_SLOW})
