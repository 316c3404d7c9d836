"""The callback receiver: an ASGI app taking the gateway's delivery reports and replies.

    POST /callbacks/{token}/status   a JSON array of delivery reports
    POST /callbacks/{token}/reply    one JSON object, a handset's reply
    POST /callbacks/{token}          either, told apart by the body's shape
    GET  /healthz
    GET  /metrics                    Prometheus metrics (no token; off with metrics=False)

The gateway does not sign its callbacks, so the secret is the ``token`` in the path (compared in
constant time); a wrong one gets the same 404 as a path that does not exist. Bodies are read
at most ``max_body_bytes`` (413 beyond), and a body that cannot be stored whole is refused with
400 and ``{"result": 1004, "errmsg": ...}`` naming the field and item, before anything is
written. Success is the gateway's ``{"result": 0, "errmsg": "OK"}``. Every refused callback
(a wrong token, a POST to any other path, a bad, oversized, cut or slow body) writes one
warning line (reason and remote address) and counts ``sms_callbacks_refused_total{reason}``,
so a misconfigured callback URL in the gateway's console shows. The token never reaches a
log line: uvicorn's access log, which would print the path, must stay off.
"""

from __future__ import annotations

import hmac
import logging
import re
from typing import Any

from prometheus_client.exposition import choose_encoder
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from worker.observability.metrics import (
    BAD_BODY,
    INCOMPLETE_BODY,
    LEDGER_UNAVAILABLE,
    METRICS_PATH,
    TOO_LARGE,
    UNKNOWN_PATH,
    WRONG_TOKEN,
    callback_refused,
    process_registry,
)
from worker.receiver.bodies import BadBody, decode, reply_from, reports_from
from worker.services.reports import InvalidItem, ingest_reply, ingest_reports
from worker.tokens import MAKE_TOKEN, MIN_TOKEN_LENGTH, weakness

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 1 << 20
# Characters that survive a URL path unescaped, so the token in the gateway's console is the
# token the receiver compares.
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9._~-]+")
SOURCE = "callback"

OK = {"result": 0, "errmsg": "OK"}
REFUSED = 1004  # the gateway's own code for a body it cannot parse
UNAVAILABLE = 1  # anything but 0 tells the gateway it was not taken


def check_token(token: str) -> str:
    """``token`` if it is a usable path secret; ValueError (not quoting it) otherwise."""
    if len(token) < MIN_TOKEN_LENGTH or not TOKEN_PATTERN.fullmatch(token):
        raise ValueError(
            f"the receiver token must be at least {MIN_TOKEN_LENGTH} characters of A-Z a-z 0-9 "
            f"and ._~- (make one with: {MAKE_TOKEN})"
        )
    problem = weakness(token)
    if problem is not None:
        raise ValueError(f"the receiver token {problem}; make one with: {MAKE_TOKEN}")
    return token


def make_receiver_app(
    sessions: sessionmaker[Session],
    token: str,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    metrics: bool = True,
) -> Starlette:
    """The receiver over the ledger behind ``sessions``, answering only under ``token``.

    ``metrics``: serve ``GET /metrics`` without the token. The figures carry no secret and no
    number, but say how busy each account is: keep the route off, or unrouted by the proxy,
    where the receiver faces the internet and the scraper does not sit behind it."""
    secret = check_token(token).encode()

    def authentic(request: Request) -> bool:
        given = str(request.path_params.get("token", "")).encode("utf-8", "surrogatepass")
        if hmac.compare_digest(given, secret):
            return True
        refused(request, WRONG_TOKEN, "the token in the path is not this receiver's")
        return False

    async def take(request: Request, shape: str) -> Response:
        if not authentic(request):
            return _not_found()  # the very answer of a path that does not exist
        try:
            body = await _read_bounded(request, max_body_bytes)
        except ClientDisconnect:
            refused(request, INCOMPLETE_BODY, "the body was cut short or took too long")
            return _refuse(400, "the body was cut short")
        if body is None:
            refused(request, TOO_LARGE, f"the body is larger than {max_body_bytes} bytes")
            return _refuse(413, f"body is larger than {max_body_bytes} bytes")
        try:
            data = decode(body)
            if shape == "any":
                shape = _shape_of(data)
            if shape == "status":
                result: Any = await run_in_threadpool(
                    ingest_reports, sessions, reports_from(data), source=SOURCE
                )
            else:
                result = await run_in_threadpool(
                    ingest_reply, sessions, reply_from(data), source=SOURCE
                )
        except (BadBody, InvalidItem) as problem:
            refused(request, BAD_BODY, str(problem))
            return _refuse(400, str(problem))
        except SQLAlchemyError:
            log.exception("a %s callback could not be stored; the gateway may send it again", shape)
            callback_refused(LEDGER_UNAVAILABLE)
            return _refuse(503, "the ledger is unavailable; send again later", UNAVAILABLE)
        log.info("%s callback taken: %s", shape, result)
        return JSONResponse(OK)

    async def not_found(request: Request, error: Exception) -> Response:
        # A POST anywhere else is a callback URL gone wrong; the path is not logged: a
        # misspelt one still carries the token. Other methods are only scanners.
        if request.method == "POST":
            refused(request, UNKNOWN_PATH, "POST to a path that is not a callback URL")
        return _not_found()

    async def status(request: Request) -> Response:
        return await take(request, "status")

    async def reply(request: Request) -> Response:
        return await take(request, "reply")

    async def either(request: Request) -> Response:
        return await take(request, "any")

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    registry = process_registry()

    async def metrics_page(request: Request) -> Response:
        encode, content_type = choose_encoder(request.headers.get("accept", ""))
        body = await run_in_threadpool(encode, registry)
        return Response(body, headers={"Content-Type": content_type})

    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            *([Route(METRICS_PATH, metrics_page, methods=["GET"])] if metrics else []),
            Route("/callbacks/{token}/status", status, methods=["POST"]),
            Route("/callbacks/{token}/reply", reply, methods=["POST"]),
            Route("/callbacks/{token}", either, methods=["POST"]),
        ],
        exception_handlers={404: not_found},
    )


async def _read_bounded(request: Request, limit: int) -> bytes | None:
    """The body, or None as soon as it is known to exceed ``limit`` bytes (never read whole)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def refused(request: Request, reason: str, detail: str) -> None:
    """One log line and one count per refused callback: why, and from where; never the token
    (the path is not written, and ``detail`` never holds it)."""
    callback_refused(reason)
    client = request.client.host if request.client else "unknown"
    log.warning("callback refused (%s) from %s: %s", reason, client, _clip(detail))


def _clip(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _shape_of(data: Any) -> str:
    if isinstance(data, list):
        return "status"
    if isinstance(data, dict):
        return "reply"
    raise BadBody("body must be a JSON array (delivery reports) or a JSON object (a reply)")


def _not_found() -> Response:
    return PlainTextResponse("Not Found", status_code=404)


def _refuse(status: int, message: str, result: int = REFUSED) -> Response:
    return JSONResponse({"result": result, "errmsg": message}, status_code=status)
