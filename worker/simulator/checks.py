"""Whether a send's content may go out: template, sign, variables, numbers, length, hours.

Each check raises the gateway's ``Refusal``. The handler calls them in the gateway's order;
per-number policy (frequency, blacklist, balance) lives with the state it counts, in ``state.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

import phonenumbers

from worker.simulator.billing import render_template, rendered_message
from worker.simulator.config import SimulatorConfig, TemplateKind, TemplateSpec
from worker.simulator.parsing import Refusal, SendRequest
from worker.tencent.types import (
    BEIJING,
    MARKETING_CLOSES,
    MARKETING_OPENS,
    MAX_CONTENT_LENGTH,
    MAX_PARAM_LENGTH,
    Phone,
)

MARKETING_HOURS = range(MARKETING_OPENS, MARKETING_CLOSES)  # Beijing time, 08:00 to 21:59

_VERIFICATION_CODE = re.compile(r"\d{0,6}")
# A scheme, a www. host, or a name with a common top-level domain ("t.cn/x", "qq.com").
_URL = re.compile(
    r"https?://|www\.|\b[a-z0-9-]+\.(?:com|cn|net|org|info|biz|top|xyz|io|cc|me|co|vip|shop|club"
    r"|site|online|ly|gl|tv|link)\b",
    re.IGNORECASE | re.ASCII,
)
_PLACEHOLDER = re.compile(r"\{\d+\}")
_DOMESTIC_SIGN = re.compile(r"\A【([^】]*)】(.*)\Z|\A(.*)【([^】]*)】\Z", re.DOTALL)
_INTERNATIONAL_SIGN = re.compile(r"\A(?:\[([^\]]*)\]|【([^】]*)】)(.*)\Z", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Content:
    """A send's content once resolved against the approved templates and signs."""

    template: TemplateSpec
    params: tuple[str, ...]
    sign: str | None
    msg: str | None  # free text goes out exactly as sent

    def rendered(self, *, domestic: bool) -> str:
        if self.msg is not None:
            return self.msg
        text = render_template(self.template.text, self.params)
        return rendered_message(text, self.sign, domestic=domestic)


class TemplateBook:
    """The account-wide catalogue of templates and signs, indexed for the request path."""

    def __init__(self, config: SimulatorConfig) -> None:
        self._templates = {template.id: template for template in config.templates}
        self._approved_signs = frozenset(sign.text for sign in config.signs if sign.approved)
        self._default_sign = config.default_sign
        self._patterns = [
            (template, _template_pattern(template.text))
            for template in config.templates
            if template.approved
        ]

    def resolve(self, request: SendRequest, *, domestic: bool) -> Content:
        """1014 (template; 1017 first for an over-long free text), then 1012 (sign), then
        1036/1038/1048 (variables)."""
        if request.msg is not None:
            content = self._match_text(request.msg, marketing=request.marketing, domestic=domestic)
        else:
            content = self._by_id(request, domestic=domestic)
        if content.sign is not None and content.sign not in self._approved_signs:
            raise Refusal(1012, f"sign {content.sign!r} is not approved")
        if content.sign is None and domestic:
            raise Refusal(1012, "a domestic SMS needs an approved sign")
        check_variables(content.template, content.params)
        return content

    def _by_id(self, request: SendRequest, *, domestic: bool) -> Content:
        assert request.tpl_id is not None
        template = self._templates.get(request.tpl_id)
        if template is None:
            raise Refusal(1014, f"sdkappid not have this tpl_id {request.tpl_id}")
        if not template.approved:
            raise Refusal(1014, f"template {request.tpl_id} is not approved")
        if len(request.params) != template.param_count:
            raise Refusal(
                1014,
                f"template params error: {template.param_count} expected, "
                f"{len(request.params)} given",
            )
        sign = request.sign or (self._default_sign if domestic else None)
        return Content(template, request.params, sign, None)

    def _match_text(self, msg: str, *, marketing: bool, domestic: bool) -> Content:
        # Over the limit no template can match; say what is actually wrong.
        check_length(msg)
        sign, body = _split_sign(msg, domestic=domestic)
        candidates = sorted(
            (
                entry
                for entry in self._patterns
                if (entry[0].kind is TemplateKind.MARKETING) == marketing
            ),
            key=lambda entry: entry[0].international == domestic,  # the number's region first
        )
        for template, pattern in candidates:
            match = pattern.fullmatch(body)
            if match:
                params = tuple(match[f"p{n}"] for n in range(1, template.param_count + 1))
                return Content(template, params, sign, msg)
        kind = "marketing" if marketing else "verification or notification"
        raise Refusal(1014, f"text does not match an approved {kind} template")


