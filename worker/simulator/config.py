"""The simulator's configuration: accounts, signs, templates, limits, faults, scripts, reports.

Read from a small TOML file (``example.toml`` documents every key) on top of the built-in
defaults of ``defaults.py``, then adjusted by command-line flags. Every value is checked here,
once, so the request path can trust it.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from worker.clock import offset_seconds as worker_clock_offset
from worker.simulator.config_values import ConfigError as ConfigError  # re-exported
from worker.simulator.config_values import (
    bounded,
    callback_url,
    flag,
    known_keys,
    optional_count,
    table,
    whole,
)
from worker.simulator.defaults import DEFAULTS
from worker.simulator.faults import FaultSettings, Step, StepError, parse_steps

DEFAULT_LOG_LIMIT = 10_000
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_FAIL_CODES = ("UNDELIV", "REJECTD", "EXPIRED", "MX:0012")
# The simulator's clock must stay where dates can be printed: 1970 to 2100, Unix seconds.
LATEST_TIME = 4_102_444_800
MAX_CLOCK_OFFSET = 100 * 366 * 86_400
_PLACEHOLDER = re.compile(r"\{(\d+)\}")


class TemplateKind(StrEnum):
    VERIFICATION = "verification"
    NOTIFICATION = "notification"
    MARKETING = "marketing"


@dataclass(frozen=True, slots=True)
class Account:
    sdkappid: str
    appkey: str = field(repr=False)
    # Sending a non-empty `extend` without this permission answers 1006, as on the console.
    extend_allowed: bool = False


@dataclass(frozen=True, slots=True)
class SignSpec:
    text: str
    approved: bool = True


@dataclass(frozen=True, slots=True)
class TemplateSpec:
    id: int
    text: str
    kind: TemplateKind = TemplateKind.NOTIFICATION
    international: bool = False
    approved: bool = True

    @property
    def param_count(self) -> int:
        return max((int(n) for n in _PLACEHOLDER.findall(self.text)), default=0)


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-number frequency limits, blacklist and prepaid balance; None means no limit."""

    per_number_30s: int | None = None  # 1023 beyond
    per_number_hour: int | None = None  # 1024 beyond
    per_number_day: int | None = None  # 1025 beyond (Beijing calendar day)
    balance: int | None = None  # prepaid segments for all accounts; 1031 once spent
    blacklist: frozenset[str] = frozenset()  # national numbers or E.164; 1015

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], where: str = "limits") -> Limits:
        known_keys(raw, {f for f in cls.__dataclass_fields__}, where)
        blacklist = raw.get("blacklist", [])
        if not isinstance(blacklist, list) or not all(isinstance(n, str) for n in blacklist):
            raise ConfigError(f"{where}.blacklist must be a list of numbers as strings")
        return cls(
            per_number_30s=optional_count(raw, "per_number_30s", where),
            per_number_hour=optional_count(raw, "per_number_hour", where),
            per_number_day=optional_count(raw, "per_number_day", where),
            balance=optional_count(raw, "balance", where),
            blacklist=frozenset(blacklist),
        )

    @property
    def frequency_limited(self) -> bool:
        return (self.per_number_30s, self.per_number_hour, self.per_number_day) != (None,) * 3

    def to_json(self) -> dict[str, object]:
        return {
            "per_number_30s": self.per_number_30s,
            "per_number_hour": self.per_number_hour,
            "per_number_day": self.per_number_day,
            "balance": self.balance,
            "blacklist": sorted(self.blacklist),
        }


