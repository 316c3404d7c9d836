"""Apply the ledger's Alembic migrations from code: no alembic.ini, works from any directory.

The migration scripts ship inside the package as ``worker.ledger.migrations``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from worker.ledger.db import make_migration_engine


def alembic_config() -> Config:
    config = Config()
    # The scripts ship as a package, so this works from any directory and from a wheel.
    spec = importlib.util.find_spec("worker.ledger.migrations")
    if spec is None or spec.origin is None:
        raise RuntimeError("the package worker.ledger.migrations is not installed")
    config.set_main_option("script_location", str(Path(spec.origin).parent))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url`` up to ``revision``; an empty database gets every table."""
    _run(url, lambda config: command.upgrade(config, revision))


def downgrade(url: str, revision: str) -> None:
    """Migrate the database at ``url`` down to ``revision`` (``base``: drop every table)."""
    _run(url, lambda config: command.downgrade(config, revision))


def current(url: str) -> str | None:
    """The revision the database at ``url`` is at; None for a database never migrated."""
    engine = make_migration_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def head() -> str:
    """The newest revision the installed package knows."""
    revision = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert revision is not None, "worker.ledger.migrations holds no revision"
    return revision


def _run(url: str, alembic_command: Callable[[Config], None]) -> None:
    engine = make_migration_engine(url)
    try:
        with engine.connect() as connection:
            config = alembic_config()
            config.attributes["connection"] = connection
            alembic_command(config)
    finally:
        engine.dispose()
