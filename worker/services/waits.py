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
