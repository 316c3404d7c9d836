"""Prometheus metrics, scraped over HTTP and checked against the ledger.

- A prefork worker (two pool processes) with ``SMS_METRICS_PORT`` sends single messages and a
  marketing batch through the simulator; its one endpoint adds up what both processes counted,
  and every counter agrees with the ledger's rows. The ledger gauges show the batch and the
  queue before the run and empty queues after it, and an account paused in the ledger.
- The receiver's ``/metrics`` (no token) counts the reports and replies posted to it.
- A worker whose metrics port is taken keeps sending, without metrics and without a stray
  samples folder.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from tests.fixtures.pipeline import Pipeline, child_environment, settings_under
from tests.fixtures.receiver import Receiver, new_mobiles, record_sent
from tests.fixtures.simulator import CODE_PARAMS, LONG_PARAMS, SIGN, TPL_CODE, TPL_LONG
from worker.api.batches import Batches
from worker.celery.routing import DISPATCH_EVERY_SECONDS, QUEUES
from worker.celery.tasks import make_chunk_publisher
from worker.ledger.accounts import pause_account, resume_account
from worker.ledger.messages import count_by_status
from worker.ledger.schema import SmsAttempt, SmsMessage
from worker.ledger.status import NOTIFICATION, QUEUED, SENDING, SENT, VERIFICATION
from worker.observability.endpoint import serve_worker_metrics
from worker.observability.metrics import MULTIPROCESS_FOLDER
from worker.receiver import AsgiServer, make_receiver_app
from worker.runners.processes import ManagedProcess, celery_worker
from worker.services.dispatch import Dispatcher, dispatch_due_batches
from worker.services.sending.waits import seconds_until_beijing_hour

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
MARKETING_TEMPLATE = 100002  # the simulator's marketing template: {1} and {2}
MARKETING_PARAMS = ["张女士", "8"]
POLL_SECONDS = 0.2


def scrape(url: str) -> Samples:
    """Every sample of the page at ``url``, by name and sorted labels."""
    response = requests.get(url, timeout=30)
    assert response.status_code == 200, response.text
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def by_labels(samples: Samples, name: str, *keys: str) -> dict[tuple[str, ...], float]:
    """The non-zero samples called ``name``, by the values of the labels ``keys``."""
    found: dict[tuple[str, ...], float] = {}
    for (sample, labels), value in samples.items():
        if sample == name and value:
            named = dict(labels)
            key = tuple(named[k] for k in keys)
            found[key] = found.get(key, 0.0) + value
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    for _ in range(int(timeout / POLL_SECONDS) + 1):
        if condition():
            return
        time.sleep(POLL_SECONDS)
    raise AssertionError(f"no {what} after {timeout:g} s")


def metrics_worker(pipeline: Pipeline, folder: Path, port: int, offset: float) -> ManagedProcess:
    """A prefork worker of the pipeline's configuration serving metrics on ``port``, its clock
    ``offset`` seconds ahead (marketing hours whatever the time of day)."""
    sms = {
        **pipeline.environment,
        "SMS_METRICS_PORT": str(port),
        "SMS_CLOCK_OFFSET_SECONDS": str(offset),
    }
    environment = child_environment(sms, without={"PROMETHEUS_MULTIPROC_DIR"})
    return celery_worker(
        environment, folder / "metrics-worker.log", pool="prefork", concurrency=2,
        name=f"metrics-{secrets.token_hex(4)}", cwd=folder,
    )  # fmt: skip


def test_a_prefork_workers_metrics_agree_with_the_ledger(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    pipeline.worker.stop()  # only one worker consumes the run's queues (the next test restarts it)
    control = pipeline.simulator.control
    # 10:00 Beijing time for the worker, the simulator and the dispatcher here.
    offset = seconds_until_beijing_hour(datetime.now(UTC), 10)
    control.set_clock(offset=offset)

    def now() -> datetime:
        return datetime.now(UTC) + timedelta(seconds=offset)

    batch = Batches(pipeline.settings, pipeline.sessions).create(
        ["mobile", *(pipeline.new_phone().e164 for _ in range(3))],
        template=MARKETING_TEMPLATE, sign=SIGN, params=MARKETING_PARAMS,
        start_at=now() - timedelta(minutes=1), window_end_at=now() + timedelta(days=2),
    )  # fmt: skip
    assert batch.rejected == 0, batch.first_rejections
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    worker = metrics_worker(pipeline, tmp_path, port, offset)
    try:
        with worker:
            before = scrape(url)
            ids = _send_singles(pipeline, now)
            pipeline.wait_settled(ids, timeout=120)
            _dispatch_until_done(pipeline, batch.batch_id, now)
            pipeline.wait_settled(_batch_message_ids(pipeline, batch.batch_id))
            with pipeline.sessions() as session:
                assert pause_account(session, "default", code=None, reason="test", now=now())
                session.commit()
            after = scrape(url)
            folder = re.search(r"samples in (\S+)\)", worker.log_path.read_text())
    finally:
        control.set_clock()
        with pipeline.sessions() as session:
            resume_account(session, "default", now())
            session.commit()

    _check_gauges_before(before, batch.batch_id)
    _check_counters(after, pipeline)
    _check_gauges_after(after, batch.batch_id)
    # The worker made the samples folder itself and removed it when it stopped.
    assert folder is not None and not Path(folder.group(1)).exists()


def _send_singles(pipeline: Pipeline, now: Callable[[], datetime]) -> list[uuid.UUID]:
    """Single sends of two kinds: ok at once, two segments, transient then ok in the task, and
    three transients that spend the quick tries (a deferral) before the fourth goes out."""
    expires = now() + timedelta(days=2)  # the worker's clock is ahead: keep them in date
    code = {"template": TPL_CODE, "params": CODE_PARAMS, "sign": SIGN, "kind": VERIFICATION}
    long = {"template": TPL_LONG, "params": LONG_PARAMS, "sign": SIGN, "kind": NOTIFICATION}
    plans: list[tuple[dict[str, Any], list[Any]]] = [
        (code, []),
        (long, []),
        (code, [1008]),
        (long, [1008, {"http": 502}, 60008]),
    ]
    ids = []
    for options, script in plans:
        phone = pipeline.new_phone()
        if script:
            pipeline.simulator.control.script(phone.mobile, script)
        enqueued = pipeline.producer.enqueue(phone.e164, expires_at=expires, **options)
        ids.append(enqueued.id)
    return ids


def _dispatch_until_done(
    pipeline: Pipeline, batch_id: uuid.UUID, now: Callable[[], datetime]
) -> None:
    """Beat's dispatcher, ticking here as beat would, until nothing of the batch waits."""
    dispatcher = Dispatcher(
        pipeline.sessions, pipeline.settings, make_chunk_publisher(pipeline.celery_app),
        pipeline.producer.publish, "test-beat", DISPATCH_EVERY_SECONDS,
    )  # fmt: skip

    def finished() -> bool:
        dispatch_due_batches(dispatcher, now())
        with pipeline.sessions() as session:
            counts = count_by_status(session, batch_id=batch_id)
        return not counts.get(QUEUED) and not counts.get(SENDING)

    wait_for(finished, "end of the batch")
    dispatch_due_batches(dispatcher, now())  # marks it done


