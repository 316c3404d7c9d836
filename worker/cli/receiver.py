"""``sms-worker receiver``: take the gateway's delivery reports and replies into the ledger."""

from __future__ import annotations

import click
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from worker.cli.common import (
    BAD_INPUT,
    FAILURE,
    MIGRATE_HINT,
    current_settings,
    fail,
    listen_options,
    log_level_option,
)
from worker.ledger import migrate as migrations
from worker.ledger.db import make_engine, session_factory
from worker.observability.logs import configure_logging
from worker.receiver import (
    DEFAULT_MAX_BODY_BYTES,
    AsgiServer,
    ServerError,
    check_token,
    make_receiver_app,
    serve_forever,
)
from worker.runners.limits import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_READ_TIMEOUT,
    ServerLimits,
)

MASK = "********"


@click.command()
@listen_options(port=8090, host_example="behind a TLS-terminating proxy")
@click.option(
    "--token",
    metavar="TOKEN",
    help="The secret path segment of the callback URLs (at least 16 of A-Z a-z 0-9 ._~-). "
    "Default: SMS_RECEIVER_TOKEN. Prefer the variable: a token on the command line shows in "
    "the process list.",
)
@click.option(
    "--max-body-bytes",
    type=click.IntRange(1024),
    default=DEFAULT_MAX_BODY_BYTES,
    show_default=True,
    help="Larger bodies are refused with 413. Example: --max-body-bytes 262144",
)
@click.option(
    "--max-connections",
    envvar="SMS_RECEIVER_MAX_CONNECTIONS",
    show_envvar=True,
    type=click.IntRange(1, 1_000_000),
    default=DEFAULT_MAX_CONNECTIONS,
    show_default=True,
    help="Connections served at once; one more is answered 503 and closed. "
    "Example: --max-connections 500",
)
@click.option(
    "--idle-timeout",
    envvar="SMS_RECEIVER_IDLE_TIMEOUT",
    show_envvar=True,
    type=click.FloatRange(0, 3600, min_open=True),
    default=DEFAULT_IDLE_TIMEOUT,
    show_default=True,
    metavar="SECONDS",
    help="A connection with no request in progress is closed after this long. "
    "Example: --idle-timeout 10",
)
@click.option(
    "--read-timeout",
    envvar="SMS_RECEIVER_READ_TIMEOUT",
    show_envvar=True,
    type=click.FloatRange(0, 3600, min_open=True),
    default=DEFAULT_READ_TIMEOUT,
    show_default=True,
    metavar="SECONDS",
    help="A request's headers, and then its whole body, must arrive within this long each "
    "(else 408 and the connection is closed). Example: --read-timeout 30",
)
@log_level_option
@click.option(
    "--metrics/--no-metrics",
    default=None,
    help="Serve Prometheus metrics at GET /metrics (no token). Default: SMS_RECEIVER_METRICS, "
    "on unless set to false. Example: --no-metrics",
)
def receiver(
    host: str,
    port: int,
    token: str | None,
    max_body_bytes: int,
    max_connections: int,
    idle_timeout: float,
    read_timeout: float,
    log_level: str,
    metrics: bool | None,
) -> None:
    """Receive delivery reports and replies pushed by the gateway, into the ledger.

    Give the gateway's console the two URLs it prints: status reports go to
    /callbacks/TOKEN/status and replies to /callbacks/TOKEN/reply (/callbacks/TOKEN takes
    both). Every report is stored once, duplicates and late ones included, and moves its
    message to delivered or undelivered; a reply such as TD or 退订 opts its number out.
    The ledger is SMS_DATABASE_URL; run `sms-worker migrate` first. Every refused callback
    (wrong token, wrong path, bad, oversized, cut or slow body) is logged with its reason and
    address, and counted in sms_callbacks_refused_total{reason}.

    \b
    Examples:
      export SMS_RECEIVER_TOKEN=$(python -c 'import secrets; print(secrets.token_urlsafe(32))')
      sms-worker receiver
      sms-worker receiver --host 0.0.0.0 --port 9000
      sms-worker simulator --callback-url http://127.0.0.1:8090/callbacks/$SMS_RECEIVER_TOKEN
    """
    settings = current_settings()
    if token is None and settings.receiver_token is not None:
        token = settings.receiver_token.get_secret_value()
    if not token:
        fail("no token: set SMS_RECEIVER_TOKEN (or give --token)", BAD_INPUT)
    try:
        check_token(token)
    except ValueError as error:
        fail(str(error), BAD_INPUT, cause=error)

    # Text or JSON (SMS_LOG_FORMAT); phone numbers masked, the token and appkeys never written.
    configure_logging(
        level=log_level, log_format=settings.log_format, secrets=[*settings.known_secrets(), token]
    )
    if metrics is None:
        metrics = settings.receiver_metrics
    ledger = make_url(settings.database_url).render_as_string(hide_password=True)
    _warn_if_not_migrated(settings.database_url, ledger)
    engine = make_engine(settings.database_url)
    app = make_receiver_app(
        session_factory(engine), token, max_body_bytes=max_body_bytes, metrics=metrics
    )

    def announce(server: AsgiServer) -> None:
        base = f"{server.url}/callbacks/{MASK}"
        click.echo(f"sms-worker receiver: listening on {server.url} (ledger {ledger})")
        click.echo(f"  status reports: {base}/status")
        click.echo(f"  replies:        {base}/reply")
        click.echo(f"  ({MASK} stands for the token; the gateway needs the full URLs)")
        click.echo(f"  health:         {server.url}/healthz")
        if metrics:
            click.echo(f"  metrics:        {server.url}/metrics")
        click.echo("  stop with Ctrl-C")

    try:
        limits = ServerLimits(
            max_connections=max_connections, idle_timeout=idle_timeout, read_timeout=read_timeout
        )
        server = AsgiServer(
            app, host=host, port=port, log_level=log_level, name="receiver", limits=limits
        )
        serve_forever(server, on_started=announce)
    except ServerError as error:
        fail(f"{error} (is the port already in use?)", FAILURE, cause=error)
    finally:
        engine.dispose()


def _warn_if_not_migrated(url: str, shown: str) -> None:
    try:
        at, newest = migrations.current(url), migrations.head()
    except SQLAlchemyError as error:
        click.echo(
            f"sms-worker receiver: warning: cannot read {shown}: {type(error).__name__}", err=True
        )
        return
    if at != newest:
        click.echo(
            f"sms-worker receiver: warning: {shown} is at {at or 'nothing'}, newest {newest}; "
            f"{MIGRATE_HINT}",
            err=True,
        )