def check_variables(template: TemplateSpec, params: tuple[str, ...]) -> None:
    for param in params:
        if len(param) > MAX_PARAM_LENGTH:
            raise Refusal(1036, f"{len(param)} characters")
    if template.kind is TemplateKind.VERIFICATION:
        for param in params:
            if not _VERIFICATION_CODE.fullmatch(param):
                raise Refusal(1038, f"{param!r}")
    for param in params:
        if _URL.search(param):
            raise Refusal(1048)


def check_region(template: TemplateSpec, *, domestic: bool) -> None:
    """Domestic templates go to mainland numbers, international ones elsewhere (1014)."""
    if template.international == domestic:
        region = "international" if template.international else "mainland China"
        raise Refusal(1014, f"template {template.id} is for {region} numbers only")


def check_phone(phone: Phone) -> None:
    if not valid_phone(phone.nationcode, phone.mobile):
        raise Refusal(1016, f"+{phone.nationcode} {phone.mobile}")


@lru_cache(maxsize=65_536)
def valid_phone(nationcode: str, mobile: str) -> bool:
    """A real, assignable number (libphonenumber's metadata), given as digits without ``+``."""
    if not (nationcode.isdigit() and mobile.isdigit() and 1 <= len(nationcode) <= 4):
        return False
    try:
        number = phonenumbers.parse(f"+{nationcode}{mobile}", None)
    except phonenumbers.NumberParseException:
        return False
    return bool(phonenumbers.is_valid_number(number))


def check_length(text: str) -> None:
    if len(text) > MAX_CONTENT_LENGTH:
        raise Refusal(1017, f"{len(text)} characters, at most {MAX_CONTENT_LENGTH}")


def check_marketing_hours(template: TemplateSpec, now: float) -> None:
    if template.kind is not TemplateKind.MARKETING:
        return
    if beijing_hour(now) not in MARKETING_HOURS:
        raise Refusal(1029)


def beijing_hour(now: float) -> int:
    return datetime.fromtimestamp(now, BEIJING).hour


def _split_sign(msg: str, *, domestic: bool) -> tuple[str | None, str]:
    """The sign a free text carries (at its start, or in mainland China its end) and the rest."""
    if domestic:
        match = _DOMESTIC_SIGN.fullmatch(msg)
        if not match:
            return None, msg
        if match.group(1) is not None:
            return match.group(1), match.group(2)
        return match.group(4), match.group(3)
    match = _INTERNATIONAL_SIGN.fullmatch(msg)
    if not match:
        return None, msg
    return match.group(1) if match.group(1) is not None else match.group(2), match.group(3)


def _template_pattern(text: str) -> re.Pattern[str]:
    """The template as a pattern: its fixed text literally, each ``{n}`` any text.

    A variable used twice must carry the same value both times (a back-reference).
    """
    pattern, seen, position = [], set(), 0
    for match in _PLACEHOLDER.finditer(text):
        pattern.append(re.escape(text[position : match.start()]))
        number = match.group()[1:-1]
        pattern.append(f"(?P=p{number})" if number in seen else f"(?P<p{number}>.*?)")
        seen.add(number)
        position = match.end()
    pattern.append(re.escape(text[position:]))
    return re.compile("".join(pattern), re.DOTALL)
