"""What the gateway would refuse for its size or its signature is refused at enqueue, by name:
params beyond what a template can take, a sign with stray brackets, mainland free text without
its 【sign】. The same params bounds hold for each row of a batch."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.fixtures.pipeline import child_environment, settings_under
from tests.fixtures.simulator import APPKEY, SDKAPPID
from worker.api.batches import Batches
from worker.api.producer import Producer
from worker.ledger.db import make_engine, session_factory
from worker.ledger.migrate import upgrade
from worker.ledger.schema import SmsMessage
from worker.ledger.schema.batches import BAD_PARAM
from worker.services.batch_import import BatchInputError
from worker.tencent import InvalidInput

SMS_WORKER = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "sms-worker")
MAINLAND = "+8613755512346"
ABROAD = "+447911123456"
TEMPLATE = 100001
# Tencent's limits: 12 characters a variable, 450 for the whole message with its 【sign】.
PARAM = "x" * 12
WHOLE_MESSAGE = 450
# More than any approvable template takes (worker.tencent.rules documents the bound).
TOO_MANY = 41


@dataclass
class Ledger:
    producer: Producer
    sessions: sessionmaker[Session]
    published: list[uuid.UUID]

    def count(self) -> int:
        with self.sessions() as session:
            return session.scalar(select(func.count()).select_from(SmsMessage)) or 0

    def row(self, message_id: uuid.UUID) -> SmsMessage:
        with self.sessions() as session:
            found = session.get(SmsMessage, message_id)
            assert found is not None
            return found

    def refused(self, to: str = MAINLAND, **options: Any) -> InvalidInput:
        """The refusal of one enqueue, having checked it wrote and published nothing."""
        before, self.published[:] = self.count(), []
        with pytest.raises(InvalidInput) as raised:
            self.producer.enqueue(to, **options)
        assert self.count() == before and self.published == []
        return raised.value


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[Ledger]:
    settings = settings_under(
        {"SMS_DATABASE_URL": ledger_url, "SMS_SDKAPPID": SDKAPPID, "SMS_APPKEY": APPKEY}
    )
    engine = make_engine(ledger_url)
    published: list[uuid.UUID] = []

    def publish(message_id: uuid.UUID, kind: str, *, countdown: float | None = None) -> None:
        published.append(message_id)

    sessions = session_factory(engine)
    yield Ledger(Producer(settings, sessions, publish), sessions, published)
    engine.dispose()


@pytest.mark.parametrize("count", [TOO_MANY, 1_000_000])
def test_more_params_than_a_template_takes_are_refused_at_once(ledger: Ledger, count: int) -> None:
    started = time.process_time()
    refusal = ledger.refused(template=TEMPLATE, params=[""] * count)
    assert refusal.field == "params" and f"{count} given" in refusal.problem
    # Refused by its length alone: not one of a million values is looked at (nor written).
    assert time.process_time() - started < 5.0


def test_params_longer_than_a_whole_message_are_refused(ledger: Ledger) -> None:
    fits = (WHOLE_MESSAGE - len("【腾讯云】")) // len(PARAM)  # 37 full variables and the sign
    accepted = ledger.producer.enqueue(
        MAINLAND, template=TEMPLATE, params=[PARAM] * fits, sign="腾讯云"
    )
    assert accepted.created

    refusal = ledger.refused(template=TEMPLATE, params=[PARAM] * (fits + 1), sign="腾讯云")
    assert refusal.field == "params" and str(WHOLE_MESSAGE) in refusal.problem
    # The sign is part of the message: the same params fit without a long one, not with it.
    long_sign = "签" * 30
    assert ledger.producer.enqueue(MAINLAND, template=TEMPLATE, params=[PARAM] * 35).created
    refusal = ledger.refused(template=TEMPLATE, params=[PARAM] * 35, sign=long_sign)
    assert refusal.field == "params" and "signature" in refusal.problem


@pytest.mark.parametrize("param", [None, 1.5, b"12", ["1"], {"a": 1}])
def test_each_param_is_a_string(ledger: Ledger, param: object) -> None:
    refusal = ledger.refused(template=TEMPLATE, params=["1", param])
    assert refusal.field == "params[1]"


@pytest.mark.parametrize("written", ["【腾讯云】", "腾讯云"])
def test_a_sign_is_stored_without_its_brackets(ledger: Ledger, written: str) -> None:
    enqueued = ledger.producer.enqueue(MAINLAND, template=TEMPLATE, params=["1"], sign=written)
    assert ledger.row(enqueued.id).sign == "腾讯云"


@pytest.mark.parametrize("sign", ["【腾讯云", "腾讯云】", "腾讯【云】", "【】", "【腾讯】【云】"])
def test_a_sign_with_stray_brackets_is_refused(ledger: Ledger, sign: str) -> None:
    refusal = ledger.refused(template=TEMPLATE, params=["1"], sign=sign)
    assert refusal.field == "sign" and "腾讯云" in refusal.problem  # shows how to write it


@pytest.mark.parametrize(
    "text",
    ["您的快递已到。", "腾讯云 您的快递已到。", "[腾讯云]您的快递已到。", "【】您的快递已到。"],
)
def test_mainland_free_text_without_its_sign_is_refused(ledger: Ledger, text: str) -> None:
    refusal = ledger.refused(text=text)
    assert refusal.field == "text" and "【" in refusal.problem
    # One mainland number among several is enough to need it.
    before = ledger.count()
    with pytest.raises(InvalidInput):
        ledger.producer.enqueue_many([ABROAD, MAINLAND], text=text)
    assert ledger.count() == before


@pytest.mark.parametrize("text", ["【腾讯云】您的快递已到。", "您的快递已到。【腾讯云】"])
def test_free_text_signed_at_its_start_or_end_is_accepted(ledger: Ledger, text: str) -> None:
    assert ledger.producer.enqueue(MAINLAND, text=text).created


def test_free_text_abroad_needs_no_sign(ledger: Ledger) -> None:
    assert ledger.producer.enqueue(ABROAD, text="Your parcel has arrived.").created


def test_the_cli_names_the_field_and_the_fix(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    upgrade(url)
    environment = child_environment(
        {
            "SMS_DATABASE_URL": url,
            "SMS_BROKER_URL": f"filesystem://{tmp_path / 'broker'}",
            "SMS_SDKAPPID": SDKAPPID,
            "SMS_APPKEY": APPKEY,
        }
    )

    def send(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [SMS_WORKER, "send", "--to", MAINLAND, *args], env=environment, cwd=tmp_path,
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    unsigned = send("--text", "您的快递已到。")
    assert unsigned.returncode == 2, unsigned.stderr
    assert "--text" in unsigned.stderr and "【腾讯云】" in unsigned.stderr
    stray = send("--template", str(TEMPLATE), "--param", "1", "--sign", "【腾讯云")
    assert stray.returncode == 2 and "--sign" in stray.stderr, stray.stderr
    params = [arg for _ in range(TOO_MANY) for arg in ("--param", "1")]
    many = send("--template", str(TEMPLATE), *params)
    assert many.returncode == 2 and f"{TOO_MANY} given" in many.stderr, many.stderr
    signed = send("--template", str(TEMPLATE), "--param", "1", "--sign", "【腾讯云】")
    assert signed.returncode == 0, signed.stderr


@pytest.fixture
def batches(ledger_url: str) -> Iterator[Batches]:
    settings = settings_under(
        {"SMS_DATABASE_URL": ledger_url, "SMS_SDKAPPID": SDKAPPID, "SMS_APPKEY": APPKEY}
    )
    engine = make_engine(ledger_url)
    yield Batches(settings, session_factory(engine))
    engine.dispose()


def test_batch_rows_are_held_to_the_same_params_bounds(batches: Batches) -> None:
    def csv(width: int, value: str) -> list[str]:
        header = ",".join(["mobile", *(f"param{n}" for n in range(1, width + 1))])
        return [header, ",".join([MAINLAND, *([value] * width)])]

    too_many = batches.create(csv(TOO_MANY, "1"), template=TEMPLATE, sign="腾讯云")
    too_long = batches.create(csv(38, PARAM), template=TEMPLATE, sign="腾讯云")
    fitting = batches.create(csv(37, PARAM), template=TEMPLATE, sign="腾讯云")
    with_long_sign = batches.create(csv(37, PARAM), template=TEMPLATE, sign="签" * 30)

    for report in (too_many, too_long, with_long_sign):
        assert (report.accepted, report.rejected) == (0, 1), report
        ((line, reason, detail),) = [
            (r.line_no, r.reason, r.detail) for r in batches.rejections(report.batch_id)
        ]
        assert (line, reason) == (2, BAD_PARAM) and detail.startswith("param"), detail
    assert (fitting.accepted, fitting.rejected) == (1, 0)
    with pytest.raises(BatchInputError, match="param"):
        batches.create(["mobile", MAINLAND], template=TEMPLATE, params=["1"] * TOO_MANY)


@pytest.mark.parametrize("sign", ["【腾讯云】", "【腾讯云", "【】"])
def test_a_batch_sign_with_brackets_is_refused_showing_how_to_write_it(
    batches: Batches, sign: str
) -> None:
    with pytest.raises(BatchInputError, match=r"^sign: .*腾讯云"):
        batches.create(["mobile", MAINLAND], template=TEMPLATE, sign=sign, params=["1"])
