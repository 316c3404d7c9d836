"""A batch is created once: by its key, and by its input within a day.

- With a key (``--key``, ``create_batch(..., key=...)``) the creation is idempotent: the same
  key with the same input returns the batch made before and writes nothing; the same key with
  another input is refused (``BatchKeyConflict``). The ledger's unique index on (account, key)
  decides between two creates at once.
- Without a key, an input equal to that of a batch of the account created in the last
  ``DUPLICATE_WINDOW`` is refused (``DuplicateBatch``) unless duplicates are allowed: a command
  that failed after writing, or that was run twice, does not send the same file twice.

The input is the file's bytes together with what decides the messages: account, template, sign,
shared params and the param columns (not the name, the schedule or the key).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime, timedelta
from typing import BinaryIO

from sqlalchemy.orm import Session

from worker.ledger import batch_rows, batches
from worker.ledger.schema import SmsBatch
from worker.ledger.types import text_problem
from worker.services.batch_types import BatchInputError, BatchSpec, ImportReport, Rejected
from worker.services.csv_lines import READ_BYTES, shown

DUPLICATE_WINDOW = timedelta(hours=24)
MAX_KEY_LENGTH = 128  # sms_batches.idempotency_key


class BatchKeyConflict(BatchInputError):
    """The key made a batch of another input before."""

    def __init__(self, key: str, batch: SmsBatch) -> None:
        super().__init__(
            f"key {shown(key)!r} already made batch {batch.id} from another file, template, "
            "sign or params; a new batch needs a new key"
        )
        self.key = key
        self.batch_id = batch.id


class DuplicateBatch(BatchInputError):
    """The same input made a batch within ``DUPLICATE_WINDOW``."""

    def __init__(self, batch: SmsBatch) -> None:
        super().__init__(
            f"batch {batch.id} ({batch.status}, created {batch.created_at:%Y-%m-%d %H:%M} UTC) "
            "was made from the same file, template and sign within 24 hours; to send it again "
            "anyway use --allow-duplicate (allow_duplicate=True), and give --key to make a "
            "retried command safe"
        )
        self.batch_id = batch.id


def check_key(key: str | None) -> None:
    if key is None:
        return
    if not isinstance(key, str) or not key.strip():
        raise BatchInputError("key: must be a non-empty string")
    problem = text_problem(key, MAX_KEY_LENGTH)
    if problem is not None:
        raise BatchInputError(f"key: {problem}")


def input_fingerprint(stream: BinaryIO, spec: BatchSpec) -> str:
    """SHA-256 of the file's bytes (read to the end in chunks, then rewound) and of what decides
    the messages."""
    start = stream.tell()
    digest = hashlib.sha256()
    while chunk := stream.read(READ_BYTES):
        digest.update(chunk)
    stream.seek(start)
    decided = [
        spec.account,
        spec.tpl_id,
        spec.sign,
        list(spec.params) if spec.params is not None else None,
        [name.strip().lower() for name in spec.params_from] if spec.params_from else None,
    ]
    text = json.dumps(decided, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(digest.digest() + text.encode()).hexdigest()


def earlier_creation(
    session: Session, account: str, key: str, fingerprint: str, keep: int
) -> ImportReport | None:
    """The report of the batch ``key`` made before (``created`` False); None if the key made
    none. ``BatchKeyConflict`` if it was made from another input."""
    batch = batches.batch_by_key(session, account, key)
    if batch is None:
        return None
    if batch.fingerprint != fingerprint:
        raise BatchKeyConflict(key, batch)
    first = [
        Rejected(r.line_no, r.reason, r.detail, r.raw)
        for r in batch_rows.rejections(session, batch.id, limit=keep)
    ]
    reasons = batch_rows.rejection_counts(session, batch.id)
    return ImportReport(
        batch.id, batch.total_rows, batch.accepted, batch.rejected, reasons, first, created=False
    )


def refuse_duplicate(
    session: Session, account: str, fingerprint: str, now: datetime, batch_id: uuid.UUID
) -> None:
    """``DuplicateBatch`` if another batch of the account came from the same input within
    the window. Call it after writing the new batch: on PostgreSQL it waits for any other
    creation of that input to commit first."""
    batches.hold_fingerprint(session, fingerprint)
    earlier = batches.earlier_with_fingerprint(
        session, account, fingerprint, now - DUPLICATE_WINDOW, batch_id
    )
    if earlier is not None:
        raise DuplicateBatch(earlier)
