"""The simulator as one ASGI app: the gateway under ``/v5/``, the control API under ``/_sim/``.

The gateway path is a raw ASGI callable, no framework routing: it is the hot path, and cutting a
TCP connection (the ``drop`` faults) needs the server's transport, which only the raw ``send``
callable leads to.
"""

from __future__ import annotations

import asyncio
import json
from contextlib import suppress
from http import HTTPStatus
from urllib.parse import unquote

from starlette.types import Receive, Scope, Send

from worker.simulator.config import SimulatorConfig, default_config
from worker.simulator.control_api import build_control_app
from worker.simulator.faults import StepKind
from worker.simulator.handlers import Gateway
from worker.simulator.reports import ReportCenter
from worker.simulator.state import SimulatorState
from worker.tencent.types import API_PREFIX

_JSON_HEADERS = [(b"content-type", b"application/json; charset=utf-8")]
_TEXT_HEADERS = [(b"content-type", b"text/plain; charset=utf-8")]
_DRAIN_FACTOR = 64  # past max_body_bytes * this, stop reading and close the connection


class SimulatorApp:
    def __init__(
        self, config: SimulatorConfig | None = None, *, control_token: str | None = None
    ) -> None:
        """``control_token``: the bearer token the control API requires (None: none)."""
        self.config = config or default_config()
        self.state = SimulatorState(self.config)
        self.reports = ReportCenter(self.config.reports, self.state.clock, self.config.log_limit)
        self.gateway = Gateway(self.state, self.reports)
        self.control = build_control_app(self.state, self.reports, token=control_token)
        self._started = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            if scope["path"].startswith(API_PREFIX):
                await self._gateway(scope, receive, send)
            else:
                await self.control(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _gateway(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._started:  # a server without lifespan support still gets reports
            self._start()
        if scope["method"] != "POST":
            await _respond(send, 405, _status_text(405), _TEXT_HEADERS)
            return
        try:
            body = await _read_body(receive, self.config.max_body_bytes)
        except _ClientGone:
            return
        sdkappid, random = _query(scope["query_string"])
        api = scope["path"][len(API_PREFIX) :]
        answer = self.gateway.handle(api, sdkappid, random, body)
        if answer.latency:
            await asyncio.sleep(answer.latency)
        after = answer.after
        if after is not None:
            if after.kind in (StepKind.DROP, StepKind.DROP_AFTER):
                await _drop_connection(receive, send)
                return
            if after.kind is StepKind.SLOW:
                await asyncio.sleep(after.value)
        if answer.payload is None:
            await _respond(send, answer.status, _status_text(answer.status), _TEXT_HEADERS)
            return
        encoded = json.dumps(answer.payload, ensure_ascii=False, separators=(",", ":"))
        await _respond(
            send, answer.status, encoded.encode("utf-8"), _JSON_HEADERS, close=body is None
        )

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.reports.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _start(self) -> None:
        self._started = True
        self.reports.start()


def create_app(
    config: SimulatorConfig | None = None, *, control_token: str | None = None
) -> SimulatorApp:
    return SimulatorApp(config, control_token=control_token)


class _ClientGone(Exception):
    """The client disconnected before its request body was complete."""


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The request body, or None when it is larger than ``limit`` (read on and discarded, up to
    a point, so the client still gets its 1004 rather than a reset)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
        elif size > limit * _DRAIN_FACTOR:
            return None
        if not message.get("more_body", False):
            break
    if size > limit:
        return None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _query(query_string: bytes) -> tuple[str, str]:
    sdkappid = random = ""
    for part in query_string.split(b"&"):
        key, _, value = part.partition(b"=")
        if key == b"sdkappid":
            sdkappid = unquote(value.decode("utf-8", "replace"))
        elif key == b"random":
            random = unquote(value.decode("utf-8", "replace"))
    return sdkappid, random


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]], *, close: bool = False
) -> None:
    extra = [(b"content-length", str(len(body)).encode())]
    if close:
        extra.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers + extra})
    await send({"type": "http.response.body", "body": body})


async def _drop_connection(receive: Receive, send: Send) -> None:
    """Cut the TCP connection without an answer, as a crashed gateway or a proxy reset would.

    uvicorn's ``send`` is a bound method of its request cycle, which holds the transport. Any
    other server gets a response that promises more body than it ever sends.
    """
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is not None and hasattr(transport, "abort"):
        transport.abort()
        # Let the server notice the disconnect, so it does not try to answer in our place.
        with suppress(TimeoutError):
            await asyncio.wait_for(receive(), 1.0)
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [*_JSON_HEADERS, (b"content-length", b"1024")],
        }
    )
    await send({"type": "http.response.body", "body": b"{", "more_body": True})


def _status_text(status: int) -> bytes:
    try:
        return f"{status} {HTTPStatus(status).phrase}".encode()
    except ValueError:
        return str(status).encode()
