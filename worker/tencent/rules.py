"""What the gateway would refuse, checked before a request is spent on it.

Each check raises ``InvalidInput`` naming the field, the problem, and the result code the
gateway would have answered with, so a caller can fail fast with the same meaning it would
have learnt from the gateway a round trip later.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from worker.tencent.types import MAX_CONTENT_LENGTH, MAX_GROUP_SIZE, MAX_PARAM_LENGTH, Phone

PLACEHOLDER = re.compile(r"\{(\d+)\}")
# Template variables one send may carry. Tencent publishes no count, but it approves no template
# made only of variables (the fixed text must say what the message is about), and the whole
# message is at most 450 characters: 40 variables is more than any approvable template holds,
# and refuses a runaway list before a single one is looked at. Their total length is bounded
# apart (40 full ones would be 480 characters).
MAX_TEMPLATE_PARAMS = 40
# The signature as the handset shows it, 【腾讯云】, and free text carrying it at its start or end
# (the gateway's rule for a domestic free-text send; abroad the sign is optional).
SIGN_BRACKETS = ("【", "】")
SIGNED_TEXT = re.compile(r"\A【[^【】]+】|【[^【】]+】\Z")
VERIFICATION_CODE = re.compile(r"[0-9]{0,6}")
# The gateway's own URL test is not published. This catches a scheme, a "www." host, and a
# dotted host name ending in a common top-level domain ("t.cn/x", "bit.ly"), while leaving
# amounts and versions ("3.14", "v1.2") alone.
URL_LIKE = re.compile(
    r"[a-z][a-z0-9+.-]*://|www\.|[a-z0-9-]+\."
    r"(?:com|cn|net|org|info|biz|io|me|cc|co|tv|top|xyz|vip|app|site|shop|link|ly|gl|to|ws|so)"
    r"(?![a-z0-9-])",
    re.IGNORECASE,
)


class InvalidInput(ValueError):
    """Input the gateway would refuse; ``code`` is its result code for it, when there is one."""

    def __init__(self, field: str, problem: str, code: int | None = None) -> None:
        super().__init__(field, problem, code)  # all of them, so that it pickles
        self.field = field
        self.problem = problem
        self.code = code

    def __str__(self) -> str:
        return f"{self.field}: {self.problem}"


def check_param_count(params: Sequence[object]) -> None:
    """At most ``MAX_TEMPLATE_PARAMS`` template variables (1014: no template takes more)."""
    if len(params) > MAX_TEMPLATE_PARAMS:
        raise InvalidInput(
            "params",
            f"{len(params)} given; a template takes at most {MAX_TEMPLATE_PARAMS} variables",
            1014,
        )


def check_params(params: Sequence[str], *, verification: bool, sign: str | None = None) -> None:
    """Template variables: at most ``MAX_TEMPLATE_PARAMS`` (1014), each <= 12 characters (1036),
    0-6 digits for codes (1038), no URL (1048), and all of them with the ``sign`` shown as
    【sign】 within the 450 characters of a whole message (1017)."""
    check_param_count(params)
    for index, value in enumerate(params):
        field = f"params[{index}]"
        if not isinstance(value, str):
            raise InvalidInput(field, f"must be a string, not {type(value).__name__}", 1004)
        if len(value) > MAX_PARAM_LENGTH:
            raise InvalidInput(
                field,
                f"{value!r} is {len(value)} characters; at most {MAX_PARAM_LENGTH} allowed",
                1036,
            )
        if verification and not VERIFICATION_CODE.fullmatch(value):
            raise InvalidInput(field, f"{value!r} is not a code of 0-6 digits", 1038)
        if URL_LIKE.search(value):
            raise InvalidInput(field, f"{value!r} looks like a URL, which is not allowed", 1048)
    shown = sum(len(value) for value in params) + (len(sign) + 2 if sign else 0)
    if shown > MAX_CONTENT_LENGTH:
        with_sign = " with the signature" if sign else ""
        raise InvalidInput(
            "params",
            f"{shown} characters in all{with_sign}; a whole message is at most "
            f"{MAX_CONTENT_LENGTH}",
            1017,
        )


def sign_text(sign: str) -> str:
    """The signature as the gateway takes it, without 【】: a sign written as the handset shows
    it, "【腾讯云】", loses its brackets; a bracket anywhere else is refused (1012 otherwise)."""
    opening, closing = SIGN_BRACKETS
    text = sign[1:-1] if len(sign) >= 2 and sign[0] == opening and sign[-1] == closing else sign
    if opening in text or closing in text:
        raise InvalidInput(
            "sign", f"{sign!r:.80} has a stray 【 or 】; give the sign's text, e.g. 腾讯云", 1012
        )
    if not text.strip() and text != sign:
        raise InvalidInput(
            "sign", "【】 holds no signature; give the sign's text, e.g. 腾讯云", 1012
        )
    return text


def check_signed_text(text: str) -> None:
    """Free text to a mainland number carries its signature at its start or end: 【腾讯云】..."""
    if not SIGNED_TEXT.search(text):
        raise InvalidInput(
            "text",
            "has no signature: free text must begin or end with its approved sign in 【】, "
            "e.g. 【腾讯云】您的快递已到。",
            1012,
        )


def check_group(phones: Sequence[Phone]) -> None:
    """A group send: 1..200 numbers (1046), all domestic or all international (1034), no repeats."""
    if not phones:
        raise InvalidInput("tel", "a group send needs at least one number", 1046)
    if len(phones) > MAX_GROUP_SIZE:
        raise InvalidInput(
            "tel", f"{len(phones)} numbers; a group send takes at most {MAX_GROUP_SIZE}", 1046
        )
    if len({phone.domestic for phone in phones}) > 1:
        raise InvalidInput(
            "tel", "mixes domestic (86) and international numbers; send them apart", 1034
        )
    duplicates = [number for number, n in Counter(p.e164 for p in phones).items() if n > 1]
    if duplicates:
        raise InvalidInput("tel", f"numbers appear more than once: {', '.join(duplicates)}")


def check_length(rendered_text: str) -> None:
    """The text as received, signature included, is at most 450 characters (1017)."""
    if len(rendered_text) > MAX_CONTENT_LENGTH:
        raise InvalidInput(
            "content",
            f"{len(rendered_text)} characters with the signature; at most {MAX_CONTENT_LENGTH}",
            1017,
        )


def render_template(text: str, params: Sequence[str]) -> str:
    """The template with ``{1}``..``{n}`` filled; the params must match the placeholders (1014)."""
    numbers = {int(match) for match in PLACEHOLDER.findall(text)}
    expected = set(range(1, len(params) + 1))
    if numbers != expected:
        placeholders = ", ".join(f"{{{n}}}" for n in sorted(numbers)) or "no placeholders"
        raise InvalidInput(
            "params",
            f"{len(params)} given but the template has {placeholders}",
            1014,
        )
    # One pass, so a value that itself contains "{2}" is not filled again.
    return PLACEHOLDER.sub(lambda match: params[int(match.group(1)) - 1], text)
