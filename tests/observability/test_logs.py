"""Log lines: phone numbers masked and secrets replaced by the handlers' filter, whatever the call
site wrote; JSON lines that parse and say which message they are about. First the filter and the
formatter on their own, then a real worker writing JSON while it sends through the simulator."""

from __future__ import annotations

import io
import json
import logging
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.pipeline import Pipeline, child_environment
from tests.fixtures.simulator import APPKEY, LONG_PARAMS, SIGN, TPL_LONG
from worker.celery.routing import TASK_SEND
from worker.observability.logs import (
    SECRET_MASK,
    JsonFormatter,
    Redactor,
    configure_logging,
    install,
    log_context,
    mask_phone_numbers,
)
from worker.runners.processes import ManagedProcess, celery_worker

TOKEN = "receiver-token-" + "x" * 16


@pytest.fixture
def capture() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger of its own writing through a handler set up by ``install`` (text format)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    install(handler, log_format="text", secrets=[APPKEY, TOKEN])
    logger = logging.getLogger(f"tests.logs.{secrets.token_hex(4)}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield logger, stream
    logger.removeHandler(handler)


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("+8613712348888", "+86137****8888"),
        ("13712348888", "137****8888"),
        ("8613712348888", "86137****8888"),
        ("to +14155550123 now", "to +1415****0123 now"),
        ("+442071838750", "+44207****8750"),
        ("mobile=4155550123", "mobile=415****0123"),
        ('{"mobile": "20718387"}', '{"mobile": "****87"}'),
        (
            "Phone(nationcode='1', mobile='4155550123')",
            "Phone(nationcode='1', mobile='415****0123')",
        ),
    ],
)
def test_phone_numbers_are_masked_to_their_first_3_and_last_4_digits(
    text: str, masked: str
) -> None:
    assert mask_phone_numbers(text) == masked


@pytest.mark.parametrize(
    "text",
    [
        "message 0b5e1a52-1373-4bd9-9137-123488881234 sent",  # a UUID
        "sdkappid 1400000000 random 1234567890 time 1714557600",
        "2024-05-01T12:00:00+08:00 took 137.5 ms, fee 2",
        "sid 2019:137123488880000 and 137123488881 (12 digits)",
    ],
)
def test_other_numbers_are_left_alone(text: str) -> None:
    assert mask_phone_numbers(text) == text


