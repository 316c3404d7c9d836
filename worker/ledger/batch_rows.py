"""Writing what an import makes of its rows: messages in bulk, rejections, the batch's counts.

A chunk of a batch's messages goes in with one statement that skips a number already in the
batch (the unique index on batch, nationcode and mobile), so duplicates across chunks are caught
by the database, not by a set of every number in memory. On PostgreSQL the chunk is first
streamed with COPY into a temporary table: a multi-row INSERT of thousands of rows spends most
of its time building the statement.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any, cast

import psycopg
from psycopg import sql
from psycopg.types.json import Json
from sqlalchemy import column, func, insert, select, table, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from worker import clock
from worker.ledger.messages import insert_messages
from worker.ledger.schema import SmsBatch, SmsBatchRejection, SmsMessage

# Lives as long as its connection; emptied by every commit.
_STAGE = "sms_batch_import_stage"


def insert_batch_messages(session: Session, rows: Sequence[Mapping[str, Any]]) -> set[uuid.UUID]:
    """Insert a chunk of one batch's messages (all with the same keys, ``id`` included); the ids
    inserted. A row whose number is in the batch already is skipped. Does not commit."""
    if not rows:
        return set()
    if session.get_bind().dialect.name != "postgresql":
        return set(insert_messages(session, rows))
    now = clock.now()
    names = [*rows[0], "created_at", "updated_at"]
    connection = session.connection()
    connection.exec_driver_sql(
        f"CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGE} "
        "(LIKE sms_messages INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
    )
    copy_rows = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(_STAGE), sql.SQL(", ").join(map(sql.Identifier, names))
    )
    driver = cast(psycopg.Connection[Any], connection.connection.dbapi_connection)
    with driver.cursor() as cursor, cursor.copy(copy_rows) as copy:
        for row in rows:
            values = [Json(value) if isinstance(value, list) else value for value in row.values()]
            copy.write_row([*values, now, now])
    stage = table(_STAGE, *(column(name) for name in names))
    statement = (
        postgresql.insert(SmsMessage)
        .from_select(names, select(*stage.columns))
        .on_conflict_do_nothing()
        .returning(SmsMessage.id)
    )
    inserted = set(session.scalars(statement))
    connection.exec_driver_sql(f"TRUNCATE {_STAGE}")
    return inserted


def count_import(
    session: Session, batch_id: uuid.UUID, *, rows: int, accepted: int, rejected: int
) -> None:
    """Add one import chunk's counts to the batch. Locks: its row. Does not commit."""
    session.execute(
        update(SmsBatch)
        .where(SmsBatch.id == batch_id)
        .values(
            total_rows=SmsBatch.total_rows + rows,
            accepted=SmsBatch.accepted + accepted,
            rejected=SmsBatch.rejected + rejected,
        )
        .execution_options(synchronize_session=False)
    )


def insert_rejections(session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    """Record rejected input rows (batch_id, line_no, reason, detail, raw). Does not commit."""
    if rows:
        session.execute(insert(SmsBatchRejection), list(rows))


def rejections(
    session: Session, batch_id: uuid.UUID, *, limit: int | None = None
) -> list[SmsBatchRejection]:
    """The batch's rejected rows in file order. Locks: none."""
    statement = (
        select(SmsBatchRejection)
        .where(SmsBatchRejection.batch_id == batch_id)
        .order_by(SmsBatchRejection.line_no)
        .limit(limit)
    )
    return list(session.scalars(statement))


def rejection_counts(session: Session, batch_id: uuid.UUID) -> dict[str, int]:
    """How many rows were rejected for each reason. Locks: none."""
    statement = (
        select(SmsBatchRejection.reason, func.count())
        .where(SmsBatchRejection.batch_id == batch_id)
        .group_by(SmsBatchRejection.reason)
    )
    return {reason: count for reason, count in session.execute(statement)}
