"""Request bodies from typed inputs, and typed results from response bodies.

Building is strict (the gateway answers 1004 to a string where it wants a number); parsing is
lenient (a missing optional field, or a number sent as a string, is read rather than refused),
but a body that is not a JSON object carrying ``result`` is a ``MalformedResponse``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from worker.tencent.types import (
    PULL_REPLIES,
    PULL_REPORTS,
    Content,
    DeliveryReport,
    GroupSendResult,
    Phone,
    PullResult,
    Reply,
    SendResult,
    SendStats,
    Template,
)

Body = dict[str, Any]
INTEGER_TEXT = re.compile(r"\s*-?[0-9]+\s*")


class MalformedResponse(ValueError):
    """A response body that cannot be read as the API's answer; the message is safe to log."""


# --- requests ---------------------------------------------------------------------------------


def encode(body: Mapping[str, Any]) -> bytes:
    """UTF-8 JSON, with non-ASCII text as is (shorter than \\u escapes, and what the SDKs send)."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def content_fields(content: Content) -> Body:
    if isinstance(content, Template):
        fields: Body = {"tpl_id": int(content.tpl_id), "params": [str(p) for p in content.params]}
        if content.sign is not None:
            fields["sign"] = content.sign
        return fields
    return {"type": 1 if content.marketing else 0, "msg": content.msg}


def tel_object(phone: Phone) -> dict[str, str]:
    return {"nationcode": phone.nationcode, "mobile": phone.mobile}


def sendsms_body(
    phone: Phone, content: Content, *, sig: str, time: int, ext: str = "", extend: str = ""
) -> Body:
    return _send_body(tel_object(phone), content, sig, time, ext, extend)


def sendisms_body(
    phone: Phone, content: Content, *, sig: str, time: int, ext: str = "", extend: str = ""
) -> Body:
    return _send_body(phone.e164, content, sig, time, ext, extend)


def sendmultisms2_body(
    phones: Sequence[Phone],
    content: Content,
    *,
    sig: str,
    time: int,
    ext: str = "",
    extend: str = "",
) -> Body:
    return _send_body([tel_object(p) for p in phones], content, sig, time, ext, extend)


def pullstatus_body(*, sig: str, time: int, replies: bool, max_items: int) -> Body:
    return {
        "sig": sig,
        "time": time,
        "type": PULL_REPLIES if replies else PULL_REPORTS,
        "max": max_items,
    }


def pullstatus4mobile_body(
    phone: Phone,
    *,
    sig: str,
    time: int,
    begin_time: int,
    end_time: int,
    replies: bool,
    max_items: int,
) -> Body:
    return {
        **pullstatus_body(sig=sig, time=time, replies=replies, max_items=max_items),
        "begin_time": begin_time,
        "end_time": end_time,
        "nationcode": phone.nationcode,
        "mobile": phone.mobile,
    }


def pullsendstatus_body(*, sig: str, time: int, begin_date: int, end_date: int) -> Body:
    return {"sig": sig, "time": time, "begin_date": begin_date, "end_date": end_date}


def _send_body(tel: object, content: Content, sig: str, time: int, ext: str, extend: str) -> Body:
    return {
        "tel": tel,
        **content_fields(content),
        "sig": sig,
        "time": time,
        "extend": str(extend),
        "ext": str(ext),
    }


# --- responses --------------------------------------------------------------------------------


def read_object(body: bytes | str) -> Body:
    """The JSON object of a response, which must carry an integer ``result``."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise MalformedResponse("body is not JSON") from None
    if not isinstance(data, dict):
        raise MalformedResponse(f"body is a JSON {type(data).__name__}, not an object")
    if "result" not in data:
        raise MalformedResponse("body has no result")
    data["result"] = _int(data["result"], "result", default=None)
    return data


def parse_send(body: bytes | str) -> SendResult:
    """``sendsms`` or ``sendisms``."""
    return _send_result(read_object(body))


