"""A batch's wait for its start and for the sending window, in words operators read.

The window itself and the waits after a throttled answer are the send policy's
(``worker.services.sending.policy``); they are imported from here too by the callers that only
need the calendar.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from worker.services.sending.policy import (
    seconds_until_beijing_hour,
    within_marketing_hours,
)
from worker.tencent.types import BEIJING, MARKETING_CLOSES, MARKETING_OPENS

__all__ = [
    "MARKETING_CLOSES",
    "MARKETING_OPENS",
    "seconds_until_beijing_hour",
    "sending_window_note",
    "within_marketing_hours",
]


def sending_window_note(now: datetime, starts_at: datetime | None = None) -> str | None:
    """What a batch still to send waits for at ``now``, in words; None when it may send now.

    Its start (``starts_at``) comes first; then the 08:00-22:00 Beijing window. Said from the
    worker's clock, so a simulated hour reads as the dispatcher sees it.
    """
    if starts_at is not None and starts_at > now:
        if within_marketing_hours(starts_at):
            start = starts_at.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M")
            return f"waiting for its start: {start} Beijing time (in {_span(starts_at - now)})"
        opens = starts_at + timedelta(
            seconds=seconds_until_beijing_hour(starts_at, MARKETING_OPENS)
        )
    elif within_marketing_hours(now):
        return None
    else:
        opens = now + timedelta(seconds=seconds_until_beijing_hour(now, MARKETING_OPENS))
    # Within a day "08:00" is unambiguous; further off, the date says which morning.
    shape = "%H:%M" if opens - now < timedelta(days=1) else "%Y-%m-%d %H:%M"
    at = opens.astimezone(BEIJING).strftime(shape)
    return f"waiting for the sending window: opens {at} Beijing time (in {_span(opens - now)})"


def _span(length: timedelta) -> str:
    """A wait as people say it: "3 h 12 min", "45 min", "under a minute"."""
    minutes = int(length.total_seconds() // 60)
    if minutes < 1:
        return "under a minute"
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    parts = [f"{days} d"] if days else []
    parts += [f"{hours} h"] if hours else []
    parts += [f"{minutes} min"] if minutes else []
    return " ".join(parts)
