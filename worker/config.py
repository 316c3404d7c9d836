"""Configuration: ``SMS_*`` environment variables, a ``.env`` file, and a TOML file of accounts.

``load_settings()`` reads everything once and either returns ``Settings`` or raises one
``ConfigError`` whose message names the setting at fault. Nothing is cached: a process loads its
settings at start and passes them on. The appkey is a ``SecretStr`` everywhere; no message, repr or
log line made here contains it.

A missing sdkappid or appkey is only an error when an account's credentials are asked for, so
commands that never talk to the gateway (``sms-worker migrate``) run without them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from worker import clock
from worker import config_values as values
from worker.ledger.status import KINDS, MARKETING, NOTIFICATION, VERIFICATION

DEFAULT_ACCOUNT = "default"


class ConfigError(ValueError):
    """The configuration cannot work; the message names the setting and says why."""


@dataclass(frozen=True, slots=True)
class Account:
    """One SMS application at the gateway: what a request is signed and sent with."""

    name: str
    sdkappid: str
    appkey: SecretStr
    gateway_url: str
    send_rate: float  # messages per second, shared by every worker


def _sdkappid(value: Any) -> str:
    text = str(value).strip()
    if not text.isdigit():
        raise ValueError("must be the numeric SDKAppID, such as 1400000000")
    return text


def _kinds(value: Any) -> frozenset[str]:
    if isinstance(value, str) and value.strip().lower() == "none":
        return frozenset()
    items = value.split(",") if isinstance(value, str) else list(value)
    kinds = {str(item).strip() for item in items} - {""}
    unknown = sorted(kinds - set(KINDS))
    if unknown:
        raise ValueError(
            f"unknown kind {', '.join(unknown)}; "
            f"use a comma-separated list of {', '.join(KINDS)}, or none"
        )
    return frozenset(kinds)


# Ceilings the worker can compute with, above anything a deployment needs (the benchmarks run
# at a million messages a second so that the rate is never what limits them).
_DAY = values.SECONDS_IN_A_DAY
SendRate = Annotated[float, BeforeValidator(values.positive_number(1e6, "messages a second"))]
# A lease, or the silence after which the sweeper publishes a message again: at most a day.
Duration = Annotated[float, BeforeValidator(values.positive_number(_DAY, "seconds"))]
# How long a message is worth sending: at most a year.
TimeToLive = Annotated[float, BeforeValidator(values.positive_number(366 * _DAY, "seconds"))]
# A request's connect or read timeout: inside the task's time limit (worker.celery).
Timeout = Annotated[float, BeforeValidator(values.positive_number(60, "seconds"))]
Deliveries = Annotated[int, BeforeValidator(values.whole_number(1, 1000, "deliveries"))]
ClockOffset = Annotated[float, BeforeValidator(values.signed_number(3660 * _DAY, "seconds"))]
HttpUrl = Annotated[str, BeforeValidator(values.http_url)]
LedgerUrl = Annotated[str, BeforeValidator(values.ledger_url)]
BrokerUrl = Annotated[str, BeforeValidator(values.broker_url)]
RedisUrl = Annotated[str | None, BeforeValidator(values.redis_url)]
SdkAppId = Annotated[str, BeforeValidator(_sdkappid)]
Kinds = Annotated[frozenset[str], NoDecode, BeforeValidator(_kinds)]

# Settings whose bad value may be quoted back in an error message; URLs may carry passwords.
_QUOTABLE = frozenset(
    {
        "gateway_url",
        "sdkappid",
        "send_rate",
        "lease_seconds",
        "sweep_after_seconds",
        "max_deliveries",
        "verification_ttl_seconds",
        "notification_ttl_seconds",
        "marketing_ttl_seconds",
        "resend_ambiguous",
        "connect_timeout",
        "read_timeout",
        "clock_offset_seconds",
        "metrics_port",
        "log_format",
        "receiver_metrics",
    }
)


class _AccountTable(BaseModel):
    """One ``[accounts.NAME]`` table of the ``SMS_CONFIG`` file."""

    model_config = ConfigDict(extra="forbid")

    sdkappid: SdkAppId
    appkey: SecretStr | None = None
    appkey_file: Path | None = None
    gateway_url: HttpUrl | None = None
    send_rate: SendRate | None = None


class _AccountsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    default_account: str | None = None
    accounts: dict[str, _AccountTable]


class Settings(BaseSettings):
    """Everything the worker reads from its environment. Build it with ``load_settings()``."""

    model_config = SettingsConfigDict(
        env_prefix="SMS_",
        env_file=".env",
        env_file_encoding="utf-8",
        env_ignore_empty=True,
        extra="ignore",  # a shared .env holds other tools' variables too
        frozen=True,
    )

    database_url: LedgerUrl = "sqlite:///sms-ledger.db"
    broker_url: BrokerUrl = "redis://localhost:6379/0"
    # SMS_REDIS_URL: the Redis holding the throttle every worker shares (an account's rate, the
    # per-number rules). Unset: the broker's, when the broker is Redis. Required with RabbitMQ.
    redis_url: RedisUrl = None
    gateway_url: HttpUrl = "https://yun.tim.qq.com"
    sdkappid: SdkAppId | None = None
    appkey: SecretStr | None = None
    appkey_file: Path | None = None
    config: Path | None = None  # SMS_CONFIG: a TOML file naming several accounts
    send_rate: SendRate = 50.0
    lease_seconds: Duration = 60.0
    sweep_after_seconds: Duration = 60.0
    max_deliveries: Deliveries = 5
    verification_ttl_seconds: TimeToLive = 300.0
    notification_ttl_seconds: TimeToLive = 6 * 3600.0
    marketing_ttl_seconds: TimeToLive = 3 * 86400.0
    # Kinds whose ambiguous attempts are sent again (a late duplicate code beats none); the others
    # end `unknown`, to be settled by delivery reports. E.g. SMS_RESEND_AMBIGUOUS=verification or
    # SMS_RESEND_AMBIGUOUS=none.
    resend_ambiguous: Kinds = frozenset({VERIFICATION, NOTIFICATION})
    connect_timeout: Timeout = 3.05
    read_timeout: Timeout = 10.0
    # SMS_RECEIVER_TOKEN: the secret path segment of the callback receiver's URLs.
    receiver_token: SecretStr | None = None
    # SMS_DATABASE_URL_FILE, SMS_RECEIVER_TOKEN_FILE: the same values read from a file (a
    # container secret), so the database password and the token are in no environment.
    database_url_file: Path | None = None
    receiver_token_file: Path | None = None
    # SMS_RECEIVER_METRICS: whether the receiver answers GET /metrics (no token needed).
    receiver_metrics: bool = True
    # SMS_METRICS_PORT: a Celery worker serves Prometheus metrics on this port (unset: none);
    # SMS_METRICS_HOST: the address it listens on (0.0.0.0 for a scraper on another host).
    metrics_port: Annotated[int, Field(ge=1, le=65535)] | None = None
    metrics_host: str = "127.0.0.1"
    # SMS_LOG_FORMAT: text (the default) or json, one object per line (worker.observability.logs).
    log_format: Literal["text", "json"] = "text"
    # Simulated time, for demos and tests against the simulator: the worker acts as if its clock
    # read this many seconds later (quiet hours, deadlines, the signed `time`). 0 in production.
    clock_offset_seconds: ClockOffset = 0.0

    _appkey: SecretStr | None = PrivateAttr(default=None)
    _accounts: dict[str, Account] = PrivateAttr(default_factory=dict)
    _default_account: str | None = PrivateAttr(default=None)
    _appkey_settings: dict[str, str] = PrivateAttr(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _read_value_files(cls, data: Any) -> Any:
        """SMS_NAME_FILE stands for SMS_NAME with the file's content (whitespace around it cut)."""
        if not isinstance(data, dict):
            return data
        for name in ("database_url", "receiver_token"):
            path = data.get(f"{name}_file")
            if path is None:
                continue
            setting = f"SMS_{name.upper()}"
            if data.get(name) is not None:
                raise ConfigError(f"{setting}_FILE: {setting} is set too; keep one of them")
            data = {**data, name: _read_key(Path(path), f"{setting}_FILE").get_secret_value()}
        return data

    @model_validator(mode="after")
    def _resolve_accounts(self) -> Self:
        if self.appkey is not None and self.appkey_file is not None:
            raise ConfigError("SMS_APPKEY_FILE: SMS_APPKEY is set too; keep one of them")
        self._appkey = self.appkey
        if self.appkey_file is not None:
            self._appkey = _read_key(self.appkey_file, "SMS_APPKEY_FILE")
        if self.config is not None:
            for name in ("sdkappid", "appkey", "appkey_file"):
                if getattr(self, name) is not None:
                    raise ConfigError(
                        f"SMS_{name.upper()}: not used when SMS_CONFIG names the accounts; "
                        "put it in that file"
                    )
            loaded = _load_accounts(self.config, self)
            self._accounts, self._default_account, self._appkey_settings = loaded
        return self

    @property
    def throttle_redis_url(self) -> str | None:
        """The Redis of the shared throttle; None when there is none (see worker.celery.runtime)."""
        if self.redis_url is not None:
            return self.redis_url
        if urlsplit(self.broker_url).scheme in ("redis", "rediss"):
            return self.broker_url
        return None

    @property
    def account_names(self) -> tuple[str, ...]:
        return tuple(self._accounts) if self.config is not None else (DEFAULT_ACCOUNT,)

    @property
    def default_account_name(self) -> str | None:
        """The account used when none is named; None when SMS_CONFIG names no default."""
        return self._default_account if self.config is not None else DEFAULT_ACCOUNT

    def account(self, name: str | None = None) -> Account:
        """The named account (None: the default one) with its credentials."""
        if name is None:
            name = self.default_account_name
            if name is None:
                raise ConfigError(
                    f"SMS_CONFIG: no default account; set default_account to one of "
                    f"{', '.join(self.account_names)}"
                )
        if name not in self.account_names:
            raise ConfigError(f"unknown account {name!r}; known: {', '.join(self.account_names)}")
        if self.config is not None:
            return self._accounts[name]
        if self.sdkappid is None:
            raise ConfigError(f"SMS_SDKAPPID: not set; account {name!r} needs it")
        if self._appkey is None:
            raise ConfigError(
                f"SMS_APPKEY: not set (nor SMS_APPKEY_FILE); account {name!r} needs it"
            )
        return Account(name, self.sdkappid, self._appkey, self.gateway_url, self.send_rate)

    def appkey_setting(self, name: str) -> str:
        """Where account ``name``'s appkey was read from, for a message telling what to check."""
        if self.config is not None:
            return self._appkey_settings.get(name, f"accounts.{name}.appkey") + (
                " in the SMS_CONFIG file"
            )
        return "SMS_APPKEY_FILE" if self.appkey_file is not None else "SMS_APPKEY"

    def now(self) -> datetime:
        """The worker's now: aware UTC, shifted by ``SMS_CLOCK_OFFSET_SECONDS`` (worker.clock)."""
        return clock.now()

    def unix_time(self) -> float:
        """Unix seconds on the same clock (what a request is signed with)."""
        return clock.unix_time()

    def ttl(self, kind: str) -> timedelta:
        """How long after enqueue a message of ``kind`` is still worth sending."""
        seconds = {
            VERIFICATION: self.verification_ttl_seconds,
            NOTIFICATION: self.notification_ttl_seconds,
            MARKETING: self.marketing_ttl_seconds,
        }.get(kind)
        if seconds is None:
            raise ValueError(f"unknown kind {kind!r}")
        return timedelta(seconds=seconds)

    def resends_ambiguous(self, kind: str) -> bool:
        """Whether an attempt of ``kind`` that may have been delivered is sent again."""
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}")
        return kind in self.resend_ambiguous

    def known_secrets(self) -> list[str]:
        """The secrets these settings hold (every account's appkey, the receiver token), for
        the logs to mask."""
        found = []
        for name in self.account_names:
            try:
                found.append(self.account(name).appkey.get_secret_value())
            except ConfigError:  # this account has no credentials here, so no secret
                continue
        if self.receiver_token is not None:
            found.append(self.receiver_token.get_secret_value())
        return found


