"""The checks of ``sms-worker doctor`` about what workers need beside the broker: the Redis of
their shared throttle, and a running worker consuming each queue.

Like every doctor check they are bounded by the timeout and change nothing: the throttle's Redis
gets a PING; the workers are asked which queues they consume (Celery's ``active_queues``
broadcast, which they answer without running a task).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import redis
from kombu.utils.url import maybe_sanitize_url
from redis.backoff import NoBackoff
from redis.retry import Retry

from worker.celery.routing import QUEUES
from worker.celery.runtime import require_shared_throttle
from worker.cli.common import first_line
from worker.cli.doctor_results import CheckResult, failed, passed
from worker.config import ConfigError, Settings

WORKER_COMMAND = "celery -A worker worker"


def check_throttle(settings: Settings, timeout: float) -> CheckResult:
    """The Redis every worker counts the account's rate and the per-number rules in."""
    name = "throttle"
    try:
        require_shared_throttle(settings)
    except ConfigError as error:
        # Workers refuse to start this way (worker.celery), so this is the configuration's fault.
        return failed(
            name, str(error), "set SMS_REDIS_URL to a Redis every worker reaches, e.g. "
            "redis://localhost:6379/1", bad_input=True,
        )  # fmt: skip
    url = settings.throttle_redis_url
    if url is None:
        scheme = urlsplit(settings.broker_url).scheme
        return passed(name, f"none needed: a {scheme} broker feeds a single worker")
    shown: str = maybe_sanitize_url(url)
    setting = "SMS_REDIS_URL" if settings.redis_url is not None else "SMS_BROKER_URL"
    # No retries: a Redis that does not answer at once is what doctor reports.
    client = redis.Redis.from_url(
        url, socket_connect_timeout=timeout, socket_timeout=timeout, retry=Retry(NoBackoff(), 0)
    )
    try:
        client.ping()
    except (redis.RedisError, OSError, ValueError) as error:
        return failed(
            name, f"{shown} ({setting}): {first_line(error)}",
            f"start that Redis, or correct {setting}",
        )  # fmt: skip
    finally:
        client.close()
    return passed(name, f"{shown} ({setting}) answers PING")


class _EveryQueueServed(Exception):
    """Raised from the reply callback to stop waiting once every queue has a consumer."""


def check_workers(settings: Settings, timeout: float) -> CheckResult:
    """Whether some running worker consumes each of the worker's queues.

    The answers are collected until every queue has a consumer (a healthy setup answers at
    once), or until no answer came for ``timeout`` seconds.
    """
    from worker.celery.application import make_app  # Celery only for this check

    name = "workers"
    consumers: dict[str, set[str]] = {}

    def on_reply(reply: Any) -> None:
        for worker, queues in reply.items() if isinstance(reply, dict) else ():
            for queue in queues if isinstance(queues, list) else ():
                if isinstance(queue, dict) and isinstance(queue.get("name"), str):
                    consumers.setdefault(queue["name"], set()).add(str(worker))
        if all(queue in consumers for queue in QUEUES):
            raise _EveryQueueServed

    celery_app = make_app(settings)
    try:
        celery_app.control.broadcast(
            "active_queues", reply=True, timeout=timeout, callback=on_reply
        )
    except _EveryQueueServed:
        pass
    except Exception as error:  # each kombu transport raises errors of its own
        return failed(
            name, f"cannot ask the workers: {first_line(error)}",
            "start the broker, or correct SMS_BROKER_URL",
        )  # fmt: skip
    finally:
        celery_app.close()
    missing = [queue for queue in QUEUES if queue not in consumers]
    if len(missing) == len(QUEUES) and not consumers:
        scheme = urlsplit(settings.broker_url).scheme
        where = " (a memory broker lives inside one process)" if scheme == "memory" else ""
        return failed(
            name, f"no worker answered within {timeout:g} s{where}; nothing sends the messages",
            f"start one: {WORKER_COMMAND} (it consumes every queue), and beat: "
            "celery -A worker beat",
        )  # fmt: skip
    served = "; ".join(
        f"{queue}: {', '.join(sorted(consumers[queue]))}" for queue in QUEUES if queue in consumers
    )
    if missing:
        return failed(
            name, f"no worker consumes {', '.join(missing)} (consumed: {served})",
            f"start a worker for it: {WORKER_COMMAND} -Q {','.join(missing)}",
        )  # fmt: skip
    return passed(name, f"every queue has a worker: {served}")
