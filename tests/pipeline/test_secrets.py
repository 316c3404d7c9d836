"""The appkey signs every request and appears nowhere else: not in a log line, not in an
exception's text, not in any column of any ledger row, whatever the gateway answered."""

from __future__ import annotations

import traceback

import pytest
from sqlalchemy import select

from tests.fixtures.pipeline import Pipeline, settings_under
from tests.fixtures.simulator import APPKEY, LONG_PARAMS, SIGN, TPL_LONG, TPL_PENDING
from worker.config import ConfigError
from worker.ledger.schema import Base
from worker.tencent import InvalidInput, SmsClient

# One message per kind of answer: each writes its own log lines, errmsg and reason.
SCRIPTS: list[list[object]] = [
    [],  # accepted at once
    ["drop"],  # connection cut before processing (the client cannot tell): ambiguous, resent
    ["drop_after"],  # delivered, then cut: ambiguous, then sent again by policy
    [{"http": 502}],  # a non-JSON 502, then sent
    [1008, 60008],  # transient codes, then sent
    [1001],  # the gateway says the signature is wrong: failed
]


def test_the_appkey_never_leaves_the_signature(pipeline: Pipeline) -> None:
    assert pipeline.settings.account().appkey.get_secret_value() == APPKEY  # the one in use
    ids = []
    for steps in SCRIPTS:
        phone = pipeline.new_phone()
        if steps:
            pipeline.simulator.control.script(phone.mobile, steps)  # type: ignore[arg-type]
        enqueued = pipeline.producer.enqueue(
            phone.e164, template=TPL_LONG, params=LONG_PARAMS, sign=SIGN
        )
        ids.append(enqueued.id)
    pending = pipeline.producer.enqueue(
        pipeline.new_phone().e164, template=TPL_PENDING, params=["1"], sign=SIGN
    )
    messages = pipeline.wait_settled([*ids, pending.id], timeout=120)
    outcomes = {attempt.outcome for attempt in pipeline.attempts()}
    assert {"ok", "ambiguous", "transient", "rejected"} <= outcomes
    assert {message.status for message in messages.values()} == {"sent", "failed"}

    # The worker's log, every line it wrote.
    log = pipeline.worker.log_text()
    assert "attempt 1 of message" in log
    assert APPKEY not in log

    # Every column of every row of every ledger table.
    values = []
    with pipeline.sessions() as session:
        for table in Base.metadata.sorted_tables:
            for row in session.execute(select(table)):
                values.extend(str(value) for value in row if value is not None)
    assert any("HTTP 502" in value for value in values)
    assert not [value for value in values if APPKEY in value]


def test_the_appkey_is_in_no_error_text_or_repr(pipeline: Pipeline) -> None:
    texts = [repr(pipeline.settings), str(pipeline.settings), repr(pipeline.settings.account())]
    client = SmsClient("1400000000", APPKEY, pipeline.simulator.url)
    texts.append(repr(client))
    client.close()

    # Broken settings next to a good appkey: the errors quote neither it nor the raw input.
    for broken in ({"SMS_SDKAPPID": "not-a-number"}, {"SMS_APPKEY_FILE": "appkey.txt"}):
        with pytest.raises(ConfigError) as config_error:
            settings_under({**pipeline.environment, **broken})
        texts.append("".join(traceback.format_exception(config_error.value)))
    with pytest.raises(InvalidInput) as invalid:
        pipeline.producer.enqueue("13788888888", template=TPL_LONG, params=LONG_PARAMS)
    texts.append("".join(traceback.format_exception(invalid.value)))

    assert "SMS_SDKAPPID" in texts[-3] and "SMS_APPKEY_FILE" in texts[-2]
    assert [text for text in texts if APPKEY in text] == []
