"""An idempotency key names one request: used again for the same message it returns the first
one, used again for anything else it raises ``IdempotencyConflict`` and writes nothing, on both
dialects of a real ledger, in the Python API and in ``sms-worker send --key``."""

from __future__ import annotations

import pickle
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

import worker
from tests.fixtures.pipeline import child_environment, settings_under
from worker.api.producer import Enqueued, Producer
from worker.ledger.db import make_engine, session_factory
from worker.ledger.migrate import upgrade
from worker.ledger.schema import SmsMessage
from worker.tencent import InvalidInput

SMS_WORKER = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "sms-worker")
KEY = "5f03a35d00ee52a21327ab048186a2c4"  # the documented example key
ACCOUNTS_TOML = f"""
default_account = "shop"

[accounts.shop]
sdkappid = "1400000001"
appkey = "{KEY}"

[accounts.bank]
sdkappid = "1400000002"
appkey = "{KEY}"
"""
FIRST = "+8613755512346"
OTHER = "+8613755599999"
NOTICE: dict[str, Any] = {"template": 100001, "params": ["482913", "5"], "sign": "腾讯云"}
WAIT_SECONDS = 60.0


@dataclass
class Ledger:
    producer: Producer
    sessions: sessionmaker[Session]
    published: list[uuid.UUID]

    def rows_with_key_prefix(self, key: str) -> list[SmsMessage]:
        with self.sessions() as session:
            found = select(SmsMessage).where(SmsMessage.idempotency_key.startswith(key))
            return list(session.scalars(found))

    def count(self) -> int:
        with self.sessions() as session:
            return session.scalar(select(func.count()).select_from(SmsMessage)) or 0


def ledger_on(url: str, folder: Path) -> Iterator[Ledger]:
    config = folder / "accounts.toml"
    config.write_text(ACCOUNTS_TOML, encoding="utf-8")
    settings = settings_under({"SMS_DATABASE_URL": url, "SMS_CONFIG": str(config)})
    engine = make_engine(url)
    published: list[uuid.UUID] = []

    def publish(message_id: uuid.UUID, kind: str, *, countdown: float | None = None) -> None:
        published.append(message_id)

    sessions = session_factory(engine)
    yield Ledger(Producer(settings, sessions, publish), sessions, published)
    engine.dispose()


@pytest.fixture
def ledger(ledger_url: str, tmp_path: Path) -> Iterator[Ledger]:
    yield from ledger_on(ledger_url, tmp_path)


@pytest.fixture
def postgresql_ledger(ledger_postgresql_url: str, tmp_path: Path) -> Iterator[Ledger]:
    yield from ledger_on(ledger_postgresql_url, tmp_path)


def fresh_key() -> str:
    return f"order-{uuid.uuid4().hex}"


def test_the_same_key_to_another_number_raises_naming_the_key_and_the_first_message(
    ledger: Ledger,
) -> None:
    key = fresh_key()
    first = ledger.producer.enqueue(FIRST, idempotency_key=key, **NOTICE)
    before, ledger.published[:] = ledger.count(), []

    with pytest.raises(worker.IdempotencyConflict) as raised:
        ledger.producer.enqueue(OTHER, idempotency_key=key, **NOTICE)

    conflict = raised.value
    assert isinstance(conflict, InvalidInput) and conflict.field == "idempotency_key"
    assert key in str(conflict) and str(first.id) in str(conflict)
    assert (conflict.key, conflict.earlier_id, conflict.differences) == (
        key,
        first.id,
        ("recipient",),
    )
    assert pickle.loads(pickle.dumps(conflict)).earlier_id == first.id  # crosses processes
    assert ledger.count() == before and ledger.published == []


