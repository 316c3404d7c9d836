"""Alembic's environment for the ledger.

``worker.ledger.migrate`` hands over an open connection in ``config.attributes["connection"]``;
the ``alembic`` command line (see alembic.ini) gets its URL from ``SMS_DATABASE_URL`` instead.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, text

from worker.config import load_settings
from worker.ledger.db import make_migration_engine
from worker.ledger.schema import Base  # the package registers every table on Base

config = context.config
target_metadata = Base.metadata


def database_url() -> str:
    return config.get_main_option("sqlalchemy.url") or load_settings().database_url


def run(connection: Connection) -> None:
    # render_as_batch: SQLite alters a table by rebuilding it; batch mode writes that for us.
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
        if connection.dialect.name == "sqlite":
            # Migrations run with foreign keys off (table rebuilds need it): check them at the end.
            broken = connection.execute(text("PRAGMA foreign_key_check")).fetchall()
            if broken:
                raise RuntimeError(f"migration left rows breaking foreign keys: {broken[:5]}")


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run(connection)
        return
    engine = make_migration_engine(database_url())
    try:
        with engine.connect() as connection:
            run(connection)
    finally:
        engine.dispose()


def run_offline() -> None:
    context.configure(
        url=database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
