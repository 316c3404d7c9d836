"""The v5 protocol's vocabulary: API names, limits, and the typed shapes of what goes over the wire.

Shared by the client and the simulator. Only data lives here; the code that signs a request
or counts its segments lives apart, once for the client and once, independently, for the
simulator that checks it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta, timezone
from enum import StrEnum

API_PREFIX = "/v5/tlssmssvr/"
DEFAULT_GATEWAY_URL = "https://yun.tim.qq.com"
DOMESTIC_NATIONCODE = "86"
# The gateway keeps Beijing time: quotas, statistics hours, report times and the marketing
# window. Mainland China has kept UTC+8 without daylight saving since 1991.
BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")
# Marketing goes out from 08:00 to 22:00 Beijing time; the gateway refuses it otherwise (1029).
MARKETING_OPENS = 8
MARKETING_CLOSES = 22

MAX_GROUP_SIZE = 200  # 1046 beyond
MAX_CONTENT_LENGTH = 450  # signature included; 1017 beyond
MAX_PARAM_LENGTH = 12  # one template variable; 1036 beyond
MAX_PULL = 100  # pullstatus `max`
MAX_CLOCK_SKEW_SECONDS = 600  # `time` further than this from the gateway's clock: 1021

# Delivery report statuses and operator codes.
REPORT_SUCCESS = "SUCCESS"
REPORT_FAIL = "FAIL"
DELIVERED_CODE = "DELIVRD"


class Api(StrEnum):
    SENDSMS = "sendsms"
    SENDISMS = "sendisms"
    SENDMULTISMS2 = "sendmultisms2"
    PULLSTATUS = "pullstatus"
    PULLSTATUS4MOBILE = "pullstatus4mobile"
    PULLSENDSTATUS = "pullsendstatus"


# `type` of a pull.
PULL_REPORTS = 0
PULL_REPLIES = 1


@dataclass(frozen=True, slots=True)
class Phone:
    """A normalised number: country calling code and national number, digits only."""

    nationcode: str
    mobile: str

    @property
    def e164(self) -> str:
        return f"+{self.nationcode}{self.mobile}"

    @property
    def domestic(self) -> bool:
        return self.nationcode == DOMESTIC_NATIONCODE


@dataclass(frozen=True, slots=True)
class Template:
    """Content by approved template: ``params`` fill ``{1}``, ``{2}``, ... in order."""

    tpl_id: int
    params: tuple[str, ...] = ()
    sign: str | None = None  # signature text without 【】; None uses the account's default


@dataclass(frozen=True, slots=True)
class Text:
    """Free text that must match an approved template; ``marketing`` sends it as type 1."""

    msg: str
    marketing: bool = False


Content = Template | Text


@dataclass(frozen=True, slots=True)
class SendResult:
    """The answer for one number: a single send, or one ``detail`` entry of a group send."""

    result: int
    errmsg: str
    ext: str = ""
    fee: int = 0
    sid: str = ""
    nationcode: str = ""
    mobile: str = ""


@dataclass(frozen=True, slots=True)
class GroupSendResult:
    """The answer to ``sendmultisms2``; ``detail`` is empty when the whole request was refused."""

    result: int
    errmsg: str
    ext: str = ""
    detail: tuple[SendResult, ...] = ()


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """One status report, as pushed in a callback array or returned by ``pullstatus`` type 0."""

    user_receive_time: str  # "YYYY-MM-DD HH:MM:SS", Beijing time
    nationcode: str
    mobile: str
    report_status: str  # SUCCESS or FAIL
    errmsg: str  # operator code: DELIVRD, UNDELIV, REJECTD, EXPIRED, MX:0012, ...
    description: str
    sid: str


@dataclass(frozen=True, slots=True)
class Reply:
    """One reply (MO), as pushed in a callback object or returned by ``pullstatus`` type 1."""

    extend: str
    mobile: str
    nationcode: str
    sign: str
    text: str
    time: int  # Unix seconds


@dataclass(frozen=True, slots=True)
class PullResult:
    result: int
    errmsg: str
    reports: tuple[DeliveryReport, ...] = ()
    replies: tuple[Reply, ...] = ()

    @property
    def count(self) -> int:
        return len(self.reports) + len(self.replies)


@dataclass(frozen=True, slots=True)
class SendStats:
    """``pullsendstatus``: requests, successes and billed segments over an hour range."""

    result: int
    errmsg: str
    request: int = 0
    success: int = 0
    bill_number: int = 0
    extra: dict[str, int] = field(default_factory=dict)
