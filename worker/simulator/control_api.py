"""The control API under ``/_sim/``: read what happened, reset, and choreograph faults.

JSON in, JSON out; a request it cannot use gets HTTP 400 with ``{"error": ...}`` naming the
field, a body over 1 MiB gets 413 (counted as it arrives, never buffered beyond), and NaN,
Infinity and numbers out of range are refused like any other bad value. Beyond loopback every
request needs ``Authorization: Bearer <token>`` (see ``control_auth``). No answer shows a
secret: appkeys are never shown, and URLs (the callback's path holds the receiver's token)
are shown masked.

- ``GET /_sim/health``: ``{"status": "ok"}``, without the token, for health checks.

- ``GET /_sim/inbox[?mobile=]``: what handsets received (nationcode, mobile, text, sid, fee, time).
- ``GET /_sim/requests``: every gateway request and what it was answered.
- ``POST /_sim/reset``: clears inbox, log, scripts, counters and reports; faults, limits, report
  settings and the clock go back to what the configuration says.
- ``POST /_sim/script`` ``{"mobile": "13700000001", "steps": [1008, 1008]}``: the next requests
  naming that number take these steps, one each, then it is processed normally again. A step is
  a result code (answered instead of processing: nothing delivered, nothing billed), ``"ok"``,
  ``{"http": 503}`` (that status, nothing delivered), ``"drop"`` (connection cut before
  processing: nothing delivered, a retry is safe), ``"drop_after"`` (delivered to the inbox, then
  the connection is cut: the ambiguous case), or ``{"slow": 30}`` (delivered, then the answer is
  held back that many seconds, past the client's read timeout: ambiguous too). In a group send
  a result code fails that number's ``detail`` entry only; the other steps act on the whole
  request. ``GET /_sim/script`` lists what is waiting.
- ``PUT /_sim/faults`` ``{"rates": {"1008": 0.1, "http_503": 0.05, "drop": 0.01, ...},
  "slow_seconds": 30, "latency_ms": 5, "jitter_ms": 10}``: random faults for sends (same
  meanings as the steps), and latency for every answer.
- ``PUT /_sim/clock`` ``{"now": 1700000000}`` | ``{"offset": -3600}`` | ``{"real": true}``
  (back to real time plus SMS_CLOCK_OFFSET_SECONDS); the clock stays within 1970-2100.
- ``PUT /_sim/limits`` ``{"per_number_30s": 1, "per_number_hour": 5, "per_number_day": 10,
  "balance": 100, "blacklist": ["13700000009"]}``.
- ``PUT /_sim/reports`` ``{"callback_url": ..., "delay_seconds": 2, "fail_ratio": 0.1, ...}``.
- ``POST /_sim/reports/flush``: release every pending report now and wait for the pushes.
- ``POST /_sim/replies`` ``{"mobile": ..., "text": "TD"}``: a handset's reply (MO).
- ``GET /_sim/stats``, ``GET /_sim/config`` (accounts without their keys, signs, templates).

Every ``PUT`` replaces its settings; keys left out take their built-in defaults.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict
from typing import Any, NoReturn

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from worker.simulator.config import (
    LATEST_TIME,
    MAX_CLOCK_OFFSET,
    ConfigError,
    Limits,
    ReportSettings,
)
from worker.simulator.control_auth import HEALTH_PATH, ControlGuard
from worker.simulator.faults import FaultSettings, StepError, parse_steps
from worker.simulator.redact import shown_url
from worker.simulator.reports import ReportCenter
from worker.simulator.state import SimulatorState
from worker.tencent.types import DOMESTIC_NATIONCODE, Reply

Handler = Callable[[Request], Awaitable[Response]]

MAX_CONTROL_BODY_BYTES = 1 << 20
_MAX_MESSAGE = 300  # characters of an error message; what it quotes comes from the network


class BadControlRequest(ValueError):
    pass


class BodyTooLarge(ValueError):
    pass


def build_control_app(
    state: SimulatorState, reports: ReportCenter, *, token: str | None = None
) -> ASGIApp:
    """The control API over ``state`` and ``reports``; ``token``: the bearer token every
    request but the health check must carry (None: none, for a simulator on loopback)."""

    async def inbox(request: Request) -> Response:
        mobile = request.query_params.get("mobile")
        messages = [e.to_json() for e in state.inbox if mobile is None or e.mobile == mobile]
        return _json({"messages": messages})

    async def requests_log(request: Request) -> Response:
        return _json({"requests": [entry.to_json() for entry in state.log]})

    async def reset(request: Request) -> Response:
        state.reset()
        reports.reset()
        return _json({"reset": True})

    async def script(request: Request) -> Response:
        if request.method == "GET":
            waiting = {m: [s.to_json() for s in steps] for m, steps in state.scripts.items()}
            return _json({"scripts": waiting})
        body = await _body(request)
        mobile = body.get("mobile")
        if not isinstance(mobile, str) or not 0 < len(mobile) <= 32:
            raise BadControlRequest("mobile must be the national number as a string")
        steps = parse_steps(body.get("steps"))
        state.script(mobile, steps)
        return _json({"mobile": mobile, "steps": [step.to_json() for step in steps]})

    async def faults(request: Request) -> Response:
        if request.method == "PUT":
            state.faults = FaultSettings.from_mapping(await _body(request))
        return _json(state.faults.to_json())

    async def clock(request: Request) -> Response:
        if request.method == "PUT":
            body = await _body(request)
            given = set(body) & {"now", "offset", "real"}
            if len(given) != 1 or set(body) - given:
                raise BadControlRequest('give {"now": unix}, {"offset": seconds} or {"real": true}')
            if "real" in body:
                if body["real"] is not True:
                    raise BadControlRequest("real must be true (back to the configured time)")
                state.clock.set_real()
            elif "now" in body:
                state.clock.set_now(_number_in(body["now"], "now", 0, LATEST_TIME))
            else:
                offset = _number_in(body["offset"], "offset", -MAX_CLOCK_OFFSET, MAX_CLOCK_OFFSET)
                if not 0 <= state.clock.now() - state.clock.offset + offset <= LATEST_TIME:
                    raise BadControlRequest("offset must keep the clock between 1970 and 2100")
                state.clock.set_offset(offset)
        return _json(state.clock.to_json())

    async def limits(request: Request) -> Response:
        if request.method == "PUT":
            state.set_limits(Limits.from_mapping(await _body(request)))
        return _json({**state.limits.to_json(), "balance": state.balance})

    async def report_settings(request: Request) -> Response:
        if request.method == "PUT":
            reports.configure(ReportSettings.from_mapping(await _body(request)))
        return _json(_shown_settings(reports.settings))

    async def flush(request: Request) -> Response:
        return _json(await reports.flush())

    async def replies(request: Request) -> Response:
        body = await _body(request)
        reply = _reply(body, state)
        pushed = await reports.add_reply(reply)
        return _json({"reply": asdict(reply), "pushed": pushed})

    async def stats(request: Request) -> Response:
        shown = {**reports.stats(), "settings": _shown_settings(reports.settings)}
        return _json({**state.stats(), "reports": shown})

    async def health(request: Request) -> Response:
        return _json({"status": "ok"})

    async def config(request: Request) -> Response:
        current = state.config
        return _json(
            {
                "accounts": [
                    {"sdkappid": a.sdkappid, "extend_allowed": a.extend_allowed}
                    for a in current.accounts
                ],
                "signs": [{"text": s.text, "approved": s.approved} for s in current.signs],
                "templates": [
                    {
                        "id": t.id,
                        "text": t.text,
                        "kind": t.kind.value,
                        "international": t.international,
                        "approved": t.approved,
                    }
                    for t in current.templates
                ],
                "default_sign": current.default_sign,
            }
        )

    routes = [
        Route(HEALTH_PATH, health, methods=["GET"]),
        Route("/_sim/inbox", _guarded(inbox), methods=["GET"]),
        Route("/_sim/requests", _guarded(requests_log), methods=["GET"]),
        Route("/_sim/reset", _guarded(reset), methods=["POST"]),
        Route("/_sim/script", _guarded(script), methods=["GET", "POST"]),
        Route("/_sim/faults", _guarded(faults), methods=["GET", "PUT"]),
        Route("/_sim/clock", _guarded(clock), methods=["GET", "PUT"]),
        Route("/_sim/limits", _guarded(limits), methods=["GET", "PUT"]),
        Route("/_sim/reports", _guarded(report_settings), methods=["GET", "PUT"]),
        Route("/_sim/reports/flush", _guarded(flush), methods=["POST"]),
        Route("/_sim/replies", _guarded(replies), methods=["POST"]),
        Route("/_sim/stats", _guarded(stats), methods=["GET"]),
        Route("/_sim/config", _guarded(config), methods=["GET"]),
    ]
    return ControlGuard(Starlette(routes=routes), token)


def _guarded(handler: Handler) -> Handler:
    async def guarded(request: Request) -> Response:
        try:
            return await handler(request)
        except (BadControlRequest, ConfigError, StepError) as exc:
            return _json({"error": _clip(str(exc))}, status=400)
        except BodyTooLarge as exc:
            # The rest of the body is not read: the connection cannot carry another request.
            return _json({"error": str(exc)}, status=413, close=True)
        except ClientDisconnect:
            return _json({"error": "the body was cut short"}, status=400, close=True)

    return guarded


async def _body(request: Request) -> Mapping[str, Any]:
    """The request's JSON object (``{}`` for no body), read at most 1 MiB whatever the headers
    say (a chunked body has no Content-Length); NaN, Infinity and overflowing numbers, which
    Python's json would take, are refused."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_CONTROL_BODY_BYTES:
        raise BodyTooLarge(f"the body is larger than {MAX_CONTROL_BODY_BYTES} bytes")
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_CONTROL_BODY_BYTES:
            raise BodyTooLarge(f"the body is larger than {MAX_CONTROL_BODY_BYTES} bytes")
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw, parse_constant=_not_json, parse_float=_finite_float)
    except RecursionError:
        raise BadControlRequest("the body is nested too deeply") from None
    except BadControlRequest:
        raise
    except ValueError:  # also UnicodeDecodeError, and integers of thousands of digits
        raise BadControlRequest("the body must be JSON (UTF-8)") from None
    if not isinstance(body, dict):
        raise BadControlRequest("the body must be a JSON object")
    try:
        # A lone surrogate (\ud800) parses, but no answer or log could ever write it back.
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise BadControlRequest(
            "the body holds a lone surrogate escape (\\ud800-\\udfff)"
        ) from None
    return body


