"""Log lines people can read and machines can parse, with no phone number or secret in them.

- ``RedactingFilter`` masks phone numbers (``137****8888``: the first 3 and last 4 digits of the
  national number) and replaces known secrets (appkeys, the receiver token) in the message, its
  arguments, string ``extra=`` fields and the exception text. It sits on the *handlers*, so
  every record that is written passes through it, whichever logger or call site made it.
- ``log_context`` puts the message being worked on (``message_id``, ``batch_id``, ``account``,
  ``kind``) into a context variable; ``ContextFilter`` copies it onto every record made meanwhile,
  so a line logged deep inside the ledger or the HTTP client still says which message it was
  about. ``extra=`` fields at a call site (``attempt_no``, ``outcome``) win over the context.
- ``JsonFormatter`` writes one JSON object per line (``SMS_LOG_FORMAT=json``); plain text stays
  the default.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal

from phonenumbers import COUNTRY_CODE_TO_REGION_CODE

LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
SECRET_MASK = "********"  # noqa: S105 - what stands in for a secret, not one
# A secret shorter than this is not looked for: replacing "1" everywhere would garble the log.
MIN_SECRET_LENGTH = 8

# --- phone numbers -----------------------------------------------------------------------------

# +<country code><national number>, as E.164 spells it.
_E164 = re.compile(r"(?<![\w+])\+(\d{7,15})(?![\d])")
# A mainland mobile, alone or behind its country code without the plus: 1[3-9] and 9 digits.
_MAINLAND = re.compile(r"(?<![\w])(86)?(1[3-9]\d{9})(?![\w])")
# Any run of digits a field name says is a number: mobile=..., "phone": "...", tel: ...
_LABELLED = re.compile(
    r"""((?:mobile|phone|tel|msisdn)["']?\s*[:=]\s*["']?)(\d{5,15})(?![\d])""", re.IGNORECASE
)


def mask_national(number: str) -> str:
    """``13712348888`` -> ``137****8888``; numbers under 10 digits keep only their last 2."""
    if len(number) >= 10:
        return f"{number[:3]}****{number[-4:]}"
    return f"****{number[-2:]}"


def _mask_e164(match: re.Match[str]) -> str:
    digits = match.group(1)
    # Country codes are prefix-free (no code is the start of another), so the first match wins.
    for length in (1, 2, 3):
        if int(digits[:length]) in COUNTRY_CODE_TO_REGION_CODE:
            return f"+{digits[:length]}{mask_national(digits[length:])}"
    return f"+{mask_national(digits)}"


def mask_phone_numbers(text: str) -> str:
    """``text`` with every phone number in it masked."""
    if not any(char.isdigit() for char in text):
        return text
    text = _E164.sub(_mask_e164, text)
    text = _MAINLAND.sub(lambda m: f"{m.group(1) or ''}{mask_national(m.group(2))}", text)
    return _LABELLED.sub(lambda m: f"{m.group(1)}{mask_national(m.group(2))}", text)


class Redactor:
    """Masks phone numbers and replaces the given secrets (longest first) in a text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = sorted(
            {secret for secret in secrets if len(secret) >= MIN_SECRET_LENGTH},
            key=len,
            reverse=True,
        )

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, SECRET_MASK)
        return mask_phone_numbers(text)


# The attributes every LogRecord has; anything else on a record came from ``extra=`` (or from a
# filter such as ContextFilter). uvicorn's colour copy of its message is left out too.
_RECORD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


class RedactingFilter(logging.Filter):
    """Rewrites each record so that no formatter can write a phone number or a secret.

    The message is formatted with its arguments first (an argument may be the number), the
    exception is rendered to text, and both are masked; so are string ``extra=`` fields.
    """

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        # A filter that raised would raise out of the log call, into the send path: never.
        try:
            self._redact(record)
        except Exception:
            # A line that cannot be masked is not written as it came: it might hold a number.
            record.msg, record.args = "(a log line was left out: it could not be masked)", None
            record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True

    def _redact(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a call site's format and arguments do not match
            message = f"{record.msg} (arguments: {record.args!r})"
        record.msg, record.args = self.redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = _EXCEPTIONS.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        for key, value in list(record.__dict__.items()):
            if key in _RECORD_ATTRIBUTES or value is None or isinstance(value, int | float):
                continue
            record.__dict__[key] = self.redact(value if isinstance(value, str) else repr(value))


_EXCEPTIONS = logging.Formatter()

# --- what a line is about ----------------------------------------------------------------------

_context: ContextVar[Mapping[str, Any] | None] = ContextVar("sms_log_context", default=None)


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Every record made inside carries ``fields`` (and what ``bind_log_context`` adds)."""
    token = _context.set({**current_log_context(), **fields})
    try:
        yield
    finally:
        _context.reset(token)


def bind_log_context(**fields: Any) -> None:
    """Add ``fields`` to the current ``log_context``, until that block ends."""
    _context.set({**current_log_context(), **fields})


def current_log_context() -> Mapping[str, Any]:
    return _context.get() or {}


class ContextFilter(logging.Filter):
    """Copies the ``log_context`` fields onto each record (a call site's ``extra=`` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in current_log_context().items():
            record.__dict__.setdefault(key, value)
        return True


# --- output ------------------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, then every extra field."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_"):
                entry[key] = value if _is_plain(value) else str(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc_info"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False, default=str)


def _is_plain(value: object) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def install(
    handler: logging.Handler, *, log_format: LogFormat, secrets: Iterable[str] = ()
) -> None:
    """Give ``handler`` the context and redaction filters, and the JSON formatter if asked.

    Safe to call twice on one handler (Celery sets up its loggers again in some children).
    """
    for kind in (ContextFilter, RedactingFilter):
        handler.filters = [f for f in handler.filters if not isinstance(f, kind)]
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactingFilter(Redactor(secrets)))
    if log_format == "json":
        handler.setFormatter(JsonFormatter())


def configure_logging(
    *, level: int | str = logging.INFO, log_format: LogFormat = "text", secrets: Iterable[str] = ()
) -> logging.Handler:
    """Root logging of a server command: one stderr handler, redacted, text or JSON."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    install(handler, log_format=log_format, secrets=secrets)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper() if isinstance(level, str) else level)
    return handler
