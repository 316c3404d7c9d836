"""End to end: enqueue -> worker -> simulator -> sent -> report pushed to the receiver -> delivered.

The simulator answers the send slowly, so its report, pushed at once, reaches the receiver while
the worker still waits for the answer: an orphan. The worker's recording of ``sent`` applies it
(no beat runs here), and the message ends ``delivered``.
"""

from __future__ import annotations

import secrets

from sqlalchemy import select

from tests.fixtures.pipeline import Pipeline
from tests.fixtures.simulator import NOTICE_PARAMS, SIGN, TPL_NOTICE
from worker.ledger.schema import SmsDeliveryReport
from worker.ledger.status import DELIVERED
from worker.receiver import AsgiServer, make_receiver_app


def test_a_report_that_overtakes_its_send_is_applied_when_the_send_is_recorded(
    pipeline: Pipeline,
) -> None:
    token = secrets.token_urlsafe(24)
    control = pipeline.simulator.control
    with AsgiServer(make_receiver_app(pipeline.sessions, token)) as receiver:
        control.set_reports(f"{receiver.url}/callbacks/{token}/status", delay_seconds=0)
        control.set_faults(latency_ms=1500)  # the answer waits; the report does not
        phone = pipeline.new_phone()

        enqueued = pipeline.producer.enqueue(
            phone.e164, template=TPL_NOTICE, params=NOTICE_PARAMS, sign=SIGN
        )
        message = pipeline.wait_settled([enqueued.id])[enqueued.id]
        control.flush_reports()

    (received,) = control.inbox(phone.mobile)
    with pipeline.sessions() as session:
        (report,) = session.scalars(select(SmsDeliveryReport))
    assert (message.status, message.sid) == (DELIVERED, received.sid)
    assert (report.sid, report.message_id, report.source) == (received.sid, message.id, "callback")
    assert message.sent_at is not None and report.received_at < message.sent_at  # an orphan first
