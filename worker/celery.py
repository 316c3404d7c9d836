"""The Celery app: ``celery -A worker worker -Q sms.transactional,sms.maintenance``.

Settings follow DESIGN 4.6: late acks with requeue on worker loss (the ledger's delivery count
stops a poison message from looping), results ignored (the ledger is the record), a visibility
timeout well above the longest countdown plus the task time limit, a soft shutdown window, and
explicit timeouts on the broker connection. Redis is the default broker; on RabbitMQ the same
settings hold, with durable queues, publisher confirms and a separate Redis for the throttle.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from celery import Celery, bootsteps
from kombu import Queue

from worker.celery_hooks import connect_worker_hooks
from worker.config import Settings, load_settings
from worker.routing import BEAT_SCHEDULE, QUEUE_MAINTENANCE, QUEUE_TRANSACTIONAL, QUEUES, TASK_SWEEP
from worker.runtime import require_shared_throttle

TASK_TIME_LIMIT_SECONDS = 120
# Above the longest countdown (worker.services.send.MAX_COUNTDOWN_SECONDS, 300 s) plus the task
# time limit, so a message waiting in a worker's memory is never handed to a second worker.
VISIBILITY_TIMEOUT_SECONDS = 1800
# RabbitMQ closes the channel of a consumer that holds a delivery unacknowledged longer than its
# consumer_timeout (30 min by default), and every delivery on that channel goes back to the queue.
# The longest a worker holds one is its wait behind the prefetched tasks, plus a countdown (300 s
# at most: a longer wait goes to the database as not_before), plus the task time limit: well
# below. A longer countdown would need consumer_timeout raised on the server.
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


class RequireSharedThrottle(bootsteps.StartStopStep):  # type: ignore[misc]
    """Stops a worker at start when its throttle would not be shared (worker.runtime says why).

    A step, not a signal handler: Celery logs and ignores what a signal handler raises, while a
    step that raises ends the worker with "Unrecoverable error" and exit code 1.
    """

    def start(self, parent: Any) -> None:
        require_shared_throttle(load_settings())


def make_app(settings: Settings) -> Celery:
    celery_app = Celery("worker", broker=settings.broker_url, include=["worker.tasks"])
    celery_app.conf.update(
        broker_transport_options=transport_options(settings.broker_url),
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
        # What must survive is the ledger anyway (DESIGN 4.5).
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
    return celery_app


# Redacted (optionally JSON) logs and the metrics endpoint of every worker: worker.celery_hooks.
connect_worker_hooks()
app = make_app(load_settings())
