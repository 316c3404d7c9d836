"""The sweeper: the database is the source of truth, the broker only a cache of work.

Queued messages whose task was lost (a failed publish, a Redis restart, a FLUSHALL) or whose
``not_before`` has come, and sending messages whose worker died holding the lease, are
published again. The claim in the send task is conditional, so publishing twice is harmless.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from worker.ledger import messages, moves

log = logging.getLogger(__name__)

SWEEP_LIMIT = 5000


def sweep_messages(
    sessions: sessionmaker[Session],
    publish: Callable[[uuid.UUID, str], None],
    *,
    now: datetime,
    idle_seconds: float,
    limit: int = SWEEP_LIMIT,
) -> int:
    """Publish what needs publishing; the count. A broker error stops this run, not the next."""
    with sessions() as session:
        due = messages.messages_to_sweep(session, now, now - timedelta(seconds=idle_seconds), limit)
        kinds = messages.kinds_of(session, due)
    published: list[uuid.UUID] = []
    for message_id in due:
        try:
            publish(message_id, kinds[message_id])
        except Exception:
            log.exception("sweeper could not publish message %s; it stays queued", message_id)
            break
        published.append(message_id)
    if published:
        # A queued message counts as idle again only `idle_seconds` from now, so the next tick
        # does not publish it once more while its task is still on its way.
        with sessions() as session:
            moves.mark_republished(session, published, now)
            session.commit()
        log.info("sweeper published %d message(s) again", len(published))
    return len(published)
