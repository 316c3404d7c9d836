"""The ledger: the tables, every query on them, and their migrations.

Import the module you need (``worker.ledger.messages``, ``worker.ledger.moves``, ...); nothing
outside this package writes SQL.

Where things are, table by table (``schema/`` holds the tables, one module per query module):

========================  ===================  ===============================================
table                     schema module        query module
========================  ===================  ===============================================
sms_messages              schema.messages      messages (inserts, reads), moves (every claim,
                                               lease and state move), keys, gauges
sms_attempts              schema.attempts      attempts
sms_accounts              schema.accounts      accounts
sms_opt_outs              schema.optouts       optouts
sms_batches,              schema.batches       batches, batch_rows (COPY of a batch's rows)
sms_batch_rejections
sms_delivery_reports,     schema.reports       reports
sms_replies
sms_daily_usage,          schema.finance       finance; reconciliation reads messages and
sms_prices                                     attempts for the gateway's figures
========================  ===================  ===============================================

The words stored in the state columns are ``status`` (``MessageStatus``, ``BatchStatus``,
``Kind``); ``db`` makes engines and sessions; ``migrate`` and ``migrations/`` keep the schema.

How statements are built, one rule: a statement of the hot send path (a claim, a transition, the
write-ahead of an attempt) is built once at import, or once per shape, with ``bindparam``,
because building and caching a statement costs more than running it; every other statement is
plain SQLAlchemy 2.0 (``select``/``update``/``insert`` built where it runs). ``db.dialect_insert``
gives the dialect's INSERT for ON CONFLICT; a batch's rows go in by COPY on PostgreSQL
(``batch_rows``). Every write of a message's state or lease goes through ``moves``.
"""
