"""The ledger: the tables, every query on them, and their migrations.

Import the module you need (``worker.ledger.messages``, ``worker.ledger.attempts``, ...); nothing
outside this package writes SQL.
"""