def _not_json(constant: str) -> NoReturn:
    raise BadControlRequest(f"the body holds {constant}, which is not a number JSON allows")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise BadControlRequest("the body holds a number too large for a float")
    return number


def _reply(body: Mapping[str, Any], state: SimulatorState) -> Reply:
    unknown = set(body) - {"mobile", "text", "nationcode", "sign", "extend", "time"}
    if unknown:
        raise BadControlRequest(
            f"unknown keys {', '.join(sorted(k[:40] for k in unknown)[:5])}; known: mobile, "
            "text, nationcode, sign, extend, time"
        )
    mobile = _text(body.get("mobile"), "mobile", digits=True, longest=20)
    return Reply(
        extend=_text(body.get("extend", ""), "extend", digits=True, longest=32, empty=True),
        mobile=mobile,
        nationcode=_text(
            body.get("nationcode", DOMESTIC_NATIONCODE), "nationcode", digits=True, longest=4
        ),
        sign=_text(body.get("sign", state.config.default_sign or ""), "sign", 64, empty=True),
        text=_text(body.get("text"), "text", 1000, empty=True),
        time=int(_number_in(body.get("time", int(state.clock.now())), "time", 0, LATEST_TIME)),
    )


def _text(
    value: object, name: str, longest: int, *, digits: bool = False, empty: bool = False
) -> str:
    what = "digits" if digits else "characters"
    if (
        not isinstance(value, str)
        or len(value) > longest
        or (not value and not empty)
        or (digits and value and not (value.isascii() and value.isdigit()))
        or any(not char.isprintable() for char in value)
    ):
        least = 0 if empty else 1
        raise BadControlRequest(f"{name} must be a string of {least} to {longest} {what}")
    return value


def _number_in(value: object, name: str, low: float, high: float) -> float:
    """A finite JSON number from ``low`` to ``high`` (compared before any float conversion, so
    a huge integer is refused rather than overflowing)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise BadControlRequest(f"{name} must be a number from {low:g} to {high:g}")
    return float(value)


def _shown_settings(settings: ReportSettings) -> dict[str, object]:
    shown = settings.to_json()
    shown["callback_url"] = shown_url(settings.callback_url)
    return shown


def _clip(message: str) -> str:
    message = " ".join(message.split())
    return message if len(message) <= _MAX_MESSAGE else message[: _MAX_MESSAGE - 1] + "…"


def _json(payload: object, status: int = 200, *, close: bool = False) -> Response:
    return JSONResponse(
        payload, status_code=status, headers={"connection": "close"} if close else None
    )
