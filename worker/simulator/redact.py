"""URLs as the simulator shows them: where they point, never the secret they may carry.

A callback URL holds the receiver's token in its path (``/callbacks/TOKEN/status``), and any URL
may hold a password (``user:pass@``) or a key in its query. Answers and log lines show scheme,
host and port, and of the path only the words a callback route is made of; every other path
segment, the user part, the query and the fragment are masked.
"""

from __future__ import annotations

from urllib.parse import urlsplit

MASK = "********"
# Path segments that name a route rather than a secret; anything else may be a token.
_ROUTE_WORDS = frozenset(
    {"callbacks", "callback", "status", "reply", "replies", "report", "reports", "sms", "api"}
)


def shown_url(url: str | None) -> str | None:
    """``url`` with its possible secrets masked (None stays None)."""
    if url is None:
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return MASK
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    where = f"{host}:{port}" if port is not None else host
    user = f"{MASK}@" if parts.username is not None or parts.password is not None else ""
    segments = [
        segment if segment.lower() in _ROUTE_WORDS or not segment else MASK
        for segment in parts.path.split("/")
    ]
    query = f"?{MASK}" if parts.query else ""
    fragment = f"#{MASK}" if parts.fragment else ""
    return f"{parts.scheme}://{user}{where}{'/'.join(segments)}{query}{fragment}"


def shown_host(url: str) -> str:
    """Only where ``url`` points: host and port, for log lines."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return MASK
    host = parts.hostname or ""
    return f"{host}:{port}" if port is not None else host
