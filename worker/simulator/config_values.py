"""Typed values read from the simulator's configuration, TOML or control-API JSON alike.

Each reader refuses a wrong type, NaN, Infinity or a value out of range with ``ConfigError``
naming the key; none quotes a value that could hold a secret (a callback URL), and keys from
the network are quoted short.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

MAX_COUNT = 10**12  # limits and balance: far beyond any real account, within JSON's comfort
MAX_URL_LENGTH = 2048


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the offending key."""


def callback_url(url: object, where: str) -> str:
    # Never quoted back: the URL's path may hold the receiver's token.
    problem = f"{where} must be an http:// or https:// URL with a host"
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ConfigError(problem)
    if len(url) > MAX_URL_LENGTH or any(c.isspace() or not c.isprintable() for c in url):
        raise ConfigError(f"{problem}, at most {MAX_URL_LENGTH} printable characters, no spaces")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (reading it checks it)
    except ValueError:
        raise ConfigError(f"{problem} and a port from 0 to 65535") from None
    if not parts.hostname:
        raise ConfigError(problem)
    return url


def table(raw: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key} must be a table ([{key}])")
    return value


def known_keys(raw: Mapping[str, Any], keys: set[str], where: str) -> None:
    unknown = set(raw) - keys
    if unknown:
        # Quoted short: keys come from the network too (the control API).
        named = ", ".join(repr(str(key)[:40]) for key in sorted(unknown, key=str)[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise ConfigError(f"{where}: unknown keys {named}{more}; known: {', '.join(sorted(keys))}")


def flag(raw: Mapping[str, Any], key: str, default: bool, where: str) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}.{key} must be true or false")
    return value


def bounded(
    raw: Mapping[str, Any], key: str, default: float, low: float, high: float, where: str
) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ConfigError(f"{where}.{key} must be a number from {low:g} to {high:g}")
    return float(value)


def whole(raw: Mapping[str, Any], key: str, default: int, low: int, high: int, where: str) -> int:
    value = raw.get(key, default)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{where}.{key} must be a whole number from {low} to {high}")
    return value


def optional_count(raw: Mapping[str, Any], key: str, where: str) -> int | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        raise ConfigError(
            f"{where}.{key} must be a whole number from 0 to {MAX_COUNT} "
            "(leave it out for no limit)"
        )
    return value
