"""A month of ledger rows made inside PostgreSQL: ``INSERT .. SELECT FROM generate_series``.

Each message is a function of its number ``m``: hashes of ``m`` pick its account, kind,
template, sign, country and final status with fixed weights, so two runs of the same size hold
the same rows. Messages 1..``answered`` reached the gateway and have one attempt, or two when
the first got a transient 1008 (every 12th message, until the attempt count is reached); the
rest (one in a hundred) never did: expired, cancelled or suppressed. Creation times are spread
evenly over the month, attempts start 50 ms after their message, a retry 30 s after.

The tables' indexes and constraints are dropped while rows go in and rebuilt afterwards (the
same definitions, read from the catalog): the end state is the migrated schema, reached in a
fraction of the time that maintaining a dozen indexes row by row would take.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

TABLES = ("sms_messages", "sms_attempts")
CHUNK = 1_000_000  # messages per INSERT, one transaction each
RETRY_EVERY = 12  # every 12th answered message needed a second attempt


@dataclass(frozen=True, slots=True)
class Shape:
    """How many messages of each sort a month of ``attempts`` attempt rows holds."""

    attempts: int
    answered: int  # messages with attempts: 1..answered
    retried: int  # of them, those with a second attempt: every 12th, up to this many
    unanswered: int  # messages answered+1 .. answered+unanswered, never sent

    @classmethod
    def for_attempts(cls, attempts: int) -> Shape:
        answered = -(-attempts * RETRY_EVERY // (RETRY_EVERY + 1))  # ceiling
        return cls(attempts, answered, attempts - answered, answered // 100)

    @property
    def messages(self) -> int:
        return self.answered + self.unanswered


def _bucket(salt: int) -> str:
    """A stable pseudo-random 0..999 per message and salt."""
    return f"((hashint8(m * 7919 + {salt}) & 2147483647) % 1000)"


def _recipe(shape: Shape, start: datetime, end: datetime, low: int, high: int) -> str:
    """A SELECT of the attributes of messages ``low`` to ``high``, one row each.

    OFFSET 0 keeps each level a level of its own: without it the planner pulls every column's
    expression up into the columns that use it, and the hashes are computed dozens of times.
    """
    first, span = start.timestamp(), (end - start).total_seconds()
    accounts = "ARRAY['shop','bank','game','news','travel']"
    signs = "ARRAY['好物商城','安心银行','星河游戏','今日资讯','远方旅行']"
    return f"""
      SELECT a.*, ({accounts})[a.ai + 1] AS account,
        CASE WHEN a.free_text THEN NULL
             ELSE 100000 + a.ai * 100 + CASE a.kind WHEN 'verification' THEN a.bt % 2
                  WHEN 'notification' THEN 10 + a.bt % 5 ELSE 20 + a.bt % 10 END
        END AS tpl_id,
        CASE WHEN a.free_text THEN NULL
             ELSE ({signs})[a.ai + 1] || CASE WHEN a.bs >= 900 THEN '服务' ELSE '' END
        END AS sign,
        CASE a.kind WHEN 'verification' THEN 1 WHEN 'notification' THEN 1 + a.bt % 2
             ELSE 2 + a.bt % 2 END AS segments
      FROM (SELECT m,
        m <= {shape.answered} AS answered,
        m % {RETRY_EVERY} = 0 AND m <= {RETRY_EVERY * shape.retried} AS retried,
        CASE WHEN h.b1 < 500 THEN 0 WHEN h.b1 < 750 THEN 1 WHEN h.b1 < 900 THEN 2
             WHEN h.b1 < 970 THEN 3 ELSE 4 END AS ai,
        CASE WHEN h.b2 < 550 THEN 'verification'
             WHEN h.b2 < 850 THEN 'notification' ELSE 'marketing' END AS kind,
        h.b2 BETWEEN 600 AND 602 AS free_text,
        h.b3 AS bt,
        h.b4 AS bs,
        CASE WHEN h.b5 < 950 THEN '86' WHEN h.b5 < 970 THEN '852' WHEN h.b5 < 980 THEN '853'
             WHEN h.b5 < 990 THEN '1' WHEN h.b5 < 995 THEN '44' ELSE '65' END AS nationcode,
        CASE WHEN m > {shape.answered}
                  THEN (ARRAY['expired','cancelled','suppressed'])[m % 3 + 1]
             WHEN h.b6 < 880 THEN 'delivered' WHEN h.b6 < 920 THEN 'undelivered'
             WHEN h.b6 < 955 THEN 'sent' WHEN h.b6 < 985 THEN 'failed'
             ELSE 'unknown' END AS status,
        to_timestamp(CASE WHEN m <= {shape.answered}
             THEN {first} + (m - 0.5) * {span} / {shape.answered}
             ELSE {first} + (m - {shape.answered} - 0.5) * {span} / {max(shape.unanswered, 1)}
        END) AS created_at
        FROM (SELECT m, {_bucket(1)} AS b1, {_bucket(2)} AS b2, {_bucket(3)} AS b3,
                     {_bucket(4)} AS b4, {_bucket(5)} AS b5, {_bucket(6)} AS b6
              FROM generate_series({low}::bigint, {high}) AS m OFFSET 0) AS h
        OFFSET 0) AS a
      OFFSET 0
    """


def _messages_sql(recipe: str, answered: int) -> str:
    return f"""
      INSERT INTO sms_messages (id, account, kind, nationcode, mobile, tpl_id, params, content,
        sign, status, batch_id, params_key, created_at, updated_at, expires_at, sent_at, sid,
        fee, result, errmsg, reason, request_id, attempt_count, delivery_count)
      SELECT md5('m' || m)::uuid, account, kind, nationcode,
        CASE nationcode WHEN '86' THEN '13' || lpad((m % 1000000000)::text, 9, '0')
             ELSE lpad((m % 100000000)::text, 8, '0') END,
        tpl_id,
        CASE kind WHEN 'verification' THEN json_build_array(lpad((m % 1000000)::text, 6, '0'), '5')
             WHEN 'notification' THEN json_build_array('SF' || m, '顺丰速运')
             ELSE json_build_array('双十一', '5折') END,
        CASE WHEN free_text THEN '【好物商城】您的订单 ' || m || ' 已发货' END,
        sign, status,
        CASE kind WHEN 'marketing' THEN md5('b' || ai || '-' || (m * 31 / {answered}))::uuid END,
        CASE kind WHEN 'marketing' THEN md5('p' || tpl_id) END,
        created_at, created_at + interval '10 seconds',
        created_at + CASE kind WHEN 'verification' THEN interval '10 minutes'
                                ELSE interval '1 day' END,
        CASE WHEN status IN ('sent', 'delivered', 'undelivered', 'unknown')
             THEN created_at + CASE WHEN retried THEN interval '30.1 s' ELSE interval '0.1 s' END
        END,
        CASE WHEN status IN ('sent', 'delivered', 'undelivered') THEN '8:bench' || m END,
        CASE WHEN status IN ('sent', 'delivered', 'undelivered') THEN segments END,
        CASE WHEN status IN ('sent', 'delivered', 'undelivered') THEN 0
             WHEN status = 'failed' THEN 1015 END,
        CASE WHEN status IN ('sent', 'delivered', 'undelivered') THEN 'OK'
             WHEN status = 'failed' THEN 'number blacklisted or unsubscribed' END,
        CASE status WHEN 'expired' THEN 'deadline passed' WHEN 'suppressed' THEN 'opted out'
             WHEN 'cancelled' THEN 'batch cancelled' END,
        CASE WHEN answered THEN md5('r' || m || '-' || (1 + retried::int))::uuid END,
        CASE WHEN NOT answered THEN 0 WHEN retried THEN 2 ELSE 1 END,
        CASE WHEN NOT answered THEN 0 WHEN retried THEN 2 ELSE 1 END
      FROM ({recipe}) AS r
    """


def _attempts_sql(recipe: str) -> str:
    # n: the attempt's number; the last one carries the message's final answer.
    return f"""
      INSERT INTO sms_attempts (message_id, attempt_no, request_id, api, random, signed_time,
        started_at, finished_at, http_status, result, errmsg, sid, fee, outcome, latency_ms,
        worker)
      SELECT md5('m' || m)::uuid, n, md5('r' || m || '-' || n)::uuid,
        CASE kind WHEN 'marketing' THEN 'sendmultisms2' ELSE 'sendsms' END,
        m % 4294967296, extract(epoch FROM started)::bigint, started,
        started + (40 + m % 80) * interval '1 ms',
        CASE WHEN final AND status = 'unknown' THEN NULL ELSE 200 END,
        CASE WHEN NOT final THEN 1008 WHEN status = 'failed' THEN 1015
             WHEN status = 'unknown' THEN NULL ELSE 0 END,
        CASE WHEN NOT final THEN 'gateway timed out sending onward'
             WHEN status = 'failed' THEN 'number blacklisted or unsubscribed'
             WHEN status = 'unknown' THEN NULL ELSE 'OK' END,
        CASE WHEN final AND status IN ('sent', 'delivered', 'undelivered')
             THEN '8:bench' || m END,
        CASE WHEN final AND status IN ('sent', 'delivered', 'undelivered') THEN segments
             WHEN NOT final OR status = 'failed' THEN 0 END,
        CASE WHEN NOT final THEN 'transient' WHEN status = 'failed' THEN 'rejected'
             WHEN status = 'unknown' THEN 'ambiguous' ELSE 'ok' END,
        CASE WHEN final AND status = 'unknown' THEN NULL ELSE 40 + m % 80 END,
        'celery@bench-' || m % 4
      FROM ({recipe}) AS r,
        LATERAL (SELECT n, n = 1 + retried::int AS final,
                        created_at + interval '50 ms' + (n - 1) * interval '30 s' AS started
                 FROM generate_series(1, 1 + retried::int) AS n) AS t
    """


def _schema_extras(cursor: Any) -> tuple[list[str], list[str]]:
    """SQL that drops, and SQL that rebuilds, the tables' indexes and key constraints (and the
    foreign keys of other tables that point at them); NOT NULL and CHECK cost little per row."""
    tables = ", ".join(f"'{name}'::regclass" for name in TABLES)
    cursor.execute(
        f"SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid), contype "
        f"FROM pg_constraint WHERE (conrelid IN ({tables}) AND contype IN ('p', 'u', 'f')) "
        f"OR (confrelid IN ({tables}) AND contype = 'f') ORDER BY contype = 'f', conname"
    )
    constraints = cursor.fetchall()
    cursor.execute(
        f"SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index "
        f"WHERE indrelid IN ({tables}) AND indexrelid NOT IN "
        f"(SELECT conindid FROM pg_constraint WHERE conrelid IN ({tables}))"
    )
    indexes = cursor.fetchall()
    # Foreign keys go first and come back last: they need the keys they point at.
    drop = [f'ALTER TABLE {t} DROP CONSTRAINT "{n}"' for t, n, _, _ in reversed(constraints)]
    drop += [f"DROP INDEX {name}" for name, _ in indexes]
    build = [definition for _, definition in indexes]
    build += [f'ALTER TABLE {t} ADD CONSTRAINT "{n}" {d}' for t, n, d, _ in constraints]
    return drop, build


def generate(
    engine: Engine, shape: Shape, start: datetime, end: datetime, say: Callable[[str], None]
) -> None:
    """Fill the empty message and attempt tables with ``shape``'s month ``[start, end)``."""
    # The driver's own connection: statements without parameters, so '%' is SQL's modulo.
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        drop, build = _schema_extras(cursor)
        for statement in drop:
            cursor.execute(statement)
        connection.commit()
        started = time.perf_counter()
        for low in range(1, shape.messages + 1, CHUNK):
            high = min(low + CHUNK - 1, shape.messages)
            cursor.execute(_messages_sql(_recipe(shape, start, end, low, high), shape.answered))
            if low <= shape.answered:
                last = min(high, shape.answered)
                cursor.execute(_attempts_sql(_recipe(shape, start, end, low, last)))
            connection.commit()
            say(f"  messages {low:,}..{high:,} and their attempts written ({_since(started)})")
        cursor.execute("SET maintenance_work_mem = '1GB'")
        for statement in build:
            cursor.execute(statement)
            connection.commit()
        say(f"  indexes and constraints rebuilt ({_since(started)})")
        # VACUUM cannot run in a transaction; it also sets the visibility map (index-only scans).
        connection.commit()
        connection.driver_connection.autocommit = True  # type: ignore[union-attr]
        for table in TABLES:
            cursor.execute(f"VACUUM (ANALYZE) {table}")
        say(f"  vacuumed and analysed ({_since(started)})")
    finally:
        connection.close()


def _since(started: float) -> str:
    return f"{time.perf_counter() - started:.0f} s"
