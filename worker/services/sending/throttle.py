"""Throttling shared by every worker process, on every machine, through Redis.

Two questions are asked before a request goes out (docs/policy.md, Before a request): may this
account send now (its rate, shared by all workers), and may this number receive this message now
(the gateway's per-number limits, docs/gateway.md: the same content at most once in 30 s, at most
10 messages a Beijing calendar day). A "no" comes with the seconds to wait, so the task defers
instead of spending a request to be told 1023 or 1025.

Each check is one Lua script: Redis runs it atomically, so workers never interleave between the
check and the record, and it reads the time with Redis ``TIME``, so the workers' clocks do not
matter. The per-number day is the worker's Beijing day: Redis's time shifted by the offset of the
worker's one clock (worker.clock), so a simulated hour counts its quota in the simulated day.
Times inside the scripts are whole microseconds (exact in Lua's doubles); the scripts
return whole microseconds because Redis truncates a Lua number to an integer on the way out.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from redis import Redis

from worker import clock

MICROSECONDS = 1_000_000

# GCRA (the generic cell rate algorithm): one key per account holding the theoretical arrival
# time (TAT) of the next send. A send is allowed while the TAT it would leave behind is at most
# `tolerance` ahead of now; `tolerance` is one interval plus the burst allowed on top of the rate.
_ACCOUNT_SCRIPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local next_tat = tat + interval
local wait = next_tat - tolerance - now
if wait > 0 then return math.ceil(wait) end
redis.call('SET', KEYS[1], string.format('%.0f', next_tat),
           'PX', math.ceil((next_tat - now) / 1000) + 1)
return 0
"""

# KEYS[1]: the same-content mark, holding the id of the message that set it.
# KEYS[2]: the set of message ids sent to the number this Beijing day, gone at Beijing midnight.
# A message already in the set is a retry: it neither counts again nor trips over its own mark.
# ARGV[4]: the worker clock's offset in whole microseconds; the day is counted on that clock.
_NUMBER_SCRIPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2]) + tonumber(ARGV[4])
local day = 86400000000
local beijing = 28800000000
local day_ends = (math.floor((now + beijing) / day) + 1) * day - beijing
local message_id = ARGV[1]
local window_ms = tonumber(ARGV[2])
local counted = redis.call('SISMEMBER', KEYS[2], message_id) == 1
if not counted and redis.call('SCARD', KEYS[2]) >= tonumber(ARGV[3]) then
  return day_ends - now
end
if window_ms > 0 then
  local holder = redis.call('GET', KEYS[1])
  if holder and holder ~= message_id then
    local left_ms = redis.call('PTTL', KEYS[1])
    if left_ms > 0 then return left_ms * 1000 end
  end
  redis.call('SET', KEYS[1], message_id, 'PX', window_ms)
end
if not counted then
  redis.call('SADD', KEYS[2], message_id)
  redis.call('PEXPIRE', KEYS[2], math.ceil((day_ends - now) / 1000))
end
return 0
"""


class Throttle:
    """The shared rate and per-number limits; one per worker process, safe across threads.

    ``burst_seconds``: how much of the rate may go out at once after a quiet spell (at least one
    send). Small, so a burst stays within what the gateway tolerates.
    """

    def __init__(self, redis: Redis, *, prefix: str = "sms:", burst_seconds: float = 0.1) -> None:
        if not (burst_seconds >= 0 and math.isfinite(burst_seconds)):
            raise ValueError(f"burst_seconds must be zero or more, got {burst_seconds!r}")
        self._prefix = prefix
        self._burst_us = round(burst_seconds * MICROSECONDS)
        # Called by its SHA (EVALSHA); redis-py loads the script again if the server lost it.
        self._account_script = redis.register_script(_ACCOUNT_SCRIPT)
        self._number_script = redis.register_script(_NUMBER_SCRIPT)

    def account_slot(
        self,
        account: str,
        rate_per_second: float,
        sleep: Callable[[float], None],
        max_sleep: float,
        tries: int = 5,
    ) -> float:
        """Take a slot of ``account``'s rate, sleeping for it while each wait is at most
        ``max_sleep`` (``tries`` times at most); 0.0, else the seconds still to wait."""
        for _ in range(tries):
            wait = self.account_wait(account, rate_per_second)
            if wait <= 0:
                return 0.0
            if wait > max_sleep:
                return wait
            sleep(wait)
        return max_sleep

    def account_wait(self, account: str, rate_per_second: float) -> float:
        """0.0 after taking a slot of ``account``'s rate, else the seconds to wait (taking none)."""
        if not (rate_per_second > 0 and math.isfinite(rate_per_second)):
            raise ValueError(f"rate_per_second must be a positive number, got {rate_per_second!r}")
        interval = max(1, round(MICROSECONDS / rate_per_second))
        tolerance = max(interval, self._burst_us)
        key = f"{self._prefix}rate:{{{account}}}"
        waited = self._account_script(keys=[key], args=[interval, tolerance])
        return int(waited) / MICROSECONDS

    def number_wait(
        self,
        account: str,
        phone_e164: str,
        content_key: str,
        message_id: str,
        *,
        same_content_seconds: int = 30,
        daily_limit: int = 10,
    ) -> float:
        """0.0 after recording the send to ``phone_e164``; else the seconds to wait (nothing taken).

        The same ``content_key`` to the number waits out ``same_content_seconds`` after the last
        one (0: no such rule); past ``daily_limit`` distinct messages it waits for Beijing
        midnight. ``message_id`` makes a retry of one message count once and pass its own mark.
        """
        if same_content_seconds < 0:
            raise ValueError(f"same_content_seconds must be 0 or more, got {same_content_seconds}")
        if daily_limit < 1:
            raise ValueError(f"daily_limit must be 1 or more, got {daily_limit}")
        # The hash tag {account:phone} keeps both keys in one slot, as a Redis Cluster requires.
        number = f"{self._prefix}number:{{{account}:{phone_e164}}}"
        keys = [f"{number}:content:{content_key}", f"{number}:today"]
        offset_us = round(clock.offset_seconds() * MICROSECONDS)
        args: list[str | int] = [message_id, same_content_seconds * 1000, daily_limit, offset_us]
        waited = self._number_script(keys=keys, args=args)
        return int(waited) / MICROSECONDS
