"""What every ``sms-worker`` command shares: exit codes, one-line errors, settings, the ledger.

A command ends with ``fail(message, code)``: one line on stderr, ``sms-worker COMMAND: message``,
and exit code 2 for bad input (options, arguments, configuration) or 1 for a failure (a database
or broker that does not answer, a message that was not sent). The group's ``--debug`` flag adds
the traceback above that line.
"""

from __future__ import annotations

import functools
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any, NoReturn, TypeVar

import click
from sqlalchemy import inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from worker.config import ConfigError, Settings, load_settings
from worker.ledger.db import database_url, make_engine, session_factory

PROGRAM = "sms-worker"
OK = 0
FAILURE = 1
BAD_INPUT = 2
MIGRATE_HINT = f"run `{PROGRAM} migrate`"

# Where the group's --debug flag is kept; ctx.meta is shared by every context of one run.
DEBUG_KEY = "sms_worker.debug"
SETTINGS_KEY = "sms_worker.settings"  # the settings, once read

F = TypeVar("F", bound=Callable[..., Any])


class CommandError(click.ClickException):
    """Ends the command: ``sms-worker COMMAND: message`` on stderr, and exit code 1."""

    exit_code = FAILURE

    def __init__(self, message: str, *, label: str, debug: bool) -> None:
        super().__init__(message)
        self.label = label
        self.debug = debug

    def show(self, file: IO[Any] | None = None) -> None:
        if self.debug:
            # Chained causes are shown unless a raise said `from None` (a configuration error
            # does: pydantic's original holds the raw input, secrets included).
            click.echo("".join(traceback.format_exception(self)).rstrip(), err=True)
        # One line, whatever the message held: scripts and people read the first line. Data in
        # it (a file's cell, a name) shows its control characters as escapes, never acted on.
        from worker.cli.output import visible

        message = visible(" ".join(self.message.split()))
        click.echo(f"{self.label}: {message}", file=file, err=True)


class BadInputError(CommandError):
    """Ends the command like CommandError, with exit code 2: the user can fix the input."""

    exit_code = BAD_INPUT


def command_label(ctx: click.Context | None) -> str:
    """``sms-worker accounts`` for any context of that command (or of its subcommands)."""
    if ctx is None:
        return PROGRAM
    chain = [ctx]
    while chain[-1].parent is not None:
        chain.append(chain[-1].parent)
    root = chain[-1]
    if root.command.name != PROGRAM:  # a command run on its own, outside the group
        return f"{PROGRAM} {root.command.name}"
    if len(chain) > 1:
        return f"{PROGRAM} {chain[-2].info_name}"
    if root.invoked_subcommand:
        return f"{PROGRAM} {root.invoked_subcommand}"
    return PROGRAM


def debugging(ctx: click.Context | None = None) -> bool:
    ctx = ctx or click.get_current_context(silent=True)
    return bool(ctx and ctx.meta.get(DEBUG_KEY))


def command_error(message: str, code: int, *, ctx: click.Context | None = None) -> CommandError:
    ctx = ctx or click.get_current_context(silent=True)
    kind = BadInputError if code == BAD_INPUT else CommandError
    return kind(message, label=command_label(ctx), debug=debugging(ctx))


def fail(message: str, code: int = FAILURE, *, cause: BaseException | None = None) -> NoReturn:
    """End the command with one line on stderr and ``code`` (BAD_INPUT or FAILURE)."""
    raise command_error(message, code) from cause


def first_line(error: BaseException) -> str:
    """What went wrong, in one line: a DBAPI error's text starts with the server's own words;
    the rest is SQL and a link."""
    original = getattr(error, "orig", None) or error
    return (str(original).strip().splitlines() or [type(original).__name__])[0]


