"""The checks of ``sms-worker doctor``: each says OK or FAIL, and for a failure how to fix it.

Every check is bounded by a short timeout and changes nothing: the database is only read (a
SQLite file that does not exist is not created), the broker gets a PING, the throttle's Redis and
the workers are asked too (worker.cli.doctor_workers), and the gateway gets a TCP (and TLS)
connection. Only a gateway that is the bundled simulator also gets a signed call, and
that call is ``pullsendstatus``, which reads figures and sends no SMS.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import redis
import requests
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError as AlembicCommandError
from kombu import Connection
from kombu.utils.url import maybe_sanitize_url
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from worker.cli.common import MIGRATE_HINT, first_line
from worker.cli.doctor_results import CheckResult, failed, passed, skipped
from worker.cli.doctor_workers import check_throttle, check_workers
from worker.config import Account, ConfigError, Settings, load_settings
from worker.ledger import migrate as migrations
from worker.ledger.db import database_url
from worker.receiver import check_token
from worker.tencent import DEFAULT_GATEWAY_URL, GatewayError, SmsClient

# The one gateway host known to be real: it is never asked whether it is a simulator.
REAL_GATEWAY_HOST = urlsplit(DEFAULT_GATEWAY_URL).hostname
SIMULATOR_PROBE = "/_sim/config"
# What to do about the gateway's answer to the signed test call, by result code.
_GATEWAY_FIXES = {
    1001: "the appkey does not match the simulator's for this sdkappid: check {appkey}",
    1003: "the request was not signed: check {appkey}",
    1019: "the simulator knows no such sdkappid: check {sdkappid}, or start the simulator "
    "with --sdkappid",
    1020: "the sdkappid is disabled in the simulator's configuration",
    1021: "the clocks differ by more than 10 minutes: check SMS_CLOCK_OFFSET_SECONDS and the "
    "simulator's clock (/_sim/clock)",
}


# --- configuration -------------------------------------------------------------------------------


def check_configuration() -> tuple[CheckResult, Settings | None, list[Account]]:
    """The settings, and the accounts whose credentials are complete."""
    name = "configuration"
    try:
        settings = load_settings()
    except ConfigError as error:
        return failed(name, str(error), _config_fix(str(error)), bad_input=True), None, []
    accounts, problems = [], []
    for account_name in settings.account_names:
        try:
            accounts.append(settings.account(account_name))
        except ConfigError as error:
            problems.append(str(error))
    if settings.receiver_token is not None:
        try:
            check_token(settings.receiver_token.get_secret_value())
        except ValueError as error:
            problems.append(f"SMS_RECEIVER_TOKEN: {error}")
    if problems:
        message = "; ".join(problems)
        return failed(name, message, _config_fix(message), bad_input=True), settings, accounts
    names = ", ".join(settings.account_names)
    source = "SMS_CONFIG" if settings.config is not None else "SMS_* variables"
    return passed(name, f"settings read; account(s) from {source}: {names}"), settings, accounts


def _config_fix(message: str) -> str:
    setting = message.split(":", 1)[0]
    if setting.startswith("SMS_CONFIG"):
        return "correct the accounts file that SMS_CONFIG names"
    if setting.startswith("SMS_"):
        verb = "set" if "not set" in message else "correct"
        return f"{verb} {setting} in the environment or the .env file"
    return "correct the SMS_* settings in the environment or the .env file"


# --- database ------------------------------------------------------------------------------------


def check_database(settings: Settings, timeout: float) -> Iterator[CheckResult]:
    """Two rows: can the ledger be reached, and is it migrated to this package's newest."""
    url = database_url(settings.database_url)
    shown = make_url(settings.database_url).render_as_string(hide_password=True)  # as written
    if url.get_backend_name() == "sqlite":
        file = url.database
        if file and file != ":memory:" and not Path(file).exists():
            # Connecting would create an empty file: that is migrate's job, not doctor's.
            yield failed("database", f"{shown}: no such file", f"{MIGRATE_HINT} to create it")
            yield skipped("migrations", "needs the database")
            return
    else:
        url = url.update_query_dict({"connect_timeout": str(max(1, round(timeout)))})
    try:
        revision = migrations.current(url.render_as_string(hide_password=False))
    except SQLAlchemyError as error:
        yield failed(
            "database",
            f"{shown}: {first_line(error)}",
            "start the database, or correct SMS_DATABASE_URL",
        )
        yield skipped("migrations", "needs the database")
        return
    yield passed("database", f"{shown} answers")
    yield _migration_state(revision)


def _migration_state(revision: str | None) -> CheckResult:
    newest = migrations.head()
    if revision == newest:
        return passed("migrations", f"at {newest}, the newest")
    if revision is None:
        return failed("migrations", "the ledger's tables are not there (never migrated)",
                      MIGRATE_HINT)  # fmt: skip
    try:
        ScriptDirectory.from_config(migrations.alembic_config()).get_revision(revision)
    except AlembicCommandError:
        return failed(
            "migrations",
            f"at {revision}, a revision this sms-worker does not know (a newer one migrated it)",
            "install the sms-worker version that migrated the database",
        )
    return failed("migrations", f"at {revision}, the newest is {newest}", MIGRATE_HINT)


# --- broker --------------------------------------------------------------------------------------


