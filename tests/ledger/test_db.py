"""The ledger engine replaces pooled PostgreSQL connections the server dropped while idle."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from worker.ledger import db
from worker.ledger.db import make_engine


def backend_pid(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())


def terminate(engine: Engine, pid: int) -> None:
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        connection.commit()


def test_an_idle_connection_the_server_dropped_is_replaced(
    ledger_postgresql_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(ledger_postgresql_url, pool_size=1, max_overflow=1)
    admin = make_engine(ledger_postgresql_url, pool_size=1, max_overflow=0)
    try:
        dropped = backend_pid(engine)  # the one pooled connection, now idle
        terminate(admin, dropped)
        monkeypatch.setattr(db, "IDLE_CHECK_SECONDS", 0.0)
        assert backend_pid(engine) != dropped  # checked, found dead, replaced: no error
    finally:
        engine.dispose()
        admin.dispose()


def test_a_connection_used_moments_ago_is_not_checked(
    ledger_postgresql_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without the check a dropped connection surfaces on first use: proof that nothing pinged.
    engine = make_engine(ledger_postgresql_url, pool_size=1, max_overflow=0)
    admin = make_engine(ledger_postgresql_url, pool_size=1, max_overflow=0)
    try:
        terminate(admin, backend_pid(engine))
        monkeypatch.setattr(db, "IDLE_CHECK_SECONDS", 3600.0)
        with pytest.raises(OperationalError):
            backend_pid(engine)
    finally:
        engine.dispose()
        admin.dispose()
