"""``sms-worker send``: enqueue one SMS from the shell, and optionally watch it go out.

It is a producer like any other: the message row is written to the ledger and its task is
published to the broker; a running worker sends it. ``--wait`` then follows the ledger until the
message is out of the workers' hands.
"""

from __future__ import annotations

import time
import uuid

import click
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from worker.cli.common import (
    BAD_INPUT,
    FAILURE,
    account_option,
    current_settings,
    fail,
    first_line,
    param_option,
    sign_option,
)
from worker.cli.output import DataTable, data_console, line
from worker.ledger import attempts, messages
from worker.ledger.db import make_engine, session_factory
from worker.ledger.schema import SmsMessage
from worker.ledger.status import CLAIMABLE, DELIVERED, KINDS, NOTIFICATION, SENT
from worker.tencent import InvalidInput

POLL_SECONDS = 0.2
# A message that ends here went out; anything else that is settled did not (or may not have).
SUCCEEDED = frozenset({SENT, DELIVERED})

# The producer names fields as the API does; the user typed options.
_OPTION_OF_FIELD = {
    "to": "--to",
    "mobile": "--to",
    "nationcode": "--nationcode",
    "template": "--template",
    "params": "--param",
    "text": "--text",
    "content": "--text",
    "sign": "--sign",
    "kind": "--kind",
    "account": "--account",
    "idempotency_key": "--key",
}


def _option_of(field: str) -> str:
    name, _, index = field.partition("[")
    option = _OPTION_OF_FIELD.get(name, name)
    # params[0] is the first --param the user gave.
    return f"{option} #{int(index.rstrip(']')) + 1}" if index.rstrip("]").isdigit() else option


@click.command()
@click.option(
    "--to",
    "to",
    required=True,
    metavar="NUMBER",
    help="The recipient: E.164 (+8613788888888), or national with --nationcode.",
)
@click.option("--nationcode", metavar="CODE", help="Country calling code of a national --to.")
@click.option("--template", type=int, metavar="ID", help="An approved template's id.")
@param_option("A template variable; repeat it for {1}, {2}, ... in order.")
@click.option(
    "--text",
    metavar="TEXT",
    help="Free text instead of a template, with its signature: 【sign】text.",
)
@sign_option
@click.option(
    "--kind",
    # The words themselves: given the StrEnum members, click would offer their NAMES.
    type=click.Choice([str(kind) for kind in KINDS]),
    default=str(NOTIFICATION),
    show_default=True,
    help="Decides the queue, the deadline and the policy after an ambiguous answer.",
)
@account_option
@click.option(
    "--key",
    "idempotency_key",
    metavar="KEY",
    help="Idempotency key: the same key and message again send nothing more; the key with "
    "another number or content is refused (exit 2). May not contain '#'.",
)
@click.option("--wait", is_flag=True, help="Wait until it is sent or has failed; show attempts.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="How long --wait waits at most.",
)
def send(
    to: str,
    nationcode: str | None,
    template: int | None,
    params: tuple[str, ...],
    text: str | None,
    sign: str | None,
    kind: str,
    account: str | None,
    idempotency_key: str | None,
    wait: bool,
    timeout: float,
) -> None:
    """Enqueue one SMS; a running worker sends it (configured by SMS_* variables).

    Exit status: 0 enqueued (with --wait: sent), 2 bad input or configuration, 1 failure
    (with --wait: the message failed, expired or its fate is unknown, or time ran out).

    \b
    Examples:
      sms-worker send --to +8613788888888 --template 100001 --param 482913 --param 5 \\
          --sign 腾讯云 --kind verification --wait
      sms-worker send --to 13788888888 --nationcode 86 --text "【腾讯云】您的快递已到。"
      sms-worker send --to +8613788888888 --template 19 --param 验证码 --param 1234 \\
          --param 4 --key order-1001-shipped      # again with the same key: nothing more
    """
    settings = current_settings()

    # Imported here: worker.celery.tasks builds the module-level Celery app from the environment.
    from worker.api.producer import Producer
    from worker.celery.application import make_app
    from worker.celery.tasks import make_publisher

    engine = make_engine(settings.database_url)
    celery_app = make_app(settings)
    try:
        sessions = session_factory(engine)
        producer = Producer(settings, sessions, make_publisher(celery_app))
        try:
            enqueued = producer.enqueue(
                to, template=template, params=params, text=text, sign=sign, kind=kind,
                nationcode=nationcode, account=account, idempotency_key=idempotency_key,
            )  # fmt: skip
        except InvalidInput as error:
            fail(f"{_option_of(error.field)}: {error.problem}", BAD_INPUT, cause=error)
        console = data_console()
        if enqueued.created:
            console.print(line(f"{enqueued.id} {enqueued.status}"))
        else:
            console.print(
                line(f"{enqueued.id} {enqueued.status} (already enqueued with this --key)")
            )
        if wait:
            # A spinner on a terminal; nothing when the output goes to a file or a pipe.
            with console.status(line(f"waiting up to {timeout:g} s for a worker to send it...")):
                message = _wait_settled(sessions, enqueued.id, timeout)
            console.print(_summary(message))
            console.print(_attempts_table(sessions, message.id))
            if message.status in CLAIMABLE:
                fail(f"still {message.status} after {timeout:g} s", FAILURE)
            if message.status not in SUCCEEDED:
                fail(f"{message.status}: {message.reason or message.errmsg or ''}", FAILURE)
    except SQLAlchemyError as error:
        fail(f"ledger: {first_line(error)}", FAILURE, cause=error)
    finally:
        celery_app.close()
        engine.dispose()


def _wait_settled(
    sessions: sessionmaker[Session], message_id: uuid.UUID, timeout: float
) -> SmsMessage:
    """The message once no worker will touch it again, or as it is when ``timeout`` runs out."""
    deadline = time.monotonic() + timeout
    message = _read(sessions, message_id)
    for _ in range(int(timeout / POLL_SECONDS) + 1):
        if message.status not in CLAIMABLE or time.monotonic() >= deadline:
            break
        time.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))
        message = _read(sessions, message_id)
    return message


def _read(sessions: sessionmaker[Session], message_id: uuid.UUID) -> SmsMessage:
    with sessions() as session:
        message = messages.get_message(session, message_id)
    if message is None:
        raise RuntimeError(f"message {message_id} is not in the ledger")
    return message


def _summary(message: SmsMessage) -> DataTable:
    table = DataTable(show_header=False, box=None)
    for name, value in (
        ("status", message.status),
        ("sid", message.sid),
        ("fee", message.fee),
        ("result", message.result),
        ("errmsg", message.errmsg),
        ("reason", message.reason),
    ):
        table.add_row(name, "-" if value is None else str(value))
    return table


def _attempts_table(sessions: sessionmaker[Session], message_id: uuid.UUID) -> DataTable:
    table = DataTable(title="Attempts", title_justify="left")
    for column in ("#", "started", "outcome", "http", "result", "sid", "fee", "ms", "errmsg"):
        # The sid is what people search reports and bills by: wrapped, never cut short.
        table.add_column(column, overflow="fold", no_wrap=column not in ("sid", "errmsg"))
    with sessions() as session:
        rows = attempts.attempts_for(session, message_id)
    for attempt in rows:
        table.add_row(
            str(attempt.attempt_no),
            attempt.started_at.strftime("%H:%M:%S"),
            attempt.outcome,
            *("-" if value is None else str(value) for value in (
                attempt.http_status, attempt.result, attempt.sid, attempt.fee,
                attempt.latency_ms, attempt.errmsg,
            )),
        )  # fmt: skip
    return table
