"""Celery tasks: a few lines each over the service functions (names and queues: routing)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from celery import Celery, Task

from worker import clock
from worker.celery.application import app
from worker.celery.routing import (
    DISPATCH_EVERY_SECONDS,
    QUEUE_MAINTENANCE,
    QUEUE_MARKETING,
    ROLLUP_RECENT_DAYS,
    TASK_DISPATCH_BATCHES,
    TASK_PULL_REPORTS,
    TASK_ROLLUP_USAGE,
    TASK_SEND,
    TASK_SEND_CHUNK,
    TASK_SWEEP,
    queue_for,
)
from worker.celery.runtime import runtime
from worker.services.dispatch import Dispatcher, dispatch_due_batches
from worker.services.finance import rollup, trailing_days
from worker.services.pull import pull_accounts
from worker.services.sending.group import send_chunk
from worker.services.sending.single import send_message
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


def make_chunk_publisher(celery_app: Celery) -> Callable[[Sequence[uuid.UUID], str], None]:
    """A function publishing one batch chunk (message ids and their lease) on sms.marketing."""

    def publish_chunk(message_ids: Sequence[uuid.UUID], lease_owner: str) -> None:
        celery_app.send_task(
            TASK_SEND_CHUNK,
            args=[[str(message_id) for message_id in message_ids], lease_owner],
            queue=QUEUE_MARKETING,
        )

    return publish_chunk


publish_send = make_publisher(app)
publish_chunk = make_chunk_publisher(app)


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


@app.task(name=TASK_ROLLUP_USAGE, queue=QUEUE_MAINTENANCE)
def rollup_usage(days: int = ROLLUP_RECENT_DAYS) -> int:
    """Upsert the daily usage of today and the ``days - 1`` before; how many rows were written."""
    return rollup(runtime().sessions, trailing_days(days))


@app.task(name=TASK_SWEEP, queue=QUEUE_MAINTENANCE)
def sweep() -> int:
    """Publish again what the broker lost and what has become due; how many were published."""
    current = runtime()
    return sweep_messages(
        current.sessions,
        publish_send,
        now=clock.now(),
        idle_seconds=current.settings.sweep_after_seconds,
    )


@app.task(name=TASK_PULL_REPORTS, queue=QUEUE_MAINTENANCE)
def pull_reports() -> int:
    """Drain pullstatus of every account into the ledger; how many reports and replies came."""
    current = runtime()
    summaries = pull_accounts(current.sessions, current.client_for, current.settings.account_names)
    return sum(summary.reports + summary.replies for summary in summaries.values())


@app.task(name=TASK_SEND_CHUNK, queue=QUEUE_MARKETING)
def send_batch_chunk(message_ids: list[str], lease_owner: str) -> dict[str, int]:
    """Send one chunk of a batch in one group request; how many messages reached each state.
    What must wait goes back to the queue, where the dispatcher finds it."""
    ids = [uuid.UUID(message_id) for message_id in message_ids]
    return send_chunk(ids, lease_owner, runtime().send_context).moved


@app.task(name=TASK_DISPATCH_BATCHES, queue=QUEUE_MAINTENANCE)
def dispatch_batches() -> int:
    """One tick of the batch dispatcher; how many messages it handed to tasks."""
    current = runtime()
    dispatcher = Dispatcher(
        sessions=current.sessions,
        settings=current.settings,
        publish_chunk=publish_chunk,
        publish_send=publish_send,
        worker=current.worker,
        every_seconds=DISPATCH_EVERY_SECONDS,
    )
    return dispatch_due_batches(dispatcher, current.settings.now()).messages