def _batch_message_ids(pipeline: Pipeline, batch_id: uuid.UUID) -> list[uuid.UUID]:
    with pipeline.sessions() as session:
        return list(session.scalars(select(SmsMessage.id).where(SmsMessage.batch_id == batch_id)))


def _check_gauges_before(samples: Samples, batch_id: uuid.UUID) -> None:
    assert samples["sms_ledger_up", ()] == 1
    assert by_labels(samples, "sms_batches", "status") == {("scheduled",): 1}
    assert by_labels(samples, "sms_batch_messages", "batch_id", "status") == {
        (str(batch_id), QUEUED): 3
    }
    assert by_labels(samples, "sms_batch_accepted", "batch_id") == {(str(batch_id),): 3}
    assert by_labels(samples, "sms_queue_depth", "state") == {("due",): 3}
    assert samples["sms_queue_oldest_age_seconds", ()] > 0
    assert samples["sms_account_paused", (("account", "default"),)] == 0
    assert by_labels(samples, "sms_sends_total", "outcome") == {}  # nothing sent yet


def _check_counters(samples: Samples, pipeline: Pipeline) -> None:
    """Each counter against the ledger: attempts by outcome, sent messages, billed segments,
    requests by API, retries and deferrals."""
    with pipeline.sessions() as session:
        joined = select().select_from(SmsAttempt).join(SmsMessage)
        attempts = {
            (account, kind, outcome): count
            for account, kind, outcome, count in session.execute(
                joined.add_columns(
                    SmsMessage.account, SmsMessage.kind, SmsAttempt.outcome, func.count()
                ).group_by(SmsMessage.account, SmsMessage.kind, SmsAttempt.outcome)
            )
        }
        billed = dict(
            ((account, kind), fee)
            for account, kind, fee in session.execute(
                joined.add_columns(SmsMessage.account, SmsMessage.kind, func.sum(SmsAttempt.fee))
                .where(SmsAttempt.outcome == "ok")
                .group_by(SmsMessage.account, SmsMessage.kind)
            )
        )
        sent = {
            (account, kind): count
            for account, kind, count in session.execute(
                select(SmsMessage.account, SmsMessage.kind, func.count())
                .where(SmsMessage.status == SENT)
                .group_by(SmsMessage.account, SmsMessage.kind)
            )
        }
        requests_by_api = {
            (api,): count
            for api, count in session.execute(
                select(SmsAttempt.api, func.count(func.distinct(SmsAttempt.request_id))).group_by(
                    SmsAttempt.api
                )
            )
        }
    sends = by_labels(samples, "sms_sends_total", "account", "kind", "outcome")
    assert sends == attempts
    assert {key: count for key, count in sends.items() if key[2] == "ok"} == {
        (account, kind, "ok"): count for (account, kind), count in sent.items()
    }
    assert {("default", "marketing", "ok"), ("default", "verification", "transient")} <= set(sends)
    assert by_labels(samples, "sms_billed_segments_total", "account", "kind") == billed
    assert billed[("default", NOTIFICATION)] == 4  # two long messages of 2 segments each
    assert by_labels(samples, "sms_request_duration_seconds_count", "api") == requests_by_api
    assert requests_by_api[("sendmultisms2",)] == 1  # the batch's three numbers, one request
    transient = sum(count for (_, _, outcome), count in attempts.items() if outcome == "transient")
    assert by_labels(samples, "sms_retries_total", "reason") == {("transient",): transient}
    assert by_labels(samples, "sms_deferrals_total", "reason") == {("tries_spent",): 1}


