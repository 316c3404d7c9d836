"""What a worker process holds for its whole life: one engine, one HTTP pool per account.

Built lazily on first use and rebuilt in a forked child (prefork pool), because database
connections and sockets must not be shared across ``fork()``.
"""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass, field
from functools import cached_property
from urllib.parse import urlsplit

import redis
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from worker.config import ConfigError, Settings, load_settings
from worker.ledger.db import make_engine, session_factory
from worker.services.sending.context import SendContext
from worker.services.sending.throttle import Throttle
from worker.tencent import SmsClient


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    throttle: Throttle | None
    worker: str
    _clients: dict[str, SmsClient] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        engine = make_engine(settings.database_url)
        throttle = None
        # A producer-only process builds one too, unused; a worker has passed
        # require_shared_throttle() at start, so its throttle is there whenever it must be.
        if settings.throttle_redis_url is not None:
            throttle = Throttle(redis.Redis.from_url(settings.throttle_redis_url))
        return cls(
            settings=settings,
            engine=engine,
            sessions=session_factory(engine),
            throttle=throttle,
            worker=f"{socket.gethostname()}:{os.getpid()}",
        )

    def client_for(self, account: str) -> SmsClient:
        """One client, so one keep-alive pool, per account and process."""
        client = self._clients.get(account)
        if client is None:
            with self._lock:
                client = self._clients.get(account)
                if client is None:
                    settings = self.settings
                    details = settings.account(account)
                    client = SmsClient(
                        details.sdkappid,
                        details.appkey.get_secret_value(),
                        details.gateway_url,
                        connect_timeout=settings.connect_timeout,
                        read_timeout=settings.read_timeout,
                        clock=settings.unix_time,
                    )
                    self._clients[account] = client
        return client

    @cached_property
    def send_context(self) -> SendContext:
        return SendContext(
            sessions=self.sessions,
            settings=self.settings,
            client_for=self.client_for,
            throttle=self.throttle,
            worker=self.worker,
            now=self.settings.now,
        )


# Brokers that only ever feed one worker on one machine (the demo's folder of files): there is
# no other worker to share a rate with, and the demo needs no Redis.
SINGLE_WORKER_BROKERS = frozenset({"filesystem", "memory"})


def require_shared_throttle(settings: Settings) -> None:
    """Raise ConfigError when a worker on this broker would have no shared throttle.

    The account's rate and the per-number rules hold only when every worker counts in the same
    Redis. A Redis broker is that Redis; RabbitMQ is not, so SMS_REDIS_URL must name one. Without
    it each worker would send at the account's full rate and keep the per-number rules to itself:
    N workers, N times the rate, and the gateway refusing the excess. Failing at start is chosen
    over a warning because a warning in a busy log lets that go on unnoticed. Producers never
    throttle and are not held to this: only the worker calls it (a bootstep in worker.celery).
    """
    if settings.throttle_redis_url is not None:
        return
    if urlsplit(settings.broker_url).scheme in SINGLE_WORKER_BROKERS:
        return
    raise ConfigError(
        "SMS_REDIS_URL: not set, and the broker (SMS_BROKER_URL) is not Redis; the throttle "
        "every worker shares (the account's rate, the per-number rules) needs a Redis: set "
        "SMS_REDIS_URL, e.g. redis://localhost:6379/1"
    )


_current: tuple[int, Runtime] | None = None
_build_lock = threading.Lock()


def runtime() -> Runtime:
    """This process's runtime, built on first use (and again after a fork)."""
    global _current
    current = _current
    if current is None or current[0] != os.getpid():
        with _build_lock:
            current = _current
            if current is None or current[0] != os.getpid():
                current = (os.getpid(), Runtime.build(load_settings()))
                _current = current
    return current[1]
