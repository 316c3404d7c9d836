"""The gateway's side of ``sig``: recompute it from the request and compare.

Written apart from the client's signing code on purpose (docs/architecture.md, the import rules): if
both shared one function, a bug in it would sign and verify the same wrong string and every test
would pass.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence


def signed_text(
    appkey: str,
    random: str,
    time: int,
    *,
    mobiles: Sequence[str] = (),
    tel: str | None = None,
) -> str:
    """The string the gateway hashes.

    Sends to numbers append ``&mobile=`` with the national numbers joined by commas, in request
    order; the international single send appends ``&tel=`` with the E.164 string; pulls and
    statistics append nothing.
    """
    text = f"appkey={appkey}&random={random}&time={time}"
    if tel is not None:
        return f"{text}&tel={tel}"
    if mobiles:
        return f"{text}&mobile={','.join(mobiles)}"
    return text


def expected_sig(
    appkey: str,
    random: str,
    time: int,
    *,
    mobiles: Sequence[str] = (),
    tel: str | None = None,
) -> str:
    text = signed_text(appkey, random, time, mobiles=mobiles, tel=tel)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sig_matches(
    given: str,
    appkey: str,
    random: str,
    time: int,
    *,
    mobiles: Sequence[str] = (),
    tel: str | None = None,
) -> bool:
    """Whether ``given`` is the lowercase hex digest the gateway expects (constant-time compare)."""
    expected = expected_sig(appkey, random, time, mobiles=mobiles, tel=tel)
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("ascii"))