def test_the_same_key_with_the_same_message_returns_the_first(ledger: Ledger) -> None:
    key = fresh_key()
    first = ledger.producer.enqueue(FIRST, idempotency_key=key, **NOTICE)
    ledger.published[:] = []

    again = ledger.producer.enqueue(FIRST, idempotency_key=key, **NOTICE)

    assert again == Enqueued(first.id, False, first.status)
    assert ledger.published == []
    # A sign written as the handset shows it is the same sign.
    assert ledger.producer.enqueue(FIRST, idempotency_key=key, **{**NOTICE, "sign": "【腾讯云】"})


CHANGES: dict[str, dict[str, Any]] = {
    "template": {"template": 100002},
    "params": {"params": ["482914", "5"]},
    "sign": {"sign": "腾讯"},
    "kind": {"kind": "verification"},
    "ext": {"ext": "campaign-2"},
    "extend": {"extend": "12"},
    "text": {"template": None, "params": (), "text": "【腾讯云】您的快递已到。"},
    "account": {"account": "bank"},
}


@pytest.mark.parametrize("changed", sorted(CHANGES))
def test_the_same_key_with_other_content_or_account_raises(ledger: Ledger, changed: str) -> None:
    key = fresh_key()
    first = ledger.producer.enqueue(FIRST, idempotency_key=key, **NOTICE)
    before = ledger.count()

    with pytest.raises(worker.IdempotencyConflict) as raised:
        ledger.producer.enqueue(FIRST, idempotency_key=key, **{**NOTICE, **CHANGES[changed]})

    assert raised.value.earlier_id == first.id
    expected = "template" if changed == "text" else changed  # a text send has no template
    assert expected in raised.value.differences
    assert ledger.count() == before
    assert [row.id for row in ledger.rows_with_key_prefix(key)] == [first.id]


def test_a_key_for_several_recipients_is_a_different_request_than_for_one(
    ledger: Ledger,
) -> None:
    one, several = fresh_key(), fresh_key()
    ledger.producer.enqueue(FIRST, idempotency_key=one, **NOTICE)
    ledger.producer.enqueue_many([FIRST, OTHER], idempotency_key=several, **NOTICE)

    with pytest.raises(worker.IdempotencyConflict):
        ledger.producer.enqueue_many([FIRST, OTHER], idempotency_key=one, **NOTICE)
    with pytest.raises(worker.IdempotencyConflict):
        ledger.producer.enqueue(FIRST, idempotency_key=several, **NOTICE)
    with pytest.raises(worker.IdempotencyConflict):  # the same numbers, another order
        ledger.producer.enqueue_many([OTHER, FIRST], idempotency_key=several, **NOTICE)
    replay = ledger.producer.enqueue_many([FIRST, OTHER], idempotency_key=several, **NOTICE)
    assert [result.created for result in replay] == [False, False]


def test_derived_keys_never_equal_a_key_a_caller_passes(ledger: Ledger) -> None:
    key = fresh_key()
    ledger.producer.enqueue_many([FIRST, OTHER], idempotency_key=key, **NOTICE)
    derived = sorted(row.idempotency_key or "" for row in ledger.rows_with_key_prefix(key))
    assert len(derived) == 2 and key not in derived

    # Whatever a caller passes, it is never one of those: the character they hold is refused.
    for taken in derived:
        with pytest.raises(InvalidInput) as raised:
            ledger.producer.enqueue(OTHER, idempotency_key=taken, **NOTICE)
        assert raised.value.field == "idempotency_key" and "'#'" in raised.value.problem
        assert not isinstance(raised.value, worker.IdempotencyConflict)
    # Nor can a caller's key be derived from another: "a" + "#1" and "a#1" + "" are both out.
    with pytest.raises(InvalidInput):
        ledger.producer.enqueue_many([FIRST, OTHER], idempotency_key=f"{key}#1", **NOTICE)
    assert len(ledger.rows_with_key_prefix(key)) == 2


def in_lock_wait(sessions: sessionmaker[Session]) -> bool:
    """Whether some backend of this database waits for a lock (the unique index's)."""
    with sessions() as session:
        waiting = session.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )
        return bool(waiting)