def load_settings(env_file: str | Path | None = ".env") -> Settings:
    """Read the environment (and ``env_file``, when it exists); raise ConfigError if unusable."""
    try:
        # The keyword is BaseSettings' own; mypy only sees the fields.
        settings = Settings(_env_file=env_file)  # type: ignore[call-arg]
    except ValidationError as error:
        # `from None`: the validation error holds the raw input, appkey included.
        raise ConfigError("; ".join(_describe(e) for e in error.errors())) from None
    except SettingsError as error:
        raise ConfigError(str(error)) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{env_file}: not UTF-8 text; save it as UTF-8") from None
    except OSError as error:
        raise ConfigError(f"{env_file}: cannot read it: {error.strerror}") from None
    # Ledger defaults cannot see settings: the process's one clock takes their offset (which a
    # .env file may have given).
    clock.set_offset(settings.clock_offset_seconds)
    return settings


def _describe(error: ErrorDetails) -> str:
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, ConfigError):
        return str(cause)
    field = str(error["loc"][0]).lower() if error["loc"] else ""
    name = field.upper() if field.startswith("sms_") else f"SMS_{field.upper()}"
    message = _message(error)
    if field in _QUOTABLE and isinstance(error["input"], str | int | float):
        message += f", got {error['input']!r}"
    return f"{name}: {message}"