def parse_group(body: bytes | str) -> GroupSendResult:
    """``sendmultisms2``; ``detail`` may be missing or null when the request was refused."""
    data = read_object(body)
    detail = data.get("detail") or []
    if not isinstance(detail, list):
        raise MalformedResponse("detail is not a list")
    return GroupSendResult(
        result=data["result"],
        errmsg=_errmsg(data),
        ext=_str(data.get("ext")),
        detail=tuple(_send_result(_item(item, "detail")) for item in detail),
    )


def parse_pull(body: bytes | str, *, replies: bool) -> PullResult:
    """``pullstatus`` or ``pullstatus4mobile``: reports for type 0, replies for type 1."""
    data = read_object(body)
    items = data.get("data") or []
    if not isinstance(items, list):
        raise MalformedResponse("data is not a list")
    objects = [_item(item, "data") for item in items]
    if replies:
        return PullResult(
            data["result"], _errmsg(data), replies=tuple(parse_reply(o) for o in objects)
        )
    return PullResult(
        data["result"], _errmsg(data), reports=tuple(parse_report(o) for o in objects)
    )


def parse_send_stats(body: bytes | str) -> SendStats:
    """``pullsendstatus``; figures other than the three named ones land in ``extra``."""
    data = read_object(body)
    figures = data.get("data") or {}
    if not isinstance(figures, dict):
        raise MalformedResponse("data is not an object")
    named = ("request", "success", "bill_number")
    return SendStats(
        result=data["result"],
        errmsg=_errmsg(data),
        request=_int(figures.get("request"), "data.request"),
        success=_int(figures.get("success"), "data.success"),
        bill_number=_int(figures.get("bill_number"), "data.bill_number"),
        # Other statistics APIs answer with more figures; keep those that are counts.
        extra={
            str(key): _int(value, str(key))
            for key, value in figures.items()
            if key not in named and _is_integer(value)
        },
    )


def parse_report(item: Mapping[str, Any]) -> DeliveryReport:
    """One delivery report, from a pull or a callback array."""
    return DeliveryReport(
        user_receive_time=_str(item.get("user_receive_time")),
        nationcode=_str(item.get("nationcode")),
        mobile=_str(item.get("mobile")),
        report_status=_str(item.get("report_status")),
        errmsg=_str(item.get("errmsg")),
        description=_str(item.get("description")),
        sid=_str(item.get("sid")),
    )


def parse_reply(item: Mapping[str, Any]) -> Reply:
    """One reply, from a pull or a callback."""
    return Reply(
        extend=_str(item.get("extend")),
        mobile=_str(item.get("mobile")),
        nationcode=_str(item.get("nationcode")),
        sign=_str(item.get("sign")),
        text=_str(item.get("text")),
        time=_int(item.get("time", 0), "time"),
    )


def _send_result(data: Mapping[str, Any]) -> SendResult:
    return SendResult(
        result=_int(data.get("result"), "result", default=None),
        errmsg=_errmsg(data),
        ext=_str(data.get("ext")),
        fee=_int(data.get("fee", 0), "fee"),
        sid=_str(data.get("sid")),
        nationcode=_str(data.get("nationcode")),
        mobile=_str(data.get("mobile")),
    )


def _errmsg(data: Mapping[str, Any]) -> str:
    return _str(data["errmsg"] if "errmsg" in data else data.get("msg"))


def _item(item: object, where: str) -> Mapping[str, Any]:
    if not isinstance(item, dict):
        raise MalformedResponse(f"an item of {where} is a {type(item).__name__}, not an object")
    return item


def _str(value: object) -> str:
    return "" if value is None else str(value)


def _is_integer(value: object) -> bool:
    try:
        _int(value, "", default=None)
    except MalformedResponse:
        return False
    return True


def _int(value: object, name: str, default: int | None = 0) -> int:
    """An integer, also when sent as a string; ``default`` stands in for a missing value."""
    if value is None and default is not None:
        return default
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and INTEGER_TEXT.fullmatch(value):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise MalformedResponse(f"{name} is not an integer: {value!r:.40}")
