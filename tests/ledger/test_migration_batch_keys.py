"""Migration 0007 up and down with data in the tables, on PostgreSQL and SQLite: batch keys and
fingerprints, and the rejection reason ``malformed``."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import IntegrityError

from worker.ledger.db import make_engine
from worker.ledger.migrate import downgrade, upgrade

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def insert_batch(engine: Engine, batch_id: uuid.UUID, **columns: object) -> None:
    names = ", ".join(columns)
    values = ", ".join(f":{name}" for name in columns)
    extra = f", {names}" if columns else ""
    extra_values = f", {values}" if columns else ""
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO sms_batches (id, name, account, tpl_id, status, start_at,"
                " window_end_at, total_rows, accepted, rejected, created_at, updated_at"
                f"{extra}) VALUES (:id, 'b', 'default', 1, 'scheduled', :now, :now, 1, 0, 1,"
                f" :now, :now{extra_values})"
            ),
            {"id": _id(engine, batch_id), "now": NOW, **columns},
        )


def reject(engine: Engine, batch_id: uuid.UUID, line_no: int, reason: str) -> None:
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO sms_batch_rejections (batch_id, line_no, reason, detail, raw)"
                " VALUES (:batch_id, :line_no, :reason, 'why', 'row')"
            ),
            {"batch_id": _id(engine, batch_id), "line_no": line_no, "reason": reason},
        )


def _id(engine: Engine, batch_id: uuid.UUID) -> object:
    # The Uuid type stores 32 hex digits on SQLite; raw SQL has to do the same.
    return batch_id.hex if engine.dialect.name == "sqlite" else batch_id


def test_keys_fingerprints_and_malformed_up_and_down(empty_database_url: str) -> None:
    upgrade(empty_database_url, "head")
    engine = make_engine(empty_database_url)
    try:
        first, second = uuid.uuid4(), uuid.uuid4()
        insert_batch(engine, first, idempotency_key="k", fingerprint="f" * 64)
        with pytest.raises(IntegrityError):  # one key, one batch of an account
            insert_batch(engine, second, idempotency_key="k")
        insert_batch(engine, second)  # without a key: as many as wanted
        reject(engine, first, 2, "malformed")
        with pytest.raises(IntegrityError):
            reject(engine, first, 3, "mangled")
    finally:
        engine.dispose()

    downgrade(empty_database_url, "0006")
    engine = make_engine(empty_database_url)
    try:
        columns = {column["name"] for column in inspect(engine).get_columns("sms_batches")}
        assert {"idempotency_key", "fingerprint"}.isdisjoint(columns)
        with engine.connect() as connection:
            reasons = connection.execute(text("SELECT reason FROM sms_batch_rejections")).all()
        # Still counted, under a reason 0006 knows; its detail still says what was wrong.
        assert reasons == [("bad_param",)]
        with pytest.raises(IntegrityError):
            reject(engine, second, 2, "malformed")
    finally:
        engine.dispose()

    upgrade(empty_database_url, "head")
