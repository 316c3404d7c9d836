"""Alembic migrations of the ledger, installed as ``worker.ledger.migrations``.

Run them with ``sms-worker migrate`` (or ``worker.ledger.migrate``). To write a new one from the
models: ``alembic revision --autogenerate --rev-id 0002 -m "what changes"`` at the repository root,
with SMS_DATABASE_URL pointing at a database migrated to head; then read it and fix it by hand.
"""