def _check_gauges_after(samples: Samples, batch_id: uuid.UUID) -> None:
    assert by_labels(samples, "sms_batches", "status") == {("done",): 1}
    assert by_labels(samples, "sms_batch_messages", "batch_id", "status") == {}
    assert by_labels(samples, "sms_queue_depth", "state") == {}
    assert samples["sms_queue_oldest_age_seconds", ()] == 0
    assert samples["sms_account_paused", (("account", "default"),)] == 1
    assert {labels for (name, labels) in samples if name == "sms_broker_queue_length"} == {
        (("queue", queue),) for queue in QUEUES
    }


# --- the receiver --------------------------------------------------------------------------------


def test_the_receivers_metrics_count_what_was_posted_without_the_token(
    receiver: Receiver,
) -> None:
    page = f"{receiver.server.url}/metrics"
    before = scrape(page)
    mobiles = new_mobiles(3)
    sids = [f"8:metrics{secrets.token_hex(6)}" for _ in mobiles]
    for mobile, sid in zip(mobiles, sids, strict=True):
        record_sent(receiver.sessions, mobile, sid)
    reports = [
        {
            "user_receive_time": "2024-05-01 12:00:00", "nationcode": "86", "mobile": mobile,
            "report_status": status, "errmsg": "DELIVRD", "description": "", "sid": sid,
        }
        for mobile, sid, status in zip(mobiles, sids, ["SUCCESS", "SUCCESS", "FAIL"], strict=True)
    ]  # fmt: skip
    assert receiver.post("/status", reports).status_code == 200
    assert receiver.post("/status", reports[:1]).status_code == 200  # a duplicate counts too
    reply = {"nationcode": "86", "mobile": mobiles[0], "text": "TD", "sign": SIGN,
             "extend": "", "time": 1714557600}  # fmt: skip
    assert receiver.post("/reply", reply).status_code == 200
    after = scrape(page)

    def grew(name: str, *keys: str) -> dict[tuple[str, ...], float]:
        old = by_labels(before, name, *keys)
        new = by_labels(after, name, *keys)
        return {key: value - old.get(key, 0) for key, value in new.items() if value != old.get(key)}

    assert grew("sms_reports_received_total", "source", "status") == {
        ("callback", "SUCCESS"): 3,
        ("callback", "FAIL"): 1,
    }
    assert grew("sms_replies_received_total", "source", "opt_out") == {("callback", "true"): 1}


def test_the_receiver_can_leave_metrics_out(receiver: Receiver) -> None:
    app = make_receiver_app(receiver.sessions, receiver.token, metrics=False)
    with AsgiServer(app) as server:
        assert requests.get(f"{server.url}/metrics", timeout=30).status_code == 404
        assert requests.get(f"{server.url}/healthz", timeout=30).status_code == 200
    assert requests.get(f"{receiver.server.url}/metrics", timeout=30).status_code == 200


def test_a_worker_whose_metrics_port_is_taken_goes_on_without_metrics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(MULTIPROCESS_FOLDER, raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where a samples folder would go
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = settings_under(
            {"SMS_DATABASE_URL": f"sqlite:///{tmp_path}/ledger.db", "SMS_METRICS_PORT": str(port)}
        )
        assert serve_worker_metrics(settings, QUEUES) is None
    # Still recording in memory, and the folder made for the samples is gone.
    assert MULTIPROCESS_FOLDER not in os.environ
    assert list(tmp_path.glob("sms-metrics-*")) == []
