"""What a usable value of each kind of ``SMS_*`` setting is: numbers within a range the worker
can run with, URLs whose scheme, port and database the parts behind them accept.

Each check raises ``ValueError`` saying what is wrong (``worker.config`` puts the setting's name
in front). A URL is never quoted back: it may hold a password. Bad values are refused when the
settings are read, so a command answers with one line naming the setting instead of failing
later, deep inside a driver, or, worse, running on a value silently read as another.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, parse_qs, urlsplit

from kombu.transport import TRANSPORT_ALIASES
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from worker.ledger.db import database_url

SECONDS_IN_A_DAY = 86_400
REDIS_SCHEMES = ("redis", "rediss", "unix")


def read_toml(
    path: Path, *, error: type[ValueError] = ValueError, setting: str = ""
) -> dict[str, Any]:
    """The TOML document at ``path``, or ``error`` saying why not (after ``setting: `` when
    given): unreadable, not TOML, or not UTF-8."""
    where = f"{setting}: " if setting else ""
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except OSError as failure:
        raise error(f"{where}cannot read '{path}': {failure.strerror}") from None
    except tomllib.TOMLDecodeError as failure:
        raise error(f"{where}'{path}' is not valid TOML: {failure}") from None
    except UnicodeDecodeError:
        raise error(f"{where}'{path}' is not UTF-8 text; save it as UTF-8") from None


def _as_number(value: Any) -> float | None:
    """``value`` as a finite number, or None (bools are not numbers here)."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _shown(number: float) -> str:
    return str(int(number)) if number == int(number) else f"{number:g}"


def positive_number(maximum: float, unit: str) -> Callable[[Any], float]:
    """A check for a number above 0 and at most ``maximum`` (``unit``: what it counts).

    The ceiling keeps every value the worker accepts one it can compute with (a lease of 1e300
    seconds overflows a datetime in the middle of a send).
    """

    def check(value: Any) -> float:
        number = _as_number(value)
        if number is None or not 0 < number <= maximum:
            raise ValueError(f"must be a number of {unit} above 0 and at most {_shown(maximum)}")
        return number

    return check


def whole_number(minimum: int, maximum: int, unit: str) -> Callable[[Any], int]:
    """A check for a whole number from ``minimum`` to ``maximum``."""

    def check(value: Any) -> int:
        number = _as_number(value)
        if number is None or number != int(number) or not minimum <= number <= maximum:
            raise ValueError(f"must be a whole number of {unit} from {minimum} to {maximum}")
        return int(number)

    return check


def signed_number(limit: float, unit: str) -> Callable[[Any], float]:
    """A check for a number from ``-limit`` to ``limit``."""

    def check(value: Any) -> float:
        number = _as_number(value)
        if number is None or not -limit <= number <= limit:
            raise ValueError(f"must be a number of {unit} from {_shown(-limit)} to {_shown(limit)}")
        return number

    return check


def _url_parts(text: str, example: str) -> SplitResult:
    """``text`` split as a URL with a scheme and a usable port, or ValueError."""
    parts = urlsplit(text)
    if not parts.scheme or "://" not in text:
        raise ValueError(f"must be a URL such as {example}")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise ValueError("has a port that is not a number from 1 to 65535")
    return parts


def _redis_database(parts: SplitResult) -> None:
    """A Redis URL's database (``/N`` or ``?db=N``) must be a whole number: redis-py silently
    uses database 0 for ``/abc``, and the throttle or the queues would land there."""
    path = parts.path.strip("/") if parts.scheme != "unix" else ""  # unix://: a socket's path
    if path and not path.isdigit():
        raise ValueError("names a database that is not a whole number (e.g. /1)")
    for number in parse_qs(parts.query).get("db", []):
        if not number.isdigit():
            raise ValueError("names a database (db=) that is not a whole number")


def http_url(value: Any) -> str:
    text = str(value).strip()
    example = "https://yun.tim.qq.com"
    parts = _url_parts(text, example)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an http(s) URL such as {example}")
    return text.rstrip("/")


def broker_url(value: Any) -> str:
    """A URL of a transport kombu has (Redis, RabbitMQ, ...): what Celery can connect to."""
    text = str(value)
    example = "redis://localhost:6379/0"
    parts = _url_parts(text, example)
    transport = parts.scheme.split("+", 1)[0]
    if transport not in TRANSPORT_ALIASES:
        raise ValueError(
            f"unknown scheme '{parts.scheme}'; use redis://, rediss:// or amqp://, e.g. {example}"
        )
    if transport in REDIS_SCHEMES:
        _redis_database(parts)
    return text


def redis_url(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value)
    example = "redis://localhost:6379/1"
    parts = _url_parts(text, example)
    if parts.scheme not in REDIS_SCHEMES:
        raise ValueError(f"must be a Redis URL (redis://, rediss:// or unix://) such as {example}")
    _redis_database(parts)
    return text


def ledger_url_problem(url: str) -> str | None:
    """What keeps the ledger from running on ``url`` (None: nothing): not a PostgreSQL or SQLite
    URL, a bad port, or a driver that SQLAlchemy does not have or that is not installed."""
    try:
        parsed = database_url(url)
    except ArgumentError as error:
        return str(error)
    except ValueError:  # SQLAlchemy reads the port with int()
        return "has a port that is not a number"
    try:
        parsed.get_dialect().import_dbapi()
    except NoSuchModuleError:
        return f"unknown driver '{parsed.drivername}'; use sqlite:/// or postgresql://"
    except ImportError:
        return f"the driver of '{parsed.drivername}' is not installed"
    return None


def ledger_url(value: Any) -> str:
    problem = ledger_url_problem(str(value))
    if problem is not None:
        raise ValueError(problem)
    return str(value)
