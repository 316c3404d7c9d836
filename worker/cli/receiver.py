"""``sms-worker receiver``: take the gateway's delivery reports and replies into the ledger."""

from __future__ import annotations

import logging

import click
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from worker.config import ConfigError, load_settings
from worker.ledger import migrate as migrations
from worker.ledger.db import make_engine, session_factory
from worker.receiver import (
    DEFAULT_MAX_BODY_BYTES,
    AsgiServer,
    ServerError,
    check_token,
    make_receiver_app,
    serve_forever,
)

BAD_INPUT = 2
FAILURE = 1
MASK = "********"


def _fail(message: str, code: int) -> click.exceptions.Exit:
    click.echo(f"sms-worker receiver: {message}", err=True)
    return click.exceptions.Exit(code)


@click.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on. Example: --host 0.0.0.0 behind a TLS-terminating proxy.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8090,
    show_default=True,
    help="Port to listen on; 0 picks a free one and prints it. Example: --port 9000",
)
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
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
    help="Server log level. Example: --log-level warning",
)
def receiver(host: str, port: int, token: str | None, max_body_bytes: int, log_level: str) -> None:
    """Receive delivery reports and replies pushed by the gateway, into the ledger.

    Give the gateway's console the two URLs it prints: status reports go to
    /callbacks/TOKEN/status and replies to /callbacks/TOKEN/reply (/callbacks/TOKEN takes
    both). Every report is stored once, duplicates and late ones included, and moves its
    message to delivered or undelivered; a reply such as TD or 退订 opts its number out.
    The ledger is SMS_DATABASE_URL; run `sms-worker migrate` first.

    \b
    Examples:
      export SMS_RECEIVER_TOKEN=$(python -c 'import secrets; print(secrets.token_urlsafe(32))')
      sms-worker receiver
      sms-worker receiver --host 0.0.0.0 --port 9000
      sms-worker simulator --callback-url http://127.0.0.1:8090/callbacks/$SMS_RECEIVER_TOKEN
    """
    try:
        settings = load_settings()
    except ConfigError as error:
        raise _fail(str(error), BAD_INPUT) from None
    if token is None and settings.receiver_token is not None:
        token = settings.receiver_token.get_secret_value()
    if not token:
        raise _fail("no token: set SMS_RECEIVER_TOKEN (or give --token)", BAD_INPUT)
    try:
        check_token(token)
    except ValueError as error:
        raise _fail(str(error), BAD_INPUT) from None

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    ledger = make_url(settings.database_url).render_as_string(hide_password=True)
    _warn_if_not_migrated(settings.database_url, ledger)
    engine = make_engine(settings.database_url)
    app = make_receiver_app(session_factory(engine), token, max_body_bytes=max_body_bytes)

    def announce(server: AsgiServer) -> None:
        base = f"{server.url}/callbacks/{MASK}"
        click.echo(f"sms-worker receiver: listening on {server.url} (ledger {ledger})")
        click.echo(f"  status reports: {base}/status")
        click.echo(f"  replies:        {base}/reply")
        click.echo(f"  ({MASK} stands for the token; the gateway needs the full URLs)")
        click.echo(f"  health:         {server.url}/healthz")
        click.echo("  stop with Ctrl-C")

    try:
        serve_forever(app, host=host, port=port, log_level=log_level, on_started=announce)
    except ServerError as error:
        raise _fail(f"{error} (is the port already in use?)", FAILURE) from None
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
            "run `sms-worker migrate`",
            err=True,
        )