def check_broker(settings: Settings, timeout: float) -> CheckResult:
    url = settings.broker_url
    shown: str = maybe_sanitize_url(url)
    fix = "start the broker, or correct SMS_BROKER_URL"
    if urlsplit(url).scheme in ("redis", "rediss"):
        # No retries: a broker that does not answer at once is what doctor reports.
        client = redis.Redis.from_url(
            url, socket_connect_timeout=timeout, socket_timeout=timeout, retry=Retry(NoBackoff(), 0)
        )
        try:
            client.ping()
        except (redis.RedisError, OSError, ValueError) as error:
            return failed("broker", f"{shown}: {first_line(error)}", fix)
        finally:
            client.close()
        return passed("broker", f"{shown} answers PING")
    try:
        with Connection(url, connect_timeout=timeout) as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, timeout=timeout)
    except Exception as error:  # each kombu transport raises errors of its own
        return failed("broker", f"{shown}: {first_line(error)}", fix)
    return passed("broker", f"{shown} accepts a connection")


# --- gateway -------------------------------------------------------------------------------------


def check_gateway(settings: Settings, account: Account, timeout: float) -> CheckResult:
    """TCP (and TLS) to the account's gateway; a signed test call if it is the simulator."""
    name = "gateway" if len(settings.account_names) == 1 else f"gateway ({account.name})"
    url = account.gateway_url
    setting = _setting(settings, account, "gateway_url")
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        _connect(host, port, tls=parts.scheme == "https", timeout=timeout)
    except (OSError, ValueError) as error:
        return failed(
            name, f"{url}: cannot connect: {first_line(error)}",
            f"check {setting}, and that this machine may reach {host}:{port}",
        )  # fmt: skip
    reached = f"{url}: {'TLS' if parts.scheme == 'https' else 'TCP'} connection made"
    if host == REAL_GATEWAY_HOST or not _is_simulator(url, timeout):
        return passed(name, f"{reached}; not the simulator, so no test call was sent")
    return _signed_test_call(name, settings, account, timeout)


def _connect(host: str, port: int, *, tls: bool, timeout: float) -> None:
    with socket.create_connection((host, port), timeout=timeout) as connection:
        if tls:
            context = ssl.create_default_context()
            with context.wrap_socket(connection, server_hostname=host):
                pass  # the handshake (certificate and name) is the check


def _is_simulator(url: str, timeout: float) -> bool:
    """Whether the gateway answers the simulator's control API (a plain GET, no credentials)."""
    try:
        answer = requests.get(url + SIMULATOR_PROBE, timeout=timeout)
        body = answer.json() if answer.status_code == 200 else None
    except (requests.RequestException, ValueError):
        return False
    return isinstance(body, dict) and isinstance(body.get("accounts"), list)


def _signed_test_call(
    name: str, settings: Settings, account: Account, timeout: float
) -> CheckResult:
    client = SmsClient(
        account.sdkappid, account.appkey.get_secret_value(), account.gateway_url,
        connect_timeout=timeout, read_timeout=timeout, clock=settings.unix_time,
    )  # fmt: skip
    now = settings.now()
    try:
        with client:
            client.pull_send_stats(now - timedelta(hours=1), now)
    except GatewayError as error:
        fix = _GATEWAY_FIXES.get(error.result or 0, "see the simulator's log (/_sim/requests)")
        return failed(
            name,
            f"simulator at {account.gateway_url} refused a signed test call (pullsendstatus, "
            f"sdkappid {account.sdkappid}): {error}",
            fix.format(
                appkey=settings.appkey_setting(account.name),
                sdkappid=_setting(settings, account, "sdkappid"),
            ),
        )
    return passed(
        name,
        f"simulator at {account.gateway_url}: a signed test call (pullsendstatus, sdkappid "
        f"{account.sdkappid}) was accepted; no SMS sent",
    )


def _setting(settings: Settings, account: Account, key: str) -> str:
    """Where the account's ``key`` is configured, for a fix to name."""
    if settings.config is not None:
        return f"accounts.{account.name}.{key} in the SMS_CONFIG file"
    return f"SMS_{key.upper()}"


def run_checks(timeout: float) -> list[CheckResult]:
    """Every check, in the order a person would fix things."""
    configuration, settings, accounts = check_configuration()
    results = [configuration]
    if settings is None:
        for name in ("database", "migrations", "broker", "throttle", "workers", "gateway"):
            results.append(skipped(name, "needs a valid configuration"))
        return results
    results.extend(check_database(settings, timeout))
    broker = check_broker(settings, timeout)
    results.append(broker)
    if broker.failed and settings.redis_url is None and settings.throttle_redis_url is not None:
        results.append(skipped("throttle", "in the broker's Redis: needs the broker"))
    else:
        results.append(check_throttle(settings, timeout))
    if broker.failed:
        results.append(skipped("workers", "needs the broker"))
    else:
        results.append(check_workers(settings, timeout))
    # Accounts that share a gateway and an sdkappid need one check between them.
    seen: set[tuple[str, str]] = set()
    for account in accounts:
        if (account.gateway_url, account.sdkappid) not in seen:
            seen.add((account.gateway_url, account.sdkappid))
            results.append(check_gateway(settings, account, timeout))
    if not accounts:
        results.append(skipped("gateway", "needs an account with complete credentials"))
    return results
