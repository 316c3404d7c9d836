"""How long a throttled message waits, by the kind of window the gateway named."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from worker.tencent.codes import CodeInfo, Wait

# Mainland China has kept UTC+8 without daylight saving since 1991; quotas and quiet hours use it.
BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")
MARKETING_OPENS = 8  # 08:00 Beijing time
MARKETING_CLOSES = 22  # 22:00 Beijing time
DEFAULT_WAIT_SECONDS = 60.0


def seconds_until_beijing_hour(now: datetime, hour: int) -> float:
    """Seconds from ``now`` (aware) to the next ``hour``:00 Beijing time."""
    local = now.astimezone(BEIJING)
    target = local.replace(hour=hour, minute=0, second=0, microsecond=0)
    if target <= local:
        target += timedelta(days=1)
    return (target - local).total_seconds()


def within_marketing_hours(now: datetime) -> bool:
    """Whether marketing may go out at ``now`` (aware): 08:00 to 22:00 Beijing time."""
    return MARKETING_OPENS <= now.astimezone(BEIJING).hour < MARKETING_CLOSES


def wait_for(info: CodeInfo | None, now: datetime) -> float:
    """Seconds to wait after a throttled answer described by ``info`` (None: an HTTP 429)."""
    if info is None or info.wait is None:
        return DEFAULT_WAIT_SECONDS
    if info.wait is Wait.NEXT_DAY:
        return seconds_until_beijing_hour(now, 0)
    if info.wait is Wait.QUIET_HOURS:
        return seconds_until_beijing_hour(now, MARKETING_OPENS)
    return float(info.wait_seconds or DEFAULT_WAIT_SECONDS)


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
