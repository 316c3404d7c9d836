"""From request bytes to typed requests, or the gateway's 1004 when the shape is wrong.

Only shape and types are checked here; whether the content may be sent is ``checks.py``'s job.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import phonenumbers

from worker.tencent.codes import code_info
from worker.tencent.types import MAX_PULL, Api, Phone

# The APIs whose body names numbers, and so whose `sig` covers them.
SEND_APIS = frozenset({Api.SENDSMS, Api.SENDISMS, Api.SENDMULTISMS2})


class Refusal(Exception):
    """A request the gateway answers with a non-zero ``result``."""

    def __init__(self, code: int, detail: str = "") -> None:
        super().__init__(code, detail)
        self.code = code
        self.detail = detail

    @property
    def errmsg(self) -> str:
        meaning = code_info(self.code).meaning
        return f"{meaning}: {self.detail}" if self.detail else meaning


@dataclass(frozen=True, slots=True)
class SendRequest:
    api: Api
    sig: str | None
    time: int
    ext: str
    extend: str
    phones: tuple[Phone, ...]
    tel: str | None  # sendisms: the E.164 string as sent, which is what it signs
    tpl_id: int | None  # None for free text
    params: tuple[str, ...]
    sign: str | None
    msg: str | None
    marketing: bool  # free text sent as type 1


@dataclass(frozen=True, slots=True)
class PullRequest:
    api: Api
    sig: str | None
    time: int
    type: int
    max: int
    phone: Phone | None = None  # pullstatus4mobile only
    begin_time: int = 0
    end_time: int = 0


@dataclass(frozen=True, slots=True)
class StatsRequest:
    sig: str | None
    time: int
    begin_hour: int  # Unix hours (seconds // 3600), inclusive
    end_hour: int


GatewayRequest = SendRequest | PullRequest | StatsRequest


# Only a \u escape can carry a surrogate into a body that is valid UTF-8: check those alone.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def decode_body(body: bytes) -> dict[str, Any]:
    """The JSON object in ``body``, read as UTF-8 whatever the Content-Type said."""
    try:
        value = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise Refusal(1004, "body is not UTF-8 JSON") from None
    if not isinstance(value, dict):
        raise Refusal(1004, "body is not a JSON object")
    if _SURROGATE_ESCAPE.search(body):
        try:
            # A lone surrogate escape parses, but no answer echoing it could be written.
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise Refusal(1004, "body holds a lone surrogate escape") from None
    return value


def parse_request(api: Api, body: Mapping[str, Any]) -> GatewayRequest:
    if api in SEND_APIS:
        return _send_request(api, body)
    if api is Api.PULLSENDSTATUS:
        return StatsRequest(
            sig=_sig(body),
            time=_int(body, "time"),
            begin_hour=_hour(body, "begin_date"),
            end_hour=_hour(body, "end_date"),
        )
    return _pull_request(api, body)


def _send_request(api: Api, body: Mapping[str, Any]) -> SendRequest:
    tel_raw = body.get("tel")
    tel: str | None = None
    if api is Api.SENDISMS:
        if not isinstance(tel_raw, str):
            raise Refusal(1004, "cannot get /tel")
        tel = tel_raw
        phones: tuple[Phone, ...] = (_split_e164(tel_raw),)
    elif api is Api.SENDMULTISMS2:
        if not isinstance(tel_raw, list) or not tel_raw:
            raise Refusal(1004, "cannot get /tel[]")
        phones = tuple(_phone(item, f"/tel[{i}]") for i, item in enumerate(tel_raw))
    else:
        phones = (_phone(tel_raw, "/tel"),)

    tpl_id: int | None = None
    params: tuple[str, ...] = ()
    sign: str | None = None
    msg: str | None = None
    marketing = False
    if "tpl_id" in body:
        tpl_id = _int(body, "tpl_id")
        params_raw = body.get("params", [])
        if not isinstance(params_raw, list) or not all(isinstance(p, str) for p in params_raw):
            raise Refusal(1004, "params must be a list of strings")
        params = tuple(params_raw)
        sign = _optional_str(body, "sign") or None
    elif "msg" in body:
        msg = _optional_str(body, "msg")
        msg_type = _int(body, "type") if "type" in body else 0
        if msg_type not in (0, 1):
            raise Refusal(1004, "type must be 0 or 1")
        marketing = msg_type == 1
    else:
        raise Refusal(1004, "cannot get /tpl_id or /msg")

    extend = _optional_str(body, "extend")
    if extend and not extend.isdigit():
        raise Refusal(1004, "extend must be digits")
    return SendRequest(
        api=api,
        sig=_sig(body),
        time=_int(body, "time"),
        ext=_optional_str(body, "ext"),
        extend=extend,
        phones=phones,
        tel=tel,
        tpl_id=tpl_id,
        params=params,
        sign=sign,
        msg=msg,
        marketing=marketing,
    )


def _pull_request(api: Api, body: Mapping[str, Any]) -> PullRequest:
    pull_type = _int(body, "type")
    if pull_type not in (0, 1):
        raise Refusal(1004, "type must be 0 (reports) or 1 (replies)")
    count = _int(body, "max")
    if not 1 <= count <= MAX_PULL:
        raise Refusal(1004, f"max must be 1 to {MAX_PULL}")
    sig, signed_time = _sig(body), _int(body, "time")
    request = PullRequest(api=api, sig=sig, time=signed_time, type=pull_type, max=count)
    if api is not Api.PULLSTATUS4MOBILE:
        return request
    phone = _phone({"nationcode": body.get("nationcode"), "mobile": body.get("mobile")}, "")
    return PullRequest(
        api=api,
        sig=request.sig,
        time=request.time,
        type=pull_type,
        max=count,
        phone=phone,
        begin_time=_int(body, "begin_time"),
        end_time=_int(body, "end_time"),
    )


def _phone(raw: object, where: str) -> Phone:
    if not isinstance(raw, Mapping):
        raise Refusal(1004, f"cannot get {where}")
    nationcode, mobile = raw.get("nationcode"), raw.get("mobile")
    # The official Python SDK sends a group's nationcode as a JSON number; the gateway takes it.
    if isinstance(nationcode, int) and not isinstance(nationcode, bool) and nationcode >= 0:
        nationcode = str(nationcode)
    if not isinstance(nationcode, str):
        raise Refusal(1004, f"cannot get {where}/nationcode")
    if not isinstance(mobile, str):
        raise Refusal(1004, f"cannot get {where}/mobile")
    return Phone(nationcode, mobile)


def _split_e164(tel: str) -> Phone:
    """``+8613788888888`` as (86, 13788888888); an unparseable one is left for the 1016 check."""
    try:
        number = phonenumbers.parse(tel, None)
    except phonenumbers.NumberParseException:
        return Phone("", tel)
    return Phone(str(number.country_code), phonenumbers.national_significant_number(number))


def _sig(body: Mapping[str, Any]) -> str | None:
    sig = body.get("sig")
    if sig is not None and not isinstance(sig, str):
        raise Refusal(1004, "sig must be a string")
    return sig or None


def _int(body: Mapping[str, Any], key: str) -> int:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise Refusal(1004, f"cannot get /{key} as a number")
    return value


def _optional_str(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise Refusal(1004, f"{key} must be a string")
    return value


def _hour(body: Mapping[str, Any], key: str) -> int:
    """A ``yyyymmddhh`` Beijing hour as Unix hours; Beijing keeps UTC+8 all year."""
    value = _int(body, key)
    try:
        hour = datetime.strptime(f"{value}+0800", "%Y%m%d%H%z")
    except ValueError:
        raise Refusal(1004, f"{key} must be yyyymmddhh") from None
    return int(hour.timestamp()) // 3600
