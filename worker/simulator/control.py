"""A Python client for the simulator's control API (``/_sim/``), for tests and demos.

control = SimulatorControl("http://127.0.0.1:8080")   # token=... beyond loopback
control.reset()
control.script("13700000001", [1008, 1008])        # two 1008s, then normal
...
assert [m.text for m in control.inbox()] == [...]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import requests

# A scripted step as sent: 1008, "drop", "drop_after", "ok", {"http": 503}, {"slow": 5}.
ScriptStep = int | str | Mapping[str, float]


class SimulatorControlError(RuntimeError):
    """The control API refused a request (HTTP 4xx) or could not be reached."""


@dataclass(frozen=True, slots=True)
class InboxMessage:
    """One SMS as a handset received it."""

    nationcode: str
    mobile: str
    text: str
    sid: str
    fee: int
    time: float  # Unix seconds, on the simulator's clock
    received_at: str  # the same, ISO 8601 UTC
    sdkappid: str
    api: str


@dataclass(frozen=True, slots=True)
class NumberResult:
    nationcode: str
    mobile: str
    result: int
    sid: str
    fee: int


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One gateway request and its answer; ``http_status`` None means the connection was cut."""

    api: str
    sdkappid: str
    random: str
    time: int | None
    sig_valid: bool | None
    numbers: tuple[str, ...]
    http_status: int | None
    result: int | None
    results: tuple[NumberResult, ...]
    sids: tuple[str, ...]
    fault: str | None
    received_at: str


class SimulatorControl:
    def __init__(self, base_url: str, *, timeout: float = 30.0, token: str | None = None) -> None:
        """``token``: the simulator's control token (SMS_SIMULATOR_CONTROL_TOKEN), when it has
        one; sent as ``Authorization: Bearer``."""
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()
        if token is not None:
            self._session.headers["Authorization"] = f"Bearer {token}"

    def __repr__(self) -> str:
        return f"SimulatorControl({self.base_url!r})"

    def close(self) -> None:
        self._session.close()

    # --- reading -------------------------------------------------------------------------------

    def inbox(self, mobile: str | None = None) -> list[InboxMessage]:
        params = {"mobile": mobile} if mobile else None
        messages = self._call("GET", "/_sim/inbox", params=params)["messages"]
        return [InboxMessage(**message) for message in messages]

    def requests(self) -> list[RequestRecord]:
        records = self._call("GET", "/_sim/requests")["requests"]
        return [
            RequestRecord(
                **{
                    **record,
                    "numbers": tuple(record["numbers"]),
                    "results": tuple(NumberResult(**item) for item in record["results"]),
                    "sids": tuple(record["sids"]),
                }
            )
            for record in records
        ]

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "/_sim/stats")

    def config(self) -> dict[str, Any]:
        """Accounts (without keys), signs and templates the simulator knows."""
        return self._call("GET", "/_sim/config")

    def scripts(self) -> dict[str, list[object]]:
        waiting: dict[str, list[object]] = self._call("GET", "/_sim/script")["scripts"]
        return waiting

    # --- steering ------------------------------------------------------------------------------

    def reset(self) -> None:
        self._call("POST", "/_sim/reset")

    def script(self, mobile: str, steps: Sequence[ScriptStep]) -> list[object]:
        """The next ``len(steps)`` requests naming ``mobile`` take these steps, in order."""
        answer = self._call("POST", "/_sim/script", json={"mobile": mobile, "steps": list(steps)})
        taken: list[object] = answer["steps"]
        return taken

    def set_faults(
        self,
        rates: Mapping[str, float] | None = None,
        *,
        latency_ms: float = 0.0,
        jitter_ms: float = 0.0,
        slow_seconds: float = 30.0,
    ) -> dict[str, Any]:
        """Random fault rates by kind (``"1008"``, ``"http_503"``, ``"drop"``, ...) and latency."""
        body = {
            "rates": dict(rates or {}),
            "latency_ms": latency_ms,
            "jitter_ms": jitter_ms,
            "slow_seconds": slow_seconds,
        }
        return self._call("PUT", "/_sim/faults", json=body)

    def set_clock(self, now: float | None = None, offset: float | None = None) -> dict[str, Any]:
        """Jump to ``now`` (Unix seconds), or shift by ``offset``; neither: back to real time."""
        if now is not None:
            body: dict[str, object] = {"now": now}
        elif offset is not None:
            body = {"offset": offset}
        else:
            body = {"real": True}
        return self._call("PUT", "/_sim/clock", json=body)

    def set_limits(
        self,
        *,
        per_number_30s: int | None = None,
        per_number_hour: int | None = None,
        per_number_day: int | None = None,
        balance: int | None = None,
        blacklist: Sequence[str] = (),
    ) -> dict[str, Any]:
        body = {
            key: value
            for key, value in {
                "per_number_30s": per_number_30s,
                "per_number_hour": per_number_hour,
                "per_number_day": per_number_day,
                "balance": balance,
            }.items()
            if value is not None
        }
        return self._call("PUT", "/_sim/limits", json={**body, "blacklist": list(blacklist)})

    def set_reports(
        self,
        callback_url: str | None = None,
        *,
        delay_seconds: float = 2.0,
        fail_ratio: float = 0.0,
        **more: object,
    ) -> dict[str, Any]:
        """Where and how delivery reports go; ``more`` takes the other ``[reports]`` keys."""
        body = {
            "callback_url": callback_url or "",
            "delay_seconds": delay_seconds,
            "fail_ratio": fail_ratio,
            **more,
        }
        return self._call("PUT", "/_sim/reports", json=body)

    def flush_reports(self) -> dict[str, int]:
        """Release every pending report now; returns once the callback pushes are done."""
        flushed: dict[str, int] = self._call("POST", "/_sim/reports/flush")
        return flushed

    def reply(
        self,
        mobile: str,
        text: str,
        *,
        nationcode: str = "86",
        sign: str | None = None,
        extend: str = "",
    ) -> dict[str, Any]:
        """A handset replies: queued for ``pullstatus`` type 1 and pushed to the callback."""
        body: dict[str, object] = {
            "mobile": mobile,
            "text": text,
            "nationcode": nationcode,
            "extend": extend,
        }
        if sign is not None:
            body["sign"] = sign
        return self._call("POST", "/_sim/replies", json=body)

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self._session.request(
                method, self.base_url + path, timeout=self.timeout, **kwargs
            )
        except requests.RequestException as exc:
            raise SimulatorControlError(f"{method} {path}: {type(exc).__name__}") from exc
        if response.status_code != 200:
            try:
                reason = response.json().get("error", response.text)
            except ValueError:
                reason = response.text
            raise SimulatorControlError(f"{method} {path}: HTTP {response.status_code}: {reason}")
        answer: dict[str, Any] = response.json()
        return answer
