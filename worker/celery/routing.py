"""Queue names, task names and the beat schedule: the one place that says where work goes.

Separate queues keep marketing from delaying a login code: verification codes and notifications
go to ``sms.transactional``, batch chunks to ``sms.marketing``, periodic housekeeping to
``sms.maintenance``. Every publish names its queue explicitly.
"""

from __future__ import annotations

from typing import Any

from celery.schedules import crontab

from worker.ledger.status import MARKETING

QUEUE_TRANSACTIONAL = "sms.transactional"
QUEUE_MARKETING = "sms.marketing"
QUEUE_MAINTENANCE = "sms.maintenance"
QUEUES = (QUEUE_TRANSACTIONAL, QUEUE_MARKETING, QUEUE_MAINTENANCE)

# Stable, readable task names: they travel in every message and show in Flower.
TASK_SEND = "sms.send"
TASK_SWEEP = "sms.sweep"
TASK_PULL_REPORTS = "sms.pull_reports"
TASK_ROLLUP_USAGE = "sms.rollup_usage"
TASK_DISPATCH_BATCHES = "sms.dispatch_batches"
TASK_SEND_CHUNK = "sms.send_chunk"

# How often the sweeper runs. Beat only enqueues; the sweep itself claims in the database, so two
# beats ticking at once publish a message twice at worst, and the second publish is a no-op.
SWEEP_EVERY_SECONDS = 15.0
# How often pullstatus is drained. Its queue is consume-once and ingestion is idempotent, so two
# beats pulling at once split the items between them and store each once.
PULL_REPORTS_EVERY_SECONDS = 30.0
# How often the batch dispatcher hands out work. Each tick hands out what the account's rate
# sends in this time, so a short interval keeps the broker's backlog small.
DISPATCH_EVERY_SECONDS = 5.0

# The daily usage rollup: hourly over today and yesterday (so yesterday's last hour is counted
# soon after midnight), nightly over a trailing week, so late delivery reports reach the figures.
ROLLUP_EVERY_SECONDS = 3600.0
ROLLUP_RECENT_DAYS = 2
ROLLUP_TRAILING_DAYS = 7

BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    # Marketing batches: claims due batches by a lease in the database, so two beats ticking at
    # once dispatch each message once; it also resends chunks whose task was lost.
    "dispatch-marketing-batches": {
        "task": TASK_DISPATCH_BATCHES,
        "schedule": DISPATCH_EVERY_SECONDS,
        "options": {"queue": QUEUE_MAINTENANCE, "expires": DISPATCH_EVERY_SECONDS},
    },
    # Re-publish queued messages whose task was lost (failed publish, Redis restart, FLUSHALL)
    # or whose not_before came, and sending messages whose worker died holding the lease.
    "sweep-lost-and-due-messages": {
        "task": TASK_SWEEP,
        "schedule": SWEEP_EVERY_SECONDS,
        "options": {"queue": QUEUE_MAINTENANCE, "expires": SWEEP_EVERY_SECONDS},
    },
    # Upserts on its natural key: two beats, or an hourly and a nightly run at once, write the
    # same figures twice.
    "rollup-usage-recent-days": {
        "task": TASK_ROLLUP_USAGE,
        "schedule": ROLLUP_EVERY_SECONDS,
        "kwargs": {"days": ROLLUP_RECENT_DAYS},
        "options": {"queue": QUEUE_MAINTENANCE, "expires": ROLLUP_EVERY_SECONDS},
    },
    "rollup-usage-trailing-week": {
        "task": TASK_ROLLUP_USAGE,
        "schedule": crontab(minute=30, hour=16),  # 00:30 Beijing time; beat runs in UTC
        "kwargs": {"days": ROLLUP_TRAILING_DAYS},
        "options": {"queue": QUEUE_MAINTENANCE, "expires": ROLLUP_EVERY_SECONDS},
    },
    # Delivery reports and replies of accounts without callbacks (pullstatus), and orphan
    # reports whose send has been recorded since they came.
    "pull-delivery-reports-and-replies": {
        "task": TASK_PULL_REPORTS,
        "schedule": PULL_REPORTS_EVERY_SECONDS,
        "options": {"queue": QUEUE_MAINTENANCE, "expires": PULL_REPORTS_EVERY_SECONDS},
    },
}


def queue_for(kind: str) -> str:
    """The queue a message of ``kind`` is sent from."""
    return QUEUE_MARKETING if kind == MARKETING else QUEUE_TRANSACTIONAL