def test_the_filter_masks_message_arguments_extras_and_tracebacks(
    capture: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = capture
    logger.info("sending to %s", "+8613712348888", extra={"to": "13712348888", "attempt_no": 3})
    try:
        raise ValueError(f"'{'+8613799990000'}' is not a valid number")
    except ValueError:
        logger.exception("refused")
    record_dict = {"mobile": "13711112222"}
    logger.warning("body %r", record_dict)

    written = stream.getvalue()
    assert "sending to +86137****8888" in written
    assert "'+86137****0000' is not a valid number" in written  # the traceback's last line
    assert "Traceback" in written
    assert "{'mobile': '137****2222'}" in written
    for full in ("13712348888", "13799990000", "13711112222"):
        assert full not in written


def test_the_filter_never_raises_into_the_call_site_nor_lets_a_number_through(
    capture: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = capture

    class Unprintable:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    logger.info("%d numbers", "+8613712348888")  # format and argument do not match
    logger.info("with an odd extra", extra={"thing": Unprintable()})

    first, second = stream.getvalue().splitlines()
    assert first == "INFO %d numbers (arguments: ('+86137****8888',))"
    assert second == "INFO (a log line was left out: it could not be masked)"


def test_the_filter_replaces_secrets_wherever_they_appear(
    capture: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = capture
    logger.error("signed with %s", APPKEY)
    logger.error("callback to /callbacks/%s/status", TOKEN, extra={"url": f"/x/{TOKEN}"})
    try:
        raise RuntimeError(f"key={APPKEY}")
    except RuntimeError:
        logger.exception("failed")

    written = stream.getvalue()
    assert APPKEY not in written and TOKEN not in written
    assert f"signed with {SECRET_MASK}" in written
    assert f"/callbacks/{SECRET_MASK}/status" in written
    assert f"RuntimeError: key={SECRET_MASK}" in written


def test_json_lines_carry_the_context_and_the_extras(tmp_path: Path) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    install(handler, log_format="json", secrets=[APPKEY])
    logger = logging.getLogger(f"tests.logs.json.{secrets.token_hex(4)}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    message_id = str(uuid.uuid4())
    try:
        with log_context(message_id=message_id, account="default", batch_id=None):
            logger.info(
                "attempt %d to %s", 2, "+8613712348888",
                extra={"attempt_no": 2, "outcome": "ok", "account": "other"},
            )  # fmt: skip
        logger.info("outside")
    finally:
        logger.removeHandler(handler)

    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert inside["message"] == "attempt 2 to +86137****8888"
    assert inside["message_id"] == message_id and inside["batch_id"] is None
    assert (inside["attempt_no"], inside["outcome"]) == (2, "ok")
    assert inside["account"] == "other"  # the call site's extra= wins over the context
    assert (inside["level"], inside["logger"]) == ("INFO", logger.name)
    assert inside["time"].endswith("+00:00")
    assert "message_id" not in outside and outside["message"] == "outside"


def test_configure_logging_sets_up_the_root_logger() -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        handler = configure_logging(level="warning", log_format="json", secrets=[APPKEY])
        assert root.handlers == [handler] and root.level == logging.WARNING
        assert isinstance(handler.formatter, JsonFormatter)
        assert {type(f).__name__ for f in handler.filters} == {"ContextFilter", "RedactingFilter"}
        assert Redactor([APPKEY])(f"a {APPKEY} b") == f"a {SECRET_MASK} b"
    finally:
        root.handlers = handlers
        root.setLevel(level)


# --- a real worker writing JSON ------------------------------------------------------------------


def _json_worker(pipeline: Pipeline, folder: Path) -> ManagedProcess:
    """A worker of the pipeline's configuration with SMS_LOG_FORMAT=json, in place of its own."""
    environment = child_environment({**pipeline.environment, "SMS_LOG_FORMAT": "json"})
    return celery_worker(
        environment, folder / "json-worker.log", concurrency=2,
        name=f"json-{secrets.token_hex(4)}", cwd=folder,
    )  # fmt: skip


def test_a_worker_writes_json_lines_about_each_message_with_the_number_masked(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    pipeline.worker.stop()  # only one worker consumes the run's queues (the next test restarts it)
    worker = _json_worker(pipeline, tmp_path)
    phones = [pipeline.new_phone(), pipeline.new_phone()]
    pipeline.simulator.control.script(phones[1].mobile, [1008])  # transient, then sent
    with worker:
        ids = [
            pipeline.producer.enqueue(
                phone.e164, template=TPL_LONG, params=LONG_PARAMS, sign=SIGN
            ).id
            for phone in phones
        ]
        pipeline.wait_settled(ids, timeout=120)
    lines = worker.log_path.read_text().splitlines()

    entries = _json_entries(lines)
    assert entries, "the worker wrote no JSON line"
    for message_id, phone in zip(ids, phones, strict=True):
        about = [e for e in entries if e.get("message_id") == str(message_id)]
        attempts = [e for e in about if e["message"].startswith("attempt ")]
        assert attempts, f"no attempt line for {message_id}"
        for entry in attempts:
            assert entry["account"] == "default" and entry["kind"] == "notification"
            assert "batch_id" in entry and entry["batch_id"] is None
            assert isinstance(entry["attempt_no"], int) and entry["outcome"]
            masked = f"+{phone.nationcode}{phone.mobile[:3]}****{phone.mobile[-4:]}"
            assert masked in entry["message"]
        # Celery's own task lines name the message too (its id is the task id).
        assert any(e.get("task_name") == TASK_SEND for e in about)
    retried = [e for e in entries if e.get("message_id") == str(ids[1]) and "attempt_no" in e]
    assert [(e["attempt_no"], e["outcome"]) for e in retried] == [(1, "transient"), (2, "ok")]

    text = "\n".join(lines)
    assert APPKEY not in text
    for phone in phones:
        assert phone.mobile not in text


def _json_entries(lines: list[str]) -> list[dict[str, Any]]:
    """The log lines as JSON objects. Celery prints its banner before and its shutdown notice
    after logging starts; between the first and the last log line, every line is JSON."""
    starts = [index for index, line in enumerate(lines) if line.startswith("{")]
    if not starts:
        return []
    running = lines[starts[0] : starts[-1] + 1]
    assert all(line.startswith("{") for line in running), "a log line is not JSON"
    return [json.loads(line) for line in running]  # a line that does not parse fails here
