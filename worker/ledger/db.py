"""Engines and sessions for the ledger, tuned per dialect.

Create the engine in the process that uses it: in a Celery worker that is each child process
(``worker_process_init``), never at import time. As a safety net an engine made here forgets its
pooled connections in a forked child, so parent and child never share a socket.
"""

from __future__ import annotations

import os
import time
import weakref
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DisconnectionError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

SQLITE_BUSY_TIMEOUT_MS = 30_000
# A pooled connection idle longer than this is checked before use: servers, proxies and
# firewalls drop idle connections, but one used moments ago is alive, and checking it on every
# checkout would cost a round trip per transaction (three per send).
IDLE_CHECK_SECONDS = 10.0

_engines: weakref.WeakSet[Engine] = weakref.WeakSet()


def _forget_inherited_connections() -> None:
    # close=False: the parent still owns those sockets; the child just stops using them.
    for engine in list(_engines):
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_forget_inherited_connections)


def database_url(url: str) -> URL:
    """``url`` parsed, with plain ``postgresql://`` (or ``postgres://``) pointed at psycopg 3.

    Raises ``sqlalchemy.exc.ArgumentError`` (its message never quotes the URL, which may hold a
    password) when ``url`` is not a PostgreSQL or SQLite URL.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ArgumentError(
            "not a database URL; expected e.g. sqlite:///sms-ledger.db or postgresql://user@host/db"
        ) from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("postgresql", "sqlite"):
        raise ArgumentError(f"the ledger runs on PostgreSQL or SQLite, not {parsed.drivername}")
    return parsed


def make_engine(url: str, *, pool_size: int = 5, max_overflow: int = 10) -> Engine:
    """An engine for the ledger at ``url`` (PostgreSQL or SQLite).

    SQLite gets WAL (readers do not block the writer), a 30 s busy timeout (writers queue instead
    of failing) and enforced foreign keys. PostgreSQL gets a checked pool, so a connection the
    server dropped is replaced rather than failing the first query after an idle night.
    """
    parsed = database_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(parsed)
        _on_sqlite_connect(engine, foreign_keys=True)
    else:
        engine = create_engine(parsed, pool_size=pool_size, max_overflow=max_overflow)
        _check_idle_connections(engine)
    _engines.add(engine)
    return engine


def _check_idle_connections(engine: Engine) -> None:
    """Ping a pooled connection before use when it has been idle for ``IDLE_CHECK_SECONDS``.

    A dead one raises DisconnectionError, on which the pool discards it and connects afresh.
    """

    @event.listens_for(engine, "checkin")
    def _idle_since(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _check(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < IDLE_CHECK_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as error:  # any failure here means: not usable, get another
            raise DisconnectionError("an idle pooled connection was dropped") from error


def make_migration_engine(url: str) -> Engine:
    """A one-connection engine for Alembic.

    On SQLite the schema changes run in one real transaction (the driver would otherwise commit
    each DDL statement on its own, leaving a half-applied migration behind a failure) and with
    foreign keys off, as SQLite requires for the table rebuilds of batch migrations.
    """
    parsed = database_url(url)
    engine = create_engine(parsed, poolclass=NullPool)
    if parsed.get_backend_name() == "sqlite":
        _on_sqlite_connect(engine, foreign_keys=False)

        @event.listens_for(engine, "connect")
        def _driver_autocommit(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None

        @event.listens_for(engine, "begin")
        def _begin(connection: Any) -> None:
            connection.exec_driver_sql("BEGIN")

    return engine


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions whose objects stay readable after commit (the ledger functions commit early)."""
    return sessionmaker(engine, expire_on_commit=False)


def _on_sqlite_connect(engine: Engine, *, foreign_keys: bool) -> None:
    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute(f"PRAGMA foreign_keys = {'ON' if foreign_keys else 'OFF'}")
        finally:
            cursor.close()


def dialect_insert(session: Session) -> Any:
    """The dialect's INSERT, which knows ON CONFLICT (DO NOTHING, DO UPDATE)."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert
    if dialect == "sqlite":
        return sqlite.insert
    raise NotImplementedError(f"the ledger supports PostgreSQL and SQLite, not {dialect}")
