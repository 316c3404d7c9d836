"""Queue names, task names and the beat schedule: the one place that says where work goes.

Separate queues keep marketing from delaying a login code: verification codes and notifications
go to ``sms.transactional``, batch chunks to ``sms.marketing``, periodic housekeeping to
``sms.maintenance``. Every publish names its queue explicitly.
"""

from __future__ import annotations

from typing import Any

from worker.ledger.status import MARKETING

QUEUE_TRANSACTIONAL = "sms.transactional"
QUEUE_MARKETING = "sms.marketing"
QUEUE_MAINTENANCE = "sms.maintenance"
QUEUES = (QUEUE_TRANSACTIONAL, QUEUE_MARKETING, QUEUE_MAINTENANCE)

# Stable, readable task names: they travel in every message and show in Flower.
TASK_SEND = "sms.send"
TASK_SWEEP = "sms.sweep"

# How often the sweeper runs. Beat only enqueues; the sweep itself claims in the database, so two
# beats ticking at once publish a message twice at worst, and the second publish is a no-op.
SWEEP_EVERY_SECONDS = 15.0

BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    # Re-publish queued messages whose task was lost (failed publish, Redis restart, FLUSHALL)
    # or whose not_before came, and sending messages whose worker died holding the lease.
    "sweep-lost-and-due-messages": {
        "task": TASK_SWEEP,
        "schedule": SWEEP_EVERY_SECONDS,
        "options": {"queue": QUEUE_MAINTENANCE, "expires": SWEEP_EVERY_SECONDS},
    },
}


def queue_for(kind: str) -> str:
    """The queue a message of ``kind`` is sent from."""
    return QUEUE_MARKETING if kind == MARKETING else QUEUE_TRANSACTIONAL
