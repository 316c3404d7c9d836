"""sms-worker: a delivery worker for Tencent Cloud's v5 SMS API.

The producer API lives here: ``worker.enqueue(...)`` and ``worker.enqueue_many(...)`` (see
``worker.api.producer``); a bad argument raises ``InvalidInput``, and an idempotency key used before
for a different message ``IdempotencyConflict``. Marketing batches: ``worker.Batches`` (create,
find, status, pause, resume, cancel) and ``worker.create_batch(...)`` (see ``worker.api.batches``).
``celery -A worker`` finds the Celery app in
``worker.celery``. Importing ``worker`` reads no settings; it and ``worker.tencent`` alone pull
in neither the database nor Celery.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from worker.api.batches import Batches, create_batch
    from worker.api.idempotency import IdempotencyConflict
    from worker.api.producer import Enqueued, Producer
    from worker.tencent import InvalidInput

__all__ = [
    "Batches",
    "Enqueued",
    "IdempotencyConflict",
    "InvalidInput",
    "create_batch",
    "default_producer",
    "enqueue",
    "enqueue_many",
]

_producer: Producer | None = None
_lock = threading.Lock()


def default_producer() -> Producer:
    """The process's default producer, from the environment's configuration."""
    global _producer
    if _producer is None:
        with _lock:
            if _producer is None:
                from worker.api.producer import Producer
                from worker.celery.runtime import runtime
                from worker.celery.tasks import publish_send

                current = runtime()
                _producer = Producer(current.settings, current.sessions, publish_send)
    return _producer


def enqueue(to: str, **options: Any) -> Enqueued:
    """Accept one SMS for sending; see ``worker.api.producer.Producer.enqueue``."""
    return default_producer().enqueue(to, **options)


def enqueue_many(recipients: Any, **options: Any) -> list[Enqueued]:
    """Accept the same SMS to many recipients; see ``worker.api.producer.Producer.enqueue_many``."""
    return default_producer().enqueue_many(recipients, **options)


def __getattr__(name: str) -> Any:
    if name in ("Enqueued", "Producer"):
        import worker.api.producer

        return getattr(worker.api.producer, name)
    if name in ("Batches", "create_batch"):
        import worker.api.batches

        return getattr(worker.api.batches, name)
    if name == "InvalidInput":
        from worker.tencent import InvalidInput

        return InvalidInput
    if name == "IdempotencyConflict":
        # Its own small module: catching it pulls in neither the database nor Celery.
        from worker.api.idempotency import IdempotencyConflict

        return IdempotencyConflict
    raise AttributeError(name)
