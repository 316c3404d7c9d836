"""The ledger's tables, one module per query module (the map is in ``worker.ledger``'s docstring).

Importing this package registers every table on ``Base.metadata``: the migrations compare with it
(``worker/ledger/migrations/env.py``, ``tests/ledger/test_migrations.py``). A change to a table
needs a migration. Table names and columns are a public contract: finance queries them.
"""

from worker.ledger.schema.accounts import SmsAccount
from worker.ledger.schema.attempts import SmsAttempt
from worker.ledger.schema.base import Base, utcnow
from worker.ledger.schema.batches import SmsBatch, SmsBatchRejection
from worker.ledger.schema.finance import SmsDailyUsage, SmsPrice
from worker.ledger.schema.messages import SmsMessage
from worker.ledger.schema.optouts import SmsOptOut
from worker.ledger.schema.reports import SmsDeliveryReport, SmsReply

__all__ = [
    "Base",
    "SmsAccount",
    "SmsAttempt",
    "SmsBatch",
    "SmsBatchRejection",
    "SmsDailyUsage",
    "SmsDeliveryReport",
    "SmsMessage",
    "SmsOptOut",
    "SmsPrice",
    "SmsReply",
    "utcnow",
]
