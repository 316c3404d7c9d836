"""The Celery app: ``celery -A worker worker -Q sms.transactional,sms.maintenance``.

Settings follow DESIGN 4.6: late acks with requeue on worker loss (the ledger's delivery count
stops a poison message from looping), results ignored (the ledger is the record), a visibility
timeout well above the longest countdown plus the task time limit, a soft shutdown window, and
explicit timeouts on the broker connection.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from celery import Celery
from kombu import Queue

from worker.config import Settings, load_settings
from worker.routing import BEAT_SCHEDULE, QUEUE_MAINTENANCE, QUEUE_TRANSACTIONAL, QUEUES, TASK_SWEEP

TASK_TIME_LIMIT_SECONDS = 120
# Above the longest countdown (worker.services.send.MAX_COUNTDOWN_SECONDS, 300 s) plus the task
# time limit, so a message waiting in a worker's memory is never handed to a second worker.
VISIBILITY_TIMEOUT_SECONDS = 1800


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
    return {"max_retries": 3}


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
        task_queues=[Queue(name, routing_key=name) for name in QUEUES],
        task_routes={TASK_SWEEP: {"queue": QUEUE_MAINTENANCE}},
        task_time_limit=TASK_TIME_LIMIT_SECONDS,
        task_soft_time_limit=TASK_TIME_LIMIT_SECONDS - 15,
        task_send_sent_event=True,
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
    return celery_app


app = make_app(load_settings())
