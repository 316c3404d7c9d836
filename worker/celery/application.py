"""The Celery app: ``celery -A worker worker -Q sms.transactional,sms.maintenance``.

Settings follow docs/architecture.md (Queues and Celery settings): late acks with requeue on worker
loss (the ledger's delivery count stops a poison message from looping), results ignored (the ledger
is the record), a visibility timeout well above the longest countdown plus the task time limit, a
soft shutdown window, and explicit timeouts on the broker connection. Redis is the default broker;
on RabbitMQ the same settings hold, with durable queues, publisher confirms and a separate Redis for
the throttle.

The module-level ``app`` reads the ``SMS_*`` settings only when its configuration is first
needed, so importing this module reads none; a bad one ends ``celery -A worker ...`` with one
line naming it and exit code 2 (SettingsRefused), never a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import IO, Any
from urllib.parse import urlsplit

import click
from celery import Celery, bootsteps
from kombu import Queue

from worker.celery.routing import (
    BEAT_SCHEDULE,
    QUEUE_MAINTENANCE,
    QUEUE_TRANSACTIONAL,
    QUEUES,
    TASK_SWEEP,
)
from worker.celery.runtime import require_shared_throttle
from worker.celery.signals import connect_worker_hooks
from worker.config import ConfigError, Settings, load_settings

TASK_TIME_LIMIT_SECONDS = 120
# Above the send policy's longest countdown plus the task time limit, so a message waiting in a
# worker's memory is never handed to a second worker (tests/celery/test_budgets.py checks it).
VISIBILITY_TIMEOUT_SECONDS = 1800
# RabbitMQ closes the channel of a consumer that holds a delivery unacknowledged longer than its
# consumer_timeout (30 min by default), and every delivery on that channel goes back to the queue.
# The longest a worker holds one is its wait behind the prefetched tasks, plus a countdown (the
# send policy caps it; a longer wait goes to the database as not_before), plus the task time
# limit: well below (tests/celery/test_budgets.py). A longer countdown would need
# consumer_timeout raised on the server.
RABBITMQ_CONSUMER_TIMEOUT_SECONDS = 1800
AMQP_SCHEMES = frozenset({"amqp", "amqps", "pyamqp"})


def transport_options(broker_url: str) -> dict[str, Any]:
    """Broker options: timeouts for Redis, folders for the filesystem transport."""
    scheme = urlsplit(broker_url).scheme
    if scheme == "filesystem":
        # filesystem:///some/folder keeps its messages in that folder (used by the demo).
        folder = urlsplit(broker_url).path or "."
        return {
            "data_folder_in": folder,
            "data_folder_out": folder,
            "control_folder": f"{folder.rstrip('/')}/control",
            "store_processed": False,
        }
    if scheme.startswith("redis"):
        return {
            "visibility_timeout": VISIBILITY_TIMEOUT_SECONDS,
            "socket_timeout": 5,
            "socket_connect_timeout": 5,
            "socket_keepalive": True,
            "retry_on_timeout": True,
            "health_check_interval": 25,
            "max_retries": 3,  # a producer gives up instead of hanging; the sweeper republishes
        }
    if scheme in AMQP_SCHEMES:
        # RabbitMQ acknowledges for real: a delivery stays unacked until its task returns and
        # comes back as soon as the worker's connection drops (a SIGKILL closes it), so there is
        # no visibility timeout. Publisher confirms: a publish returns once the broker holds the
        # message, and raises otherwise (the sweeper publishes that message later).
        return {"confirm_publish": True, "max_retries": 3}
    return {"max_retries": 3}


class SettingsRefused(ConfigError, click.ClickException):
    """A bad ``SMS_*`` setting met while Celery's own command runs (``celery -A worker ...``).

    Celery's command line is click: it shows a ClickException with ``show()`` and exits with its
    ``exit_code``, where anything else ends in a traceback. So the app's settings errors are
    this, one line naming the setting and exit code 2, like every ``sms-worker`` command. Still
    a ConfigError for code that catches those.
    """

    exit_code = 2

    def __init__(self, message: str) -> None:
        click.ClickException.__init__(self, " ".join(message.split()))
        context = click.get_current_context(silent=True)
        # Taken now: click shows the error after its context is gone.
        self.program = context.command_path if context is not None else "celery"

    def __str__(self) -> str:
        return self.message

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"{self.program}: {self.message}", file=file, err=True)


def read_settings() -> Settings:
    """``load_settings()``, with a bad setting raised as SettingsRefused."""
    try:
        return load_settings()
    except SettingsRefused:
        raise
    except ConfigError as error:
        raise SettingsRefused(str(error)) from None


def check_worker_settings() -> None:
    """Raise SettingsRefused unless a worker may start on the settings: they read, and its
    throttle would be shared (worker.celery.runtime.require_shared_throttle says why)."""
    settings = read_settings()
    try:
        require_shared_throttle(settings)
    except ConfigError as error:
        raise SettingsRefused(str(error)) from None


class RequireSharedThrottle(bootsteps.StartStopStep):  # type: ignore[misc]
    """Stops a worker made in code (``app.Worker(...)``) when its settings do not allow one.

    Checked when the step is made, inside ``app.Worker(...)``: not a signal handler (Celery logs
    and ignores what those raise), nor the step's ``start`` (what that raises is logged as an
    "Unrecoverable error" with its traceback).
    """

    def __init__(self, parent: Any, **options: Any) -> None:
        super().__init__(parent, **options)
        check_worker_settings()


def _check_settings_option(_ctx: click.Context, _param: click.Parameter, _value: Any) -> None:
    check_worker_settings()


# `celery -A worker worker` checks the settings while it reads its options, before anything
# else it does (dropping privileges, printing warnings, its banner): a hidden option whose
# callback click runs whether or not it is given.
SETTINGS_CHECK_OPTION = click.Option(
    ["--check-sms-settings"],
    is_flag=True,
    hidden=True,
    expose_value=False,
    callback=_check_settings_option,
)


class SettingsConfiguration(Mapping[str, Any]):
    """The part of the module-level app's configuration that comes from the ``SMS_*`` settings.

    Celery reads its configuration source when the configuration is first needed, not when the
    app is made: importing ``worker.celery`` (every ``sms-worker`` command does, and
    ``celery -A worker`` to find the app) reads no setting, and a bad one is reported by
    whatever needed it. Until the settings have been read once they are read again at each
    access, so a failed read never leaves the app on Celery's defaults.
    """

    def __init__(self) -> None:
        self._values: dict[str, Any] | None = None

    def _loaded(self) -> dict[str, Any]:
        if self._values is None:
            self._values = settings_configuration(read_settings())
        return self._values

    def __getitem__(self, key: str) -> Any:
        return self._loaded()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._loaded())

    def __len__(self) -> int:
        return len(self._loaded())


def settings_configuration(settings: Settings) -> dict[str, Any]:
    """The Celery settings that depend on the ``SMS_*`` ones: the broker and its options."""
    return {
        "broker_url": settings.broker_url,
        "broker_transport_options": transport_options(settings.broker_url),
    }


def make_app(settings: Settings | None = None) -> Celery:
    """The worker's Celery app on ``settings``; None: on the ``SMS_*`` settings, read when the
    app's configuration is first needed (the module-level ``app``)."""
    celery_app = Celery("worker", include=["worker.celery.tasks"])
    if settings is None:
        celery_app.config_from_object(SettingsConfiguration())
    else:
        celery_app.conf.update(settings_configuration(settings))
    celery_app.conf.update(
        broker_connection_retry_on_startup=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        task_default_queue=QUEUE_TRANSACTIONAL,
        # Durable classic queues on RabbitMQ, messages persistent (Celery's default). Not quorum
        # queues: for those Celery fixes the prefetch, so the countdown tasks a worker holds
        # would block it, unless its own delayed-delivery topic exchanges replace our direct ones.
        # What must survive is the ledger anyway (docs/data-model.md, the ledger's guarantees).
        task_queues=[Queue(name, routing_key=name, durable=True) for name in QUEUES],
        task_routes={TASK_SWEEP: {"queue": QUEUE_MAINTENANCE}},
        task_time_limit=TASK_TIME_LIMIT_SECONDS,
        task_soft_time_limit=TASK_TIME_LIMIT_SECONDS - 15,
        # Workers report every task to Flower (received, started, succeeded...). Not the
        # producer's "sent" event: it would be a second broker round trip inside every enqueue.
        task_send_sent_event=False,
        worker_send_task_events=True,
        worker_prefetch_multiplier=4,
        worker_soft_shutdown_timeout=30,
        worker_enable_soft_shutdown_on_idle=True,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        worker_hijack_root_logger=False,
        beat_schedule=BEAT_SCHEDULE,
        timezone="UTC",
        enable_utc=True,
    )
    celery_app.steps["worker"].add(RequireSharedThrottle)
    celery_app.user_options["worker"].add(SETTINGS_CHECK_OPTION)
    return celery_app


# Redacted (optionally JSON) logs and the metrics endpoint of every worker: worker.celery.signals.
connect_worker_hooks()
# Found by `celery -A worker`; its settings are read when first needed (SettingsConfiguration).
app = make_app()