def _message(error: ErrorDetails) -> str:
    message = error["msg"].removeprefix("Value error, ")
    return message[:1].lower() + message[1:]


def _read_key(path: Path, setting: str) -> SecretStr:
    try:
        key = path.read_text(encoding="utf-8").strip()
    except OSError as error:
        raise ConfigError(f"{setting}: cannot read '{path}': {error.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{setting}: '{path}' is not UTF-8 text") from None
    if not key:
        raise ConfigError(f"{setting}: '{path}' is empty")
    return SecretStr(key)


def _load_accounts(
    path: Path, defaults: Settings
) -> tuple[dict[str, Account], str | None, dict[str, str]]:
    """The accounts of the TOML file at ``path``, the name of the default one (if any), and
    which key of each account's table holds its appkey."""
    document = values.read_toml(path, error=ConfigError, setting="SMS_CONFIG")
    try:
        parsed = _AccountsFile.model_validate(document)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        why = "unknown key" if first["type"] == "extra_forbidden" else _message(first)
        raise ConfigError(f"SMS_CONFIG: {where}: {why}") from None
    if not parsed.accounts:
        raise ConfigError(f"SMS_CONFIG: '{path}' names no accounts; add [accounts.NAME] tables")

    accounts, appkey_settings = {}, {}
    for name, table in parsed.accounts.items():
        where = f"SMS_CONFIG: accounts.{name}"
        if (table.appkey is None) == (table.appkey_file is None):
            raise ConfigError(f"{where}: set exactly one of appkey and appkey_file")
        appkey = table.appkey
        appkey_settings[name] = f"accounts.{name}.appkey"
        if table.appkey_file is not None:
            appkey = _read_key(path.parent / table.appkey_file, f"{where}.appkey_file")
            appkey_settings[name] = f"accounts.{name}.appkey_file"
        assert appkey is not None
        accounts[name] = Account(
            name=name,
            sdkappid=table.sdkappid,
            appkey=appkey,
            gateway_url=table.gateway_url or defaults.gateway_url,
            send_rate=table.send_rate or defaults.send_rate,
        )

    default = parsed.default_account
    if default is not None and default not in accounts:
        raise ConfigError(
            f"SMS_CONFIG: default_account {default!r} is not one of {', '.join(accounts)}"
        )
    if default is None and (DEFAULT_ACCOUNT in accounts or len(accounts) == 1):
        default = DEFAULT_ACCOUNT if DEFAULT_ACCOUNT in accounts else next(iter(accounts))
    return accounts, default, appkey_settings