SECOND_REQUESTS: dict[str, dict[str, Any]] = {
    "same message": {},
    "other number": {"to": OTHER},
    # The unique index is per account: the key's lock makes the two take turns.
    "other account": {"account": "bank"},
}


@pytest.mark.parametrize("request_id", sorted(SECOND_REQUESTS))
def test_racing_enqueues_of_one_key_one_wins_the_other_conflicts(
    postgresql_ledger: Ledger, request_id: str
) -> None:
    same_payload = request_id == "same message"
    options = {"to": FIRST, **NOTICE, **SECOND_REQUESTS[request_id]}
    ledger, key = postgresql_ledger, fresh_key()
    outcome: dict[str, Any] = {}
    holding = ledger.sessions()
    first = ledger.producer.enqueue(FIRST, idempotency_key=key, session=holding, **NOTICE)

    def second() -> None:
        try:
            outcome["result"] = ledger.producer.enqueue(idempotency_key=key, **options)
        except InvalidInput as error:
            outcome["error"] = error

    racer = threading.Thread(target=second)
    racer.start()
    try:
        for _ in range(int(WAIT_SECONDS / 0.05)):  # the second waits for the first's key
            if in_lock_wait(ledger.sessions) or not racer.is_alive():
                break
            threading.Event().wait(0.05)
        assert racer.is_alive(), f"the second enqueue did not wait for the first: {outcome}"
        holding.commit()
    finally:
        holding.close()
        racer.join(WAIT_SECONDS)
    assert not racer.is_alive()

    if same_payload:
        assert outcome == {"result": Enqueued(first.id, False, first.status)}
    else:
        assert isinstance(outcome.get("error"), worker.IdempotencyConflict), outcome
        assert outcome["error"].earlier_id == first.id
    assert [row.id for row in ledger.rows_with_key_prefix(key)] == [first.id]


def test_the_cli_refuses_a_reused_key_in_one_line_exit_2(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    upgrade(url)
    environment = child_environment(
        {
            "SMS_DATABASE_URL": url,
            "SMS_BROKER_URL": f"filesystem://{tmp_path / 'broker'}",
            "SMS_SDKAPPID": "1400000001",
            "SMS_APPKEY": KEY,
        }
    )

    def send(number: str) -> subprocess.CompletedProcess[str]:
        command = [SMS_WORKER, "send", "--to", number, "--template", "100001", "--param",
                   "482913", "--param", "5", "--sign", "腾讯云", "--key", "signup-42"]  # fmt: skip
        return subprocess.run(
            command, env=environment, cwd=tmp_path, capture_output=True, text=True,
            timeout=WAIT_SECONDS, check=False,
        )  # fmt: skip

    first = send(FIRST)
    assert first.returncode == 0, first.stderr
    again = send(FIRST)
    assert again.returncode == 0 and "already enqueued" in again.stdout, again.stderr

    other = send(OTHER)

    assert other.returncode == 2, (other.stdout, other.stderr)
    assert len(other.stderr.strip().splitlines()) == 1, other.stderr
    assert "--key" in other.stderr and "signup-42" in other.stderr, other.stderr
    assert "Traceback" not in other.stderr
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            numbers = session.scalars(select(SmsMessage.mobile)).all()
    finally:
        engine.dispose()
    assert numbers == [FIRST[3:]]


def test_catching_the_conflict_pulls_in_neither_the_database_nor_celery() -> None:
    probe = (
        "import sys, worker\n"
        "assert issubclass(worker.IdempotencyConflict, worker.InvalidInput)\n"
        "heavy = {'sqlalchemy', 'celery', 'pydantic_settings'}\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & heavy))\n"
    )
    environment = child_environment({"SMS_SEND_RATE": "abc"})  # no setting is read
    done = subprocess.run(
        [sys.executable, "-c", probe], env=environment, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
