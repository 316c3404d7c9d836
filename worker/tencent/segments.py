"""The text a handset receives, its billed length, and how many segments it is billed as.

The gateway bills per segment (``fee``), so this must agree with it character for character:
mainland China counts every character once (70 in one segment, then 67 a segment); elsewhere a
text entirely in the GSM 7-bit alphabet gets 160/153, with the extension characters taking two
septets, and anything else goes as UCS-2 at 70/67 (docs/gateway.md, Length and billing).
"""

from __future__ import annotations

from math import ceil

# GSM 03.38 default alphabet in code order, without 0x1B (the escape into the extension table).
GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Reached through the escape, so each costs two septets.
GSM_EXTENSION = frozenset("^{}[]~\\|€")

SINGLE_LIMIT_GSM, PART_LIMIT_GSM = 160, 153
SINGLE_LIMIT_UCS2, PART_LIMIT_UCS2 = 70, 67


def render(content_text: str, sign: str | None, *, domestic: bool) -> str:
    """The received text: ``【sign】content`` in China, ``[sign]content`` abroad.

    Without a sign the content stands alone: either it already carries its signature (free
    text), or the gateway adds the account's default one, which the client cannot know.
    """
    if sign is None:
        return content_text
    return f"【{sign}】{content_text}" if domestic else f"[{sign}]{content_text}"


def is_gsm(text: str) -> bool:
    """Whether every character has a GSM 7-bit encoding."""
    return all(char in GSM_BASIC or char in GSM_EXTENSION for char in text)


def message_length(text: str, *, domestic: bool) -> int:
    """The billed length: characters, except that GSM extension characters count 2 abroad."""
    if not domestic and is_gsm(text):
        return len(text) + sum(char in GSM_EXTENSION for char in text)
    return len(text)


def count_segments(text: str, *, domestic: bool) -> int:
    """How many segments the gateway bills ``text`` (the rendered text) as; at least 1."""
    length = message_length(text, domestic=domestic)
    if not domestic and is_gsm(text):
        single, part = SINGLE_LIMIT_GSM, PART_LIMIT_GSM
    else:
        single, part = SINGLE_LIMIT_UCS2, PART_LIMIT_UCS2
    return 1 if length <= single else ceil(length / part)
