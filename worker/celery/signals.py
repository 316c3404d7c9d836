"""What a Celery worker (and beat) does at start besides Celery's own setup.

- Logging: Celery configures its handlers as usual (``-l``, ``-f``, colours); then every handler
  gets the redaction and context filters of ``worker.observability.logs``, and the JSON formatter
  when ``SMS_LOG_FORMAT=json``. Celery's own task lines ("Task sms.send[...] succeeded") carry the
  task id, and for ``sms.send`` the message id, which is the task id.
- Metrics: with ``SMS_METRICS_PORT`` set, the worker's main process serves Prometheus metrics
  (``worker.observability.endpoint``), started once logging is set up and before the pool forks
  (``celeryd_after_setup``), and stopped at shutdown.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from celery import current_task, signals
from celery.utils.log import get_multiprocessing_logger

from worker.celery.routing import QUEUES, TASK_SEND
from worker.config import ConfigError, Settings, load_settings
from worker.observability.logs import install

if TYPE_CHECKING:
    from worker.observability.endpoint import MetricsEndpoint

log = logging.getLogger(__name__)

_endpoint: MetricsEndpoint | None = None  # this worker's, while it serves metrics


class CeleryTaskFilter(logging.Filter):
    """Adds ``task_id`` and ``task_name`` (and ``message_id`` for a send) to a record.

    Celery logs its task lines with a dict of arguments naming the task; lines logged while a
    task runs belong to the current task.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        task_id = task_name = None
        if isinstance(record.args, Mapping) and "id" in record.args and "name" in record.args:
            task_id, task_name = record.args["id"], record.args["name"]
        else:
            task_id, task_name = _running_task()
        if task_id:
            record.__dict__.setdefault("task_id", str(task_id))
            record.__dict__.setdefault("task_name", str(task_name))
            if task_name == TASK_SEND:
                record.__dict__.setdefault("message_id", str(task_id))
        return True


def _running_task() -> tuple[str | None, str | None]:
    """The id and name of the task running in this thread, if any (never raises: a filter that
    raised would raise out of the log call)."""
    # Not logged when it fails: a line logged from inside a filter comes back to the filter.
    with suppress(Exception):
        request = current_task.request if current_task else None  # a proxy: false outside a task
        if request is not None and request.id:
            return str(request.id), str(current_task.name)
    return None, None


def _settings() -> Settings | None:
    try:
        return load_settings()
    except ConfigError:
        return None  # the worker reports it when it builds its runtime


def setup_handlers(logger: logging.Logger | None, **_: Any) -> None:
    """``after_setup_logger`` / ``after_setup_task_logger``: redaction, context, format."""
    settings = _settings()
    log_format = settings.log_format if settings is not None else "text"
    secrets = settings.known_secrets() if settings is not None else []
    loggers = [logger, get_multiprocessing_logger()]
    for each in loggers:
        for handler in getattr(each, "handlers", []):
            install(handler, log_format=log_format, secrets=secrets)
            handler.filters = [f for f in handler.filters if not isinstance(f, CeleryTaskFilter)]
            handler.filters.insert(0, CeleryTaskFilter())  # before redaction drops the args


def start_metrics(**_: Any) -> None:
    """``celeryd_after_setup``: serve the metrics when ``SMS_METRICS_PORT`` is set."""
    global _endpoint
    settings = _settings()
    if settings is None or settings.metrics_port is None or _endpoint is not None:
        return
    from worker.observability.endpoint import serve_worker_metrics  # only workers need the server

    _endpoint = serve_worker_metrics(settings, QUEUES)


def stop_metrics(**_: Any) -> None:
    """``worker_shutdown``: stop serving, remove the samples folder made at start."""
    global _endpoint
    if _endpoint is not None:
        _endpoint.close()
        _endpoint = None


def connect_worker_hooks() -> None:
    """Connect the handlers above to Celery's signals (once, however often called)."""
    signals.after_setup_logger.connect(setup_handlers, weak=False, dispatch_uid="sms-logs")
    signals.after_setup_task_logger.connect(
        setup_handlers, weak=False, dispatch_uid="sms-task-logs"
    )
    signals.celeryd_after_setup.connect(start_metrics, weak=False, dispatch_uid="sms-metrics-start")
    signals.worker_shutdown.connect(stop_metrics, weak=False, dispatch_uid="sms-metrics-stop")
