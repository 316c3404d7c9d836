"""What the gateway bills: the text a handset receives, its segments, and the ``sid``.

The simulator's own counting, kept apart from the client's (docs/architecture.md, the import
rules) and proven by its own tests against the billing rules of docs/gateway.md (Length and
billing).
"""

from __future__ import annotations

import base64
import math
import os
import re
from collections.abc import Sequence

# GSM 03.38 default alphabet (without the escape character) and its extension table.
GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENSION = frozenset("^{}[]~\\|€")

DOMESTIC_SINGLE, DOMESTIC_PART = 70, 67
GSM_SINGLE, GSM_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67

_PLACEHOLDER = re.compile(r"\{(\d+)\}")
# base64's two symbols become letters: the sid stays alphanumeric, as the gateway's are.
_ALPHANUMERIC_ONLY = bytes.maketrans(b"+/", b"xz")


def render_template(text: str, params: Sequence[str]) -> str:
    """The template text with ``{1}``, ``{2}``... replaced by ``params`` (numbered from 1)."""
    return _PLACEHOLDER.sub(lambda match: params[int(match.group(1)) - 1], text)


def rendered_message(content: str, sign: str | None, *, domestic: bool) -> str:
    """What the handset shows: 【sign】 in mainland China, [sign] abroad, nothing when unsigned."""
    if not sign:
        return content
    return f"【{sign}】{content}" if domestic else f"[{sign}]{content}"


def billed_length(text: str, *, domestic: bool) -> tuple[int, bool]:
    """The counted length of ``text`` and whether it is counted in GSM 7-bit units."""
    if domestic:
        return len(text), False
    length = 0
    for char in text:
        if char in GSM_BASIC:
            length += 1
        elif char in GSM_EXTENSION:
            length += 2
        else:
            return len(text), False
    return length, True


def segments(text: str, *, domestic: bool) -> int:
    """Billed segments (``fee``) for the rendered ``text`` to one number."""
    length, gsm = billed_length(text, domestic=domestic)
    if domestic:
        single, part = DOMESTIC_SINGLE, DOMESTIC_PART
    elif gsm:
        single, part = GSM_SINGLE, GSM_PART
    else:
        single, part = UCS2_SINGLE, UCS2_PART
    return 1 if length <= single else math.ceil(length / part)


def new_sid(yyyymmdd: str) -> str:
    """A send id in the gateway's shape, ``8:`` + 20 letters and digits + the Beijing date.

    120 random bits make a collision practically impossible; the date suffix is what the real
    ids carry, and lets a reader place a report at a glance.
    """
    token = base64.b64encode(os.urandom(15)).translate(_ALPHANUMERIC_ONLY).decode("ascii")
    return f"8:{token}{yyyymmdd}"
