"""Celery tasks: a few lines each over the service functions. Names and queues: worker.routing."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from celery import Celery, Task

from worker.celery import app
from worker.routing import QUEUE_MAINTENANCE, TASK_SEND, TASK_SWEEP, queue_for
from worker.runtime import runtime
from worker.services.send import send_message
from worker.services.sweep import sweep_messages

log = logging.getLogger(__name__)


def make_publisher(celery_app: Celery) -> Callable[..., None]:
    """A function publishing the send task of one message through ``celery_app``."""

    def publish_send(
        message_id: uuid.UUID, kind: str, *, countdown: float | None = None, producer: Any = None
    ) -> None:
        """Publish one message's send task; its id is the task id. Raises on broker errors."""
        celery_app.send_task(
            TASK_SEND,
            args=[str(message_id)],
            task_id=str(message_id),
            queue=queue_for(kind),
            countdown=countdown,
            producer=producer,
        )

    return publish_send


publish_send = make_publisher(app)


# max_retries=None on the task: `retry(max_retries=None)` would fall back to Celery's default of
# 3 and strand a message that waits a fourth time. The ledger bounds attempts and deadlines.
@app.task(name=TASK_SEND, bind=True, max_retries=None)
def send(self: Task, message_id: str) -> str | None:
    """Send one message. A wait comes back as a new publish with a countdown."""
    verdict = send_message(uuid.UUID(message_id), runtime().send_context)
    if verdict.retry_in is not None:
        delivery = self.request.delivery_info or {}
        self.retry(countdown=verdict.retry_in, queue=delivery.get("routing_key"))
    return verdict.status


@app.task(name=TASK_SWEEP, queue=QUEUE_MAINTENANCE)
def sweep() -> int:
    """Publish again what the broker lost and what has become due; how many were published."""
    current = runtime()
    return sweep_messages(
        current.sessions,
        publish_send,
        now=datetime.now(UTC),
        idle_seconds=current.settings.sweep_after_seconds,
    )
