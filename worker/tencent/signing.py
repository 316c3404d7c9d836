"""The v5 request signature: SHA-256 of ``appkey=K&random=R&time=T`` and the recipient.

What is appended depends on the API (docs/gateway.md, Signing): ``&mobile=M`` for a send to national
numbers (several joined by ``,`` in request order), ``&tel=+E164`` for ``sendisms``, and
nothing for pulls and statistics. The appkey never leaves this function: only the digest does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def sign(
    appkey: str,
    random: int,
    time: int,
    *,
    mobiles: Sequence[str] = (),
    tel: str | None = None,
) -> str:
    """The lowercase hex ``sig`` for one request."""
    if isinstance(mobiles, str):
        # A bare string is a Sequence[str] too, and would be joined digit by digit.
        raise TypeError("mobiles must be a sequence of numbers, not a single string")
    if mobiles and tel is not None:
        raise ValueError("a request is signed over mobiles or over tel, not both")
    text = f"appkey={appkey}&random={random}&time={time}"
    if tel is not None:
        text += f"&tel={tel}"
    elif mobiles:
        text += "&mobile=" + ",".join(mobiles)
    return hashlib.sha256(text.encode()).hexdigest()
