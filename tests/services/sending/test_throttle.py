"""The shared throttle on a real Redis: the account rate across processes' worth of instances, and
the gateway's per-number policy (same content once in 30 s, 10 messages a Beijing day)."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import pytest
from redis import Redis

from worker.services.sending.throttle import Throttle

T = TypeVar("T")
PHONE = "+8613788888888"
BEIJING_OFFSET = 8 * 3600


def redis_now(client: Redis) -> float:
    seconds, microseconds = client.time()
    return seconds + microseconds / 1_000_000


def seconds_to_beijing_midnight(now: float) -> float:
    day = math.floor((now + BEIJING_OFFSET) / 86400)
    return (day + 1) * 86400 - BEIJING_OFFSET - now


def in_threads(work: Callable[[int], T], count: int) -> list[T]:
    """``work(i)`` in ``count`` threads started together; their results."""
    barrier = threading.Barrier(count, timeout=30)
    results: list[T] = []
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait()
            results.append(work(index))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a thread is stuck"
    assert not errors, errors
    return results


@pytest.fixture
def throttle(redis_client: Redis) -> Throttle:
    return Throttle(redis_client, burst_seconds=0)


class TestAccountRate:
    def test_one_send_per_interval_and_a_refusal_takes_nothing(self, throttle: Throttle) -> None:
        rate = 0.01  # one send per 100 s
        assert throttle.account_wait("shop", rate) == 0.0
        first_refusal = throttle.account_wait("shop", rate)
        second_refusal = throttle.account_wait("shop", rate)
        assert 90 < first_refusal <= 100
        # Had the refusal taken a slot, the next one would wait about 200 s.
        assert 90 < second_refusal <= first_refusal

    def test_a_small_burst_goes_at_once(self, redis_client: Redis) -> None:
        throttle = Throttle(redis_client, burst_seconds=300)
        waits = [throttle.account_wait("shop", 0.01) for _ in range(5)]
        assert waits[:3] == [0.0, 0.0, 0.0]
        assert all(90 < wait <= 100 for wait in waits[3:])

    def test_accounts_and_prefixes_are_separate(self, redis_client: Redis) -> None:
        first = Throttle(redis_client, burst_seconds=0)
        assert first.account_wait("shop", 0.01) == 0.0
        assert first.account_wait("shop", 0.01) > 0
        assert first.account_wait("bank", 0.01) == 0.0
        other_prefix = Throttle(redis_client, prefix="elsewhere:", burst_seconds=0)
        assert other_prefix.account_wait("shop", 0.01) == 0.0
        keys = {key.decode() for key in redis_client.keys("*")} - {"sms-tests:owner"}
        assert keys and all(key.startswith(("sms:", "elsewhere:")) for key in keys)

    def test_instances_in_threads_share_one_slot(self, redis_url: str, redis_client: Redis) -> None:
        # One slot per 100 s, eight workers asking 20 times each at once: exactly one gets it.
        def ask(_: int) -> list[float]:
            with Redis.from_url(redis_url) as client:
                throttle = Throttle(client, burst_seconds=0)
                return [throttle.account_wait("shop", 0.01) for _ in range(20)]

        waits = [wait for answers in in_threads(ask, 8) for wait in answers]
        assert waits.count(0.0) == 1
        assert all(90 < wait <= 100 for wait in waits if wait != 0.0)

    def test_the_rate_holds_across_instances_over_a_window(
        self, redis_url: str, redis_client: Redis
    ) -> None:
        rate, window = 40.0, 1.0
        started = redis_now(redis_client)

        def send_for_a_while(_: int) -> int:
            granted = 0
            with Redis.from_url(redis_url) as client:
                throttle = Throttle(client, burst_seconds=0)
                deadline = time.monotonic() + window
                for _ in range(5000):
                    if time.monotonic() >= deadline:
                        break
                    wait = throttle.account_wait("shop", rate)
                    if wait == 0.0:
                        granted += 1
                    else:
                        assert 0 < wait <= 1 / rate
                        time.sleep(wait)
            return granted

        granted = sum(in_threads(send_for_a_while, 4))
        elapsed = redis_now(redis_client) - started
        # GCRA without burst: grant k comes no sooner than k intervals after the first.
        assert granted <= rate * elapsed + 1
        assert granted >= rate * window / 4  # generous: the workers were asking all along

    @pytest.mark.parametrize("rate", [0.0, -1.0, math.inf, math.nan])
    def test_a_rate_must_be_positive(self, throttle: Throttle, rate: float) -> None:
        with pytest.raises(ValueError, match="rate_per_second"):
            throttle.account_wait("shop", rate)

    def test_burst_must_not_be_negative(self, redis_client: Redis) -> None:
        with pytest.raises(ValueError, match="burst_seconds"):
            Throttle(redis_client, burst_seconds=-1)


class TestPerNumber:
    def test_the_same_content_waits_30_seconds(self, throttle: Throttle) -> None:
        assert throttle.number_wait("shop", PHONE, "code-tpl", "m1") == 0.0
        wait = throttle.number_wait("shop", PHONE, "code-tpl", "m2")
        assert 28 < wait <= 30
        assert throttle.number_wait("shop", PHONE, "other-tpl", "m3") == 0.0
        assert throttle.number_wait("shop", "+8613700000000", "code-tpl", "m4") == 0.0
        assert throttle.number_wait("bank", PHONE, "code-tpl", "m5") == 0.0

    def test_the_window_is_configurable(self, throttle: Throttle) -> None:
        assert throttle.number_wait("shop", PHONE, "k", "m1", same_content_seconds=120) == 0.0
        assert throttle.number_wait("shop", PHONE, "k", "m2", same_content_seconds=120) > 115
        assert throttle.number_wait("shop", PHONE, "j", "m3", same_content_seconds=0) == 0.0
        assert throttle.number_wait("shop", PHONE, "j", "m4", same_content_seconds=0) == 0.0

    def test_a_retry_of_the_same_message_passes_its_own_mark(self, throttle: Throttle) -> None:
        assert throttle.number_wait("shop", PHONE, "code-tpl", "m1") == 0.0
        assert throttle.number_wait("shop", PHONE, "code-tpl", "m1") == 0.0
        assert throttle.number_wait("shop", PHONE, "code-tpl", "m2") > 0

    def test_retries_count_once_toward_the_daily_limit(self, throttle: Throttle) -> None:
        for _ in range(3):
            assert throttle.number_wait("shop", PHONE, "a", "m1", daily_limit=2) == 0.0
        assert throttle.number_wait("shop", PHONE, "b", "m2", daily_limit=2) == 0.0
        assert throttle.number_wait("shop", PHONE, "c", "m3", daily_limit=2) > 0
        assert throttle.number_wait("shop", PHONE, "a", "m1", daily_limit=2) == 0.0

    def test_a_refused_message_is_not_counted(self, throttle: Throttle) -> None:
        assert throttle.number_wait("shop", PHONE, "a", "m1", daily_limit=2) == 0.0
        assert throttle.number_wait("shop", PHONE, "a", "m2", daily_limit=2) > 0  # same content
        assert throttle.number_wait("shop", PHONE, "b", "m3", daily_limit=2) == 0.0
        assert throttle.number_wait("shop", PHONE, "c", "m4", daily_limit=2) > 0  # the limit

    def test_the_eleventh_message_waits_for_beijing_midnight(
        self, throttle: Throttle, redis_client: Redis
    ) -> None:
        for number in range(10):
            assert throttle.number_wait("shop", PHONE, f"c{number}", f"m{number}") == 0.0
        wait = throttle.number_wait("shop", PHONE, "c10", "m10")
        expected = seconds_to_beijing_midnight(redis_now(redis_client))
        assert abs(wait - expected) < 5
        # Its content was not marked, nor was it counted: the count is still 10 of 10.
        assert throttle.number_wait("shop", PHONE, "c10", "m10") == pytest.approx(wait, abs=5)
        assert throttle.number_wait("shop", PHONE, "c0", "m0") == 0.0  # a retry still goes
        assert throttle.number_wait("shop", "+8613700000000", "c10", "m10") == 0.0
        # The day's count disappears at Beijing midnight.
        (today,) = redis_client.keys(f"sms:*{PHONE}*:today")
        assert redis_client.scard(today) == 10
        assert abs(int(redis_client.ttl(today)) - expected) < 5  # type: ignore[arg-type]

    def test_limits_must_make_sense(self, throttle: Throttle) -> None:
        with pytest.raises(ValueError, match="daily_limit"):
            throttle.number_wait("shop", PHONE, "k", "m1", daily_limit=0)
        with pytest.raises(ValueError, match="same_content_seconds"):
            throttle.number_wait("shop", PHONE, "k", "m1", same_content_seconds=-1)
