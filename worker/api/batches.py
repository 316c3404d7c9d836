"""Marketing batches from Python: create one from a CSV file, follow it, pause, resume, cancel.

    from worker.api.batches import Batches

    with Batches() as batches:                        # the configuration of SMS_* variables
        report = batches.create("customers.csv", template=100002, sign="腾讯云",
                                params=["会员", "8"], key="may-day-2026")
        print(report.accepted, report.rejected)
        batches.pause(report.batch_id)

With ``key`` a retried creation is safe: the same key returns the batch made before
(``report.created`` is False) and writes nothing; the same key with another file, template,
sign or params raises ``BatchKeyConflict``. Without a key, the same input as a batch created in
the last 24 hours raises ``DuplicateBatch`` unless ``allow_duplicate=True``.

Beat's dispatcher sends a batch once its start has come (``sms-worker batch`` does the same from
the shell). See ``worker.services.batch_import`` for the file's columns.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from worker.config import Settings, load_settings
from worker.ledger import batch_rows
from worker.ledger import batches as ledger
from worker.ledger.db import make_engine, session_factory
from worker.ledger.messages import count_by_status
from worker.ledger.schema import SmsBatch, SmsBatchRejection
from worker.ledger.status import CLAIMABLE, MARKETING
from worker.services.batch_import import (
    BatchInputError,
    BatchSpec,
    ImportProgress,
    ImportReport,
    import_batch,
)
from worker.services.batch_keys import BatchKeyConflict, DuplicateBatch
from worker.services.csv_lines import Source

__all__ = [
    "BatchInputError",
    "BatchKeyConflict",
    "BatchStatus",
    "Batches",
    "DuplicateBatch",
    "ImportProgress",
    "ImportReport",
    "create_batch",
]


@dataclass(frozen=True, slots=True)
class BatchStatus:
    batch: SmsBatch
    messages: dict[str, int]  # by message state
    rejections: dict[str, int]  # by reason

    @property
    def settled(self) -> int:
        """Messages no longer queued or sending."""
        return sum(n for state, n in self.messages.items() if state not in CLAIMABLE)


class Batches(AbstractContextManager["Batches"]):
    """The batches of one ledger. Give ``sessions`` to share an engine; else one is made (and
    disposed of by ``close``)."""

    def __init__(
        self, settings: Settings | None = None, sessions: sessionmaker[Session] | None = None
    ) -> None:
        self.settings = settings or load_settings()
        self._engine = None
        if sessions is None:
            self._engine = make_engine(self.settings.database_url)
            sessions = session_factory(self._engine)
        self.sessions = sessions

    def create(
        self,
        source: Source,
        *,
        template: int,
        sign: str | None = None,
        account: str | None = None,
        params: Sequence[str] | None = None,
        params_from: Sequence[str] | None = None,
        param_count: int | None = None,
        start_at: datetime | None = None,
        window_end_at: datetime | None = None,
        name: str | None = None,
        progress: Callable[[ImportProgress], None] | None = None,
        key: str | None = None,
        allow_duplicate: bool = False,
    ) -> ImportReport:
        """Import ``source`` as a batch starting at ``start_at`` (default now) and ending at
        ``window_end_at`` (default: the marketing TTL later).

        ``source``: a CSV file's path, the file opened in binary, or its lines as strings (a
        text file is read from its bytes). ``key``: this creation's name, see the module.
        """
        settings = self.settings
        account_name = account or settings.default_account_name
        if account_name is None:
            raise BatchInputError("account: none named and no default account")
        start = start_at or settings.now()
        spec = BatchSpec(
            name=name or (Path(source).name if isinstance(source, str | os.PathLike) else "batch"),
            account=account_name,
            tpl_id=template,
            sign=sign,
            start_at=start,
            window_end_at=window_end_at or start + settings.ttl(MARKETING),
            params=tuple(str(param) for param in params) if params is not None else None,
            params_from=tuple(params_from) if params_from else None,
            param_count=param_count,
        )
        return import_batch(
            self.sessions, settings, source, spec, key=key, allow_duplicate=allow_duplicate,
            progress=progress,
        )  # fmt: skip

    def find(self, prefix: str) -> SmsBatch:
        """The batch whose id is or starts with ``prefix``; LookupError if none or several."""
        with self.sessions() as session:
            found = ledger.batches_by_prefix(session, prefix)
        if not found:
            raise LookupError(f"no batch {prefix!r}")
        if len(found) > 1:
            raise LookupError(f"several batches start with {prefix!r}; give more of the id")
        return found[0]

    def recent(self, limit: int = 50) -> list[SmsBatch]:
        """The newest batches first."""
        with self.sessions() as session:
            return ledger.list_batches(session, limit=limit)

    def status(self, batch_id: uuid.UUID) -> BatchStatus:
        with self.sessions() as session:
            batch = ledger.get_batch(session, batch_id)
            if batch is None:
                raise LookupError(f"no batch {batch_id}")
            counts = count_by_status(session, batch_id=batch_id)
            reasons = batch_rows.rejection_counts(session, batch_id)
        return BatchStatus(batch, counts, reasons)

    def rejections(self, batch_id: uuid.UUID, limit: int | None = None) -> list[SmsBatchRejection]:
        with self.sessions() as session:
            return batch_rows.rejections(session, batch_id, limit=limit)

    def pause(self, batch_id: uuid.UUID) -> bool:
        """Pause the batch: once this has returned, no further message of it is requested from
        the gateway (requests already in the air finish); the rest waits, queued, for
        ``resume``. False if the batch was not scheduled or sending."""
        with self.sessions() as session:
            paused = ledger.pause_batch(session, batch_id, self.settings.now())
            session.commit()
        return paused

    def resume(self, batch_id: uuid.UUID) -> bool:
        """Dispatch a paused batch again; False if it was not paused."""
        with self.sessions() as session:
            resumed = ledger.resume_batch(session, batch_id, self.settings.now())
            session.commit()
        return resumed

    def cancel(self, batch_id: uuid.UUID) -> int | None:
        """Cancel the batch: its queued messages end ``cancelled`` at once (how many is
        returned); once this has returned, no further message of it is requested from the
        gateway (requests already in the air finish, the rest ends ``cancelled``). None if it
        was done, cancelled or importing."""
        with self.sessions() as session:
            cancelled = ledger.cancel_batch(
                session, batch_id, self.settings.now(), "batch cancelled before it went out"
            )
            session.commit()
        return cancelled

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def create_batch(source: Source, **options: Any) -> ImportReport:
    """``Batches().create(source, **options)`` with the environment's configuration."""
    with Batches() as batches:
        return batches.create(source, **options)