@dataclass(frozen=True, slots=True)
class ReportSettings:
    """Delivery reports: when they come, how many fail, and where they are pushed."""

    callback_url: str | None = None
    delay_seconds: float = 2.0
    fail_ratio: float = 0.0
    fail_codes: tuple[str, ...] = DEFAULT_FAIL_CODES
    batch_size: int = 100  # reports per callback POST
    concurrency: int = 4  # callback POSTs in flight at once
    timeout_seconds: float = 5.0
    retries: int = 3  # further tries of a failed callback POST

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], where: str = "reports") -> ReportSettings:
        known_keys(raw, {f for f in cls.__dataclass_fields__}, where)
        url = raw.get("callback_url") or None
        if url is not None:
            url = callback_url(url, f"{where}.callback_url")
        codes = raw.get("fail_codes", list(DEFAULT_FAIL_CODES))
        if (
            not isinstance(codes, list)
            or not 1 <= len(codes) <= 100
            or not all(isinstance(c, str) and 0 < len(c) <= 20 for c in codes)
        ):
            raise ConfigError(
                f"{where}.fail_codes must be a list of 1 to 100 operator codes "
                "(strings of 1 to 20 characters)"
            )
        return cls(
            callback_url=url,
            delay_seconds=bounded(raw, "delay_seconds", 2.0, 0, 86_400, where),
            fail_ratio=bounded(raw, "fail_ratio", 0.0, 0, 1, where),
            fail_codes=tuple(codes),
            batch_size=whole(raw, "batch_size", 100, 1, 1000, where),
            concurrency=whole(raw, "concurrency", 4, 1, 64, where),
            timeout_seconds=bounded(raw, "timeout_seconds", 5.0, 0.1, 120, where),
            retries=whole(raw, "retries", 3, 0, 10, where),
        )

    def to_json(self) -> dict[str, object]:
        return {
            "callback_url": self.callback_url,
            "delay_seconds": self.delay_seconds,
            "fail_ratio": self.fail_ratio,
            "fail_codes": list(self.fail_codes),
            "batch_size": self.batch_size,
            "concurrency": self.concurrency,
            "timeout_seconds": self.timeout_seconds,
            "retries": self.retries,
        }


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    accounts: tuple[Account, ...]
    signs: tuple[SignSpec, ...]
    templates: tuple[TemplateSpec, ...]
    limits: Limits = field(default_factory=Limits)
    faults: FaultSettings = field(default_factory=FaultSettings)
    scripts: Mapping[str, tuple[Step, ...]] = field(default_factory=dict)
    reports: ReportSettings = field(default_factory=ReportSettings)
    log_limit: int = DEFAULT_LOG_LIMIT  # request log, inbox and report history entries kept
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES  # larger bodies answer 1004
    # Simulated time: the clock reads real time plus this (SMS_CLOCK_OFFSET_SECONDS), as the
    # worker's does, until the control API sets it; a reset returns to it.
    clock_offset_seconds: float = 0.0

    @property
    def default_sign(self) -> str | None:
        """The first approved sign, used when a domestic send names none."""
        return next((sign.text for sign in self.signs if sign.approved), None)


def default_config() -> SimulatorConfig:
    return config_from_mapping({})


def load_config(
    path: Path | None = None,
    *,
    sdkappid: str | None = None,
    appkey: str | None = None,
    callback_url: str | None = None,
    clock_offset_seconds: float | None = None,
) -> SimulatorConfig:
    """The defaults, overlaid with the TOML file at ``path``, then with the flags given
    (``clock_offset_seconds``: SMS_CLOCK_OFFSET_SECONDS; None keeps the file's)."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    config = config_from_mapping(raw)
    if sdkappid is not None or appkey is not None:
        config = with_primary_account(config, sdkappid=sdkappid, appkey=appkey)
    if callback_url is not None:
        reports = {**config.reports.to_json(), "callback_url": callback_url}
        config = replace(config, reports=ReportSettings.from_mapping(reports))
    if clock_offset_seconds is not None:
        config = with_clock_offset(config, clock_offset_seconds)
    return config


def on_worker_clock(config: SimulatorConfig | None = None) -> SimulatorConfig:
    """``config`` (the defaults when None) on the clock of this process's worker: real time
    plus SMS_CLOCK_OFFSET_SECONDS, for a simulator run beside workers (the demo)."""
    try:
        offset = worker_clock_offset()
    except ValueError as error:
        raise ConfigError(str(error)) from None
    return with_clock_offset(config or default_config(), offset)


def with_clock_offset(config: SimulatorConfig, seconds: float) -> SimulatorConfig:
    """``config`` whose clock runs ``seconds`` ahead of real time (behind when negative)."""
    if not (math.isfinite(seconds) and abs(seconds) <= MAX_CLOCK_OFFSET):
        raise ConfigError(
            f"SMS_CLOCK_OFFSET_SECONDS must be a number of seconds within ±{MAX_CLOCK_OFFSET}"
        )
    return replace(config, clock_offset_seconds=float(seconds))


def with_primary_account(
    config: SimulatorConfig, *, sdkappid: str | None = None, appkey: str | None = None
) -> SimulatorConfig:
    """Replace the first account's sdkappid and/or appkey (what ``--sdkappid``/``--appkey`` set)."""
    first, *rest = config.accounts
    changed = replace(first, sdkappid=sdkappid or first.sdkappid, appkey=appkey or first.appkey)
    _check_account(changed, "--sdkappid/--appkey")
    others = tuple(account for account in rest if account.sdkappid != changed.sdkappid)
    return replace(config, accounts=(changed, *others))


