"""The demo's own broker: an empty Redis database it claims for the run, or a folder of files.

The demo must never share queues with anything else on the same Redis: a deployment's workers
consuming ``sms.transactional`` would take the demo's tasks and send them with the deployment's
account. So the demo claims a database that nobody uses (empty, and no client has it selected),
marks it with an owner key in the same atomic step, and empties it when it is done. The Redis
server is the one ``SMS_BROKER_URL`` names (its database number is not used), else localhost.
When no Redis answers, or every database is taken, the demo uses kombu's filesystem transport in
its own temporary folder.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import redis
from kombu.utils.url import maybe_sanitize_url

from worker import clock

DEFAULT_REDIS_URL = "redis://localhost:6379/0"
OWNER_KEY = "sms-demo:owner"
# From the top: 0 is everyone's default, and other tools tend to count up from 1.
DATABASES = range(15, 0, -1)
CONNECT_TIMEOUT_SECONDS = 2.0

# Claim the database only if nothing is in it: DBSIZE and SET in one atomic step.
_CLAIM_IF_EMPTY = """
if redis.call('DBSIZE') ~= 0 then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""
# Empty it only while it is still ours.
_FLUSH_IF_OURS = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('FLUSHDB')
return 1
"""


@dataclass(frozen=True, slots=True)
class DemoBroker:
    url: str  # what the demo's processes are given as SMS_BROKER_URL
    description: str  # what the demo prints: no password
    release: Callable[[], None]  # empties a claimed database; idempotent


def own_broker(wanted: str | None, folder: Path) -> DemoBroker:
    """A broker that only this run of the demo uses; ``wanted`` is the user's SMS_BROKER_URL."""
    server = wanted if wanted and urlsplit(wanted).scheme in ("redis", "rediss") else None
    server = server or DEFAULT_REDIS_URL
    shown = maybe_sanitize_url(server)
    try:
        claimed = _claim_database(server)
    except (redis.RedisError, ValueError, OSError):
        claimed = None
        why = f"Redis did not answer at {shown}"
    else:
        why = f"every database of the Redis at {shown} is in use"
    if claimed is not None:
        url, release = claimed
        return DemoBroker(url, f"{maybe_sanitize_url(url)} (a database of its own)", release)
    messages = folder / "broker"
    messages.mkdir(exist_ok=True)
    return DemoBroker(
        f"filesystem://{messages}",
        f"{why}; using kombu's filesystem transport in {messages}",
        lambda: None,
    )


def redis_database_url(server: str, db: int) -> str:
    """``server``'s URL with database ``db``: credentials, host, port and options kept."""
    return urlsplit(server)._replace(path=f"/{db}").geturl()


def _claim_database(server: str) -> tuple[str, Callable[[], None]] | None:
    with _client(server) as probe:
        probe.ping()
        selected = _databases_selected(probe)
    owner = f"sms-worker demo, pid {os.getpid()} on {socket.gethostname()}, {_now()}"
    for db in DATABASES:
        if db in selected:
            continue
        url = redis_database_url(server, db)
        client = _client(url)
        try:
            claimed = client.eval(_CLAIM_IF_EMPTY, 1, OWNER_KEY, owner)
        except redis.ResponseError:  # no such database (the server has fewer than 16)
            client.close()
            continue
        if claimed:
            return url, _releaser(client, owner)
        client.close()
    return None


def _releaser(client: redis.Redis, owner: str) -> Callable[[], None]:
    released = False

    def release() -> None:
        nonlocal released
        if released:
            return
        released = True
        try:
            client.eval(_FLUSH_IF_OURS, 1, OWNER_KEY, owner)
        except redis.RedisError:
            pass  # Redis went away: nothing of ours is left to empty
        finally:
            client.close()

    return release


def _databases_selected(client: redis.Redis) -> set[int]:
    """Databases some client has selected: a deployment whose database is empty right now (a
    Redis restarted without persistence) still has its workers waiting on it."""
    try:
        return {int(entry.get("db", 0)) for entry in client.client_list()}
    except redis.ResponseError:  # CLIENT LIST not allowed for this user: emptiness must do
        return set()


def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url, socket_connect_timeout=CONNECT_TIMEOUT_SECONDS, socket_timeout=10.0
    )


def _now() -> str:
    return clock.now().isoformat(timespec="seconds")
