"""Who may use the control API: a bearer token whenever the simulator listens beyond loopback.

The control API reads the request log and the callback settings, points delivery reports at any
URL (the simulator then POSTs there), injects replies that opt numbers out and moves the clock:
on a shared network that is everyone's. So a simulator listening on anything but a loopback
address refuses to start without a token, and with a token (wherever it listens) every control
request must carry ``Authorization: Bearer <token>``, compared in constant time. The gateway
under ``/v5/`` is not guarded by it: those requests are signed with the account's appkey.
``GET /_sim/health`` answers without the token, for health checks, and says nothing else.
"""

from __future__ import annotations

import hmac
import ipaddress
import json

from starlette.types import ASGIApp, Receive, Scope, Send

from worker.simulator.config import ConfigError
from worker.tokens import MAKE_TOKEN, weakness

TOKEN_VARIABLE = "SMS_SIMULATOR_CONTROL_TOKEN"  # noqa: S105 (a name, not a secret)
TOKEN_FILE_VARIABLE = "SMS_SIMULATOR_CONTROL_TOKEN_FILE"  # noqa: S105
HEALTH_PATH = "/_sim/health"
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or a name) is reachable from this machine only."""
    name = host.strip().strip("[]").lower()
    if name in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # another name: it may resolve to any interface


def checked_control_token(host: str, token: str | None) -> str | None:
    """The token to require (None: none needed, loopback only); ConfigError when a simulator
    on ``host`` may not run with ``token``. The message never quotes the token."""
    if token is None:
        if is_loopback(host):
            return None
        raise ConfigError(
            f"listening on {host} opens the control API (/_sim/) to the network: set "
            f"{TOKEN_FILE_VARIABLE} (or {TOKEN_VARIABLE}, or --control-token) to a token made "
            f"with: {MAKE_TOKEN}"
        )
    if any(char.isspace() or not char.isprintable() for char in token):
        raise ConfigError("the control token must not contain spaces or control characters")
    problem = weakness(token)
    if problem is not None:
        raise ConfigError(f"the control token {problem}; make one with: {MAKE_TOKEN}")
    return token


class ControlGuard:
    """ASGI middleware in front of the control app: 401 without the right bearer token."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self._expected = f"Bearer {token}".encode() if token is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or self._expected is None
            or scope["path"] == HEALTH_PATH
            or self._authorized(scope)
        ):
            await self.app(scope, receive, send)
            return
        body = json.dumps(
            {"error": "the control API needs the header Authorization: Bearer <token> "
             f"(the simulator's {TOKEN_VARIABLE})"}
        ).encode()  # fmt: skip
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", b'Bearer realm="sms-simulator control"'),
            (b"connection", b"close"),  # a body it sent is not read
        ]
        await send({"type": "http.response.start", "status": 401, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _authorized(self, scope: Scope) -> bool:
        assert self._expected is not None
        given = [value for name, value in scope["headers"] if name == b"authorization"]
        # One header exactly; compared in constant time whatever its length.
        return len(given) == 1 and hmac.compare_digest(given[0], self._expected)