def current_settings() -> Settings:
    """The SMS_* configuration, read once per run; a bad setting ends the command with exit
    code 2, naming it."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None and SETTINGS_KEY in ctx.meta:
        settings: Settings = ctx.meta[SETTINGS_KEY]
        return settings
    try:
        settings = load_settings()
    except ConfigError as error:
        fail(str(error), BAD_INPUT, cause=error)
    if ctx is not None:
        ctx.meta[SETTINGS_KEY] = settings
    return settings


def check_settings(command: click.Command, *, first: bool = True) -> None:
    """Make ``command``, and each command under it, answer a bad ``SMS_*`` setting with one line
    naming it and exit code 2: read the settings before it runs (``first``: not for a command
    that reports them itself), and end it that way when a setting fails while it runs.

    Only the commands that run are wrapped, not the groups above them: a group's code runs
    before click reads its subcommand's options, so ``--help`` works whatever the settings.
    """
    if isinstance(command, click.Group):
        for subcommand in command.commands.values():
            check_settings(subcommand, first=first)
        return
    callback = command.callback
    if callback is None:
        return

    @functools.wraps(callback)
    def checked(*args: Any, **kwargs: Any) -> Any:
        if first:
            current_settings()
        try:
            return callback(*args, **kwargs)
        except ConfigError as error:
            fail(str(error), BAD_INPUT, cause=error)

    command.callback = checked


def database_option(command: F) -> F:
    option = click.option(
        "--database-url",
        "url_option",
        metavar="URL",
        help="The ledger database. Default: SMS_DATABASE_URL (sqlite:///sms-ledger.db).",
    )
    return option(command)


def checked_database_url(url_option: str | None, settings: Settings | None) -> tuple[str, str]:
    """The ledger's URL (the option, else SMS_DATABASE_URL) and how to show it, password hidden.

    A URL the ledger cannot run on ends the command with exit code 2, naming where it came from.
    """
    if url_option is None:
        url, source = (settings or current_settings()).database_url, "SMS_DATABASE_URL"
    else:
        url, source = url_option, "--database-url"
    try:
        database_url(url)
        return url, make_url(url).render_as_string(hide_password=True)
    except ArgumentError as error:
        fail(f"{source}: {error}", BAD_INPUT, cause=error)


@contextmanager
def ledger_sessions(
    url_option: str | None = None,
    settings: Settings | None = None,
    *,
    requires_table: str | None = None,
) -> Iterator[sessionmaker[Session]]:
    """Sessions on the ledger; a database error ends the command with one line and exit code 1.

    ``requires_table``: a table of the newest migrations this command reads; without it the
    command ends telling to migrate, rather than with the database's "no such table".
    """
    url, shown = checked_database_url(url_option, settings)
    engine = make_engine(url)
    try:
        if requires_table is not None and not inspect(engine).has_table(requires_table):
            fail(f"{shown}: the ledger is not up to date; run: {PROGRAM} migrate", FAILURE)
        yield session_factory(engine)
    except (SQLAlchemyError, OSError) as error:
        fail(f"{shown}: {first_line(error)}", FAILURE, cause=error)
    finally:
        engine.dispose()


def listen_options(*, port: int, host_example: str) -> Callable[[F], F]:
    """``--host`` and ``--port`` of a command that runs a server in the foreground."""
    host = click.option(
        "--host",
        default="127.0.0.1",
        show_default=True,
        help=f"Address to listen on. Example: --host 0.0.0.0 {host_example}.",
    )
    port_option = click.option(
        "--port",
        type=click.IntRange(0, 65535),
        default=port,
        show_default=True,
        help="Port to listen on; 0 picks a free one and prints it. Example: --port 9000",
    )
    return lambda command: host(port_option(command))


# What a message is sent as, the same for `send` and `batch create`.
sign_option = click.option("--sign", metavar="SIGN", help="The signature, without 【】.")
account_option = click.option(
    "--account", metavar="NAME", help="The account (SMS_CONFIG); default: its default."
)


def param_option(help_text: str) -> Callable[[F], F]:
    """``--param``, repeatable, into ``params``; ``help_text`` says whose params they are."""
    return click.option("--param", "params", multiple=True, metavar="VALUE", help=help_text)


log_level_option = click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
    help="Server log level. Example: --log-level warning",
)
