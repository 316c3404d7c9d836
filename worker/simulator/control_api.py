"""The control API under ``/_sim/``: read what happened, reset, and choreograph faults.

JSON in, JSON out; a request it cannot use gets HTTP 400 with ``{"error": ...}``.

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
- ``PUT /_sim/clock`` ``{"now": 1700000000}`` | ``{"offset": -3600}`` | ``{"real": true}``.
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
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from worker.simulator.config import ConfigError, Limits, ReportSettings
from worker.simulator.faults import FaultSettings, StepError, parse_steps
from worker.simulator.reports import ReportCenter
from worker.simulator.state import SimulatorState
from worker.tencent.types import DOMESTIC_NATIONCODE, Reply

Handler = Callable[[Request], Awaitable[Response]]


class BadControlRequest(ValueError):
    pass


def build_control_app(state: SimulatorState, reports: ReportCenter) -> Starlette:
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
        if not isinstance(mobile, str) or not mobile:
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
            if body.get("real") is True:
                state.clock.set_real()
            elif _is_number(body.get("now")):
                state.clock.set_now(float(body["now"]))
            elif _is_number(body.get("offset")):
                state.clock.set_offset(float(body["offset"]))
            else:
                raise BadControlRequest('give {"now": unix}, {"offset": seconds} or {"real": true}')
        return _json(state.clock.to_json())

    async def limits(request: Request) -> Response:
        if request.method == "PUT":
            state.set_limits(Limits.from_mapping(await _body(request)))
        return _json({**state.limits.to_json(), "balance": state.balance})

    async def report_settings(request: Request) -> Response:
        if request.method == "PUT":
            reports.configure(ReportSettings.from_mapping(await _body(request)))
        return _json(reports.settings.to_json())

    async def flush(request: Request) -> Response:
        return _json(await reports.flush())

    async def replies(request: Request) -> Response:
        body = await _body(request)
        reply = _reply(body, state)
        pushed = await reports.add_reply(reply)
        return _json({"reply": asdict(reply), "pushed": pushed})

    async def stats(request: Request) -> Response:
        return _json({**state.stats(), "reports": reports.stats()})

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
    return Starlette(routes=routes)


def _guarded(handler: Handler) -> Handler:
    async def guarded(request: Request) -> Response:
        try:
            return await handler(request)
        except (BadControlRequest, ConfigError, StepError) as exc:
            return _json({"error": str(exc)}, status=400)

    return guarded


async def _body(request: Request) -> Mapping[str, Any]:
    try:
        body = json.loads(await request.body() or b"{}")
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadControlRequest("the body must be JSON") from None
    if not isinstance(body, dict):
        raise BadControlRequest("the body must be a JSON object")
    return body


def _reply(body: Mapping[str, Any], state: SimulatorState) -> Reply:
    mobile, text = body.get("mobile"), body.get("text")
    if not isinstance(mobile, str) or not isinstance(text, str):
        raise BadControlRequest('give at least {"mobile": "...", "text": "..."}')
    fields = {
        "nationcode": body.get("nationcode", DOMESTIC_NATIONCODE),
        "sign": body.get("sign", state.config.default_sign or ""),
        "extend": body.get("extend", ""),
    }
    if not all(isinstance(value, str) for value in fields.values()):
        raise BadControlRequest("nationcode, sign and extend must be strings")
    when = body.get("time", int(state.clock.now()))
    if not _is_number(when):
        raise BadControlRequest("time must be Unix seconds")
    return Reply(
        extend=fields["extend"],
        mobile=mobile,
        nationcode=fields["nationcode"],
        sign=fields["sign"],
        text=text,
        time=int(when),
    )


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _json(payload: object, status: int = 200) -> Response:
    return JSONResponse(payload, status_code=status)