def config_from_mapping(raw: Mapping[str, Any]) -> SimulatorConfig:
    """A checked configuration from parsed TOML; lists are added to the defaults by default."""
    known_keys(
        raw,
        {
            "include_defaults",
            "log_limit",
            "max_body_bytes",
            "clock_offset_seconds",
            "accounts",
            "signs",
            "templates",
            "limits",
            "faults",
            "scripts",
            "reports",
        },
        "top level",
    )
    include_defaults = raw.get("include_defaults", True)
    if not isinstance(include_defaults, bool):
        raise ConfigError("include_defaults must be true or false")

    def merged(key: str, ident: str) -> list[Mapping[str, Any]]:
        given = raw.get(key, [])
        if not isinstance(given, list) or not all(isinstance(item, Mapping) for item in given):
            raise ConfigError(f"{key} must be an array of tables ([[{key}]])")
        base: list[Mapping[str, Any]] = list(DEFAULTS[key]) if include_defaults else []
        by_ident = {str(item.get(ident)): item for item in base}
        by_ident.update({str(item.get(ident)): item for item in given})
        return list(by_ident.values())

    accounts = tuple(_account(item, i) for i, item in enumerate(merged("accounts", "sdkappid")))
    signs = tuple(_sign(item, i) for i, item in enumerate(merged("signs", "text")))
    templates = tuple(_template(item, i) for i, item in enumerate(merged("templates", "id")))
    if not accounts:
        raise ConfigError("at least one account is needed ([[accounts]])")
    try:
        faults = FaultSettings.from_mapping(table(raw, "faults"))
        scripts = {
            str(mobile): parse_steps(steps) for mobile, steps in table(raw, "scripts").items()
        }
    except StepError as exc:
        raise ConfigError(f"faults/scripts: {exc}") from None
    return SimulatorConfig(
        accounts=accounts,
        signs=signs,
        templates=templates,
        limits=Limits.from_mapping(table(raw, "limits")),
        faults=faults,
        scripts=scripts,
        reports=ReportSettings.from_mapping(table(raw, "reports")),
        log_limit=int(bounded(raw, "log_limit", DEFAULT_LOG_LIMIT, 10, 10_000_000, "top level")),
        max_body_bytes=int(
            bounded(raw, "max_body_bytes", DEFAULT_MAX_BODY_BYTES, 1024, 64 * 1024**2, "top level")
        ),
        clock_offset_seconds=bounded(
            raw, "clock_offset_seconds", 0.0, -MAX_CLOCK_OFFSET, MAX_CLOCK_OFFSET, "top level"
        ),
    )


def _account(raw: Mapping[str, Any], index: int) -> Account:
    where = f"accounts[{index}]"
    known_keys(raw, {"sdkappid", "appkey", "extend_allowed"}, where)
    sdkappid, appkey = raw.get("sdkappid"), raw.get("appkey")
    if not isinstance(sdkappid, str | int) or isinstance(sdkappid, bool):
        raise ConfigError(f"{where}.sdkappid must be the SDK AppID")
    if not isinstance(appkey, str):
        raise ConfigError(f"{where}.appkey must be a string")
    extend_allowed = flag(raw, "extend_allowed", False, where)
    account = Account(str(sdkappid), appkey, extend_allowed=extend_allowed)
    _check_account(account, where)
    return account


def _check_account(account: Account, where: str) -> None:
    if not account.sdkappid.isdigit():
        raise ConfigError(f"{where}: the sdkappid must be digits")
    if not account.appkey or any(c.isspace() for c in account.appkey):
        # Never echo the key itself: error messages end up in logs.
        raise ConfigError(f"{where}: the appkey must be a non-empty string without spaces")


def _sign(raw: Mapping[str, Any], index: int) -> SignSpec:
    where = f"signs[{index}]"
    known_keys(raw, {"text", "approved"}, where)
    text = raw.get("text")
    if not isinstance(text, str) or not text or "【" in text or "】" in text:
        raise ConfigError(f"{where}.text must be the signature text without 【】")
    return SignSpec(text, approved=flag(raw, "approved", True, where))


def _template(raw: Mapping[str, Any], index: int) -> TemplateSpec:
    where = f"templates[{index}]"
    known_keys(raw, {"id", "text", "kind", "international", "approved"}, where)
    ident, text = raw.get("id"), raw.get("text")
    if not isinstance(ident, int) or isinstance(ident, bool) or ident <= 0:
        raise ConfigError(f"{where}.id must be a positive integer")
    if not isinstance(text, str) or not text:
        raise ConfigError(f"{where}.text must be the template text with {{1}}, {{2}}, ...")
    try:
        kind = TemplateKind(raw.get("kind", TemplateKind.NOTIFICATION))
    except ValueError:
        raise ConfigError(f"{where}.kind must be verification, notification or marketing") from None
    template = TemplateSpec(
        ident,
        text,
        kind,
        international=flag(raw, "international", False, where),
        approved=flag(raw, "approved", True, where),
    )
    numbers = sorted({int(n) for n in _PLACEHOLDER.findall(text)})
    if numbers != list(range(1, template.param_count + 1)):
        raise ConfigError(f"{where}.text: number the variables {{1}}, {{2}}, ... without gaps")
    return template
