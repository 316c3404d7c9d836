"""Callback bodies, strictly: JSON values to ``DeliveryReport`` and ``Reply``, or a clear refusal.

``worker.tencent.wire`` reads the gateway's answers leniently (a missing field becomes ""),
which suits a pull; a callback is input from the network, so here a missing or ill-typed field
refuses the whole body, with a message naming the field and the item. Unknown fields are
ignored: the gateway may add some. The values themselves (time format, lengths) are checked by
``worker.services.reports`` for both paths.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from worker.tencent.types import DOMESTIC_NATIONCODE, DeliveryReport, Reply


class BadBody(ValueError):
    """A body that is not what the route takes; the message is safe to send back."""


def decode(body: bytes) -> Any:
    """The JSON value of ``body`` (UTF-8, or the UTF-16/32 that JSON allows)."""
    if not body.strip():
        raise BadBody("body is empty; expected JSON")
    try:
        return json.loads(body)
    except RecursionError:
        raise BadBody("body is nested too deeply") from None
    except ValueError as error:  # also UnicodeDecodeError
        raise BadBody(f"body is not JSON: {_first_words(error)}") from None


def reports_from(data: Any) -> list[DeliveryReport]:
    """A status callback: a JSON array of report objects."""
    if not isinstance(data, list):
        raise BadBody(f"body must be a JSON array of delivery reports, got {_kind(data)}")
    return [_report(item, index) for index, item in enumerate(data)]


def reply_from(data: Any) -> Reply:
    """A reply callback: one JSON object."""
    if not isinstance(data, dict):
        raise BadBody(f"body must be a JSON object (a reply), got {_kind(data)}")
    fields = _Fields(data, None)
    return Reply(
        mobile=fields.get("mobile", _code),
        # The older reply callback (上行短信) has no nationcode: it served mainland numbers only.
        nationcode=fields.get("nationcode", _code, default=DOMESTIC_NATIONCODE),
        text=fields.get("text", _string),
        time=fields.get("time", _seconds),
        sign=fields.get("sign", _string, default=""),
        extend=fields.get("extend", _code, default=""),
    )


def _report(item: Any, index: int) -> DeliveryReport:
    if not isinstance(item, dict):
        raise BadBody(f"item {index}: must be a JSON object (a delivery report), got {_kind(item)}")
    fields = _Fields(item, index)
    return DeliveryReport(
        user_receive_time=fields.get("user_receive_time", _string),
        nationcode=fields.get("nationcode", _code),
        mobile=fields.get("mobile", _code),
        report_status=fields.get("report_status", _string),
        errmsg=fields.get("errmsg", _string),
        description=fields.get("description", _string, default=""),
        sid=fields.get("sid", _string),
    )


class _Fields:
    """Typed reads of one object's fields, refusing with the field's name and item's index."""

    def __init__(self, item: Mapping[str, Any], index: int | None) -> None:
        self.item = item
        self.where = "" if index is None else f"item {index}: "

    def get(self, name: str, read: Callable[[Any], Any], *, default: Any = None) -> Any:
        if name not in self.item:
            if default is not None:
                return default
            raise BadBody(f"{self.where}{name} is missing")
        try:
            return read(self.item[name])
        except TypeError as error:
            raise BadBody(f"{self.where}{name} {error}") from None


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"must be a string, got {_kind(value)}")
    return value


def _code(value: Any) -> str:
    """A number's parts and codes: a string, or a whole number some senders use instead."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    if not isinstance(value, str):
        raise TypeError(f"must be a string of digits, got {_kind(value)}")
    return value


def _seconds(value: Any) -> int:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"must be Unix seconds (a whole number), got {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    """A JSON value's kind, for messages; never the value itself (it may be huge or hostile)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _first_words(error: ValueError) -> str:
    # json's messages say where ("Expecting value: line 1 column 1 (char 0)"); keep them short.
    return str(error).splitlines()[0][:120]
