"""The finance ledger end to end: real sends through the worker and the simulator, then the
summary, the export and the reconciliation must agree with totals counted here, independently,
from the simulator's own request log and inbox. A tampered ledger row is caught.
"""

from __future__ import annotations

import inspect
import json
import secrets
import tomllib
import uuid
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import delete, func, select, update

from tests.fixtures.pipeline import Pipeline
from tests.fixtures.simulator import (
    APPKEY,
    BEIJING,
    CODE_PARAMS,
    LONG_PARAMS,
    NOTICE_PARAMS,
    SDKAPPID,
    SIGN,
    TPL_INTERNATIONAL,
    TPL_LONG,
    TPL_NOTICE,
    TPL_PENDING,
)
from worker.celery.routing import (
    BEAT_SCHEDULE,
    QUEUE_MAINTENANCE,
    ROLLUP_RECENT_DAYS,
    ROLLUP_TRAILING_DAYS,
    TASK_ROLLUP_USAGE,
)
from worker.cli import main
from worker.cli.ledger_report import report_lines
from worker.ledger import finance as ledger_finance
from worker.ledger import moves
from worker.ledger.reconciliation import SendFigures
from worker.ledger.schema import SmsAttempt, SmsDailyUsage, SmsDeliveryReport, SmsMessage
from worker.ledger.status import DELIVERED, SENT, UNDELIVERED, VERIFICATION
from worker.services import finance
from worker.simulator.control import SimulatorControl
from worker.tencent import SmsClient

SEND_APIS = ("sendsms", "sendisms", "sendmultisms2")
PULL_ROUNDS = 20


def send_the_mix(pipeline: Pipeline) -> dict[str, uuid.UUID]:
    """Successes, a 2-segment one, permanent failures, transient then ok, abroad, free text."""
    control = pipeline.simulator.control
    phones = {name: pipeline.new_phone() for name in ("a", "b", "long", "bad", "pending", "flaky")}
    control.script(phones["bad"].mobile, [1016])
    control.script(phones["flaky"].mobile, [1008])
    enqueue = pipeline.producer.enqueue
    ids = {
        "a": enqueue(phones["a"].e164, template=TPL_NOTICE, params=NOTICE_PARAMS, sign=SIGN),
        # No sign: the gateway adds the account's default one.
        "b": enqueue(phones["b"].e164, template=TPL_NOTICE, params=NOTICE_PARAMS),
        "long": enqueue(phones["long"].e164, template=TPL_LONG, params=LONG_PARAMS, sign=SIGN),
        "bad": enqueue(phones["bad"].e164, template=TPL_NOTICE, params=NOTICE_PARAMS, sign=SIGN),
        "pending": enqueue(phones["pending"].e164, template=TPL_PENDING, params=["1"], sign=SIGN),
        "flaky": enqueue(phones["flaky"].e164, template=TPL_LONG, params=LONG_PARAMS, sign=SIGN),
        "abroad": enqueue(
            f"+447400{secrets.randbelow(10**6):06d}",
            template=TPL_INTERNATIONAL,
            params=CODE_PARAMS,
            kind=VERIFICATION,
        ),
        "text": enqueue(
            pipeline.new_phone().e164,
            text="【腾讯云】您的验证码是123456，5分钟内有效，请勿泄露。",
            kind=VERIFICATION,
        ),
    }
    pipeline.wait_settled([e.id for e in ids.values()], timeout=120)
    return {name: enqueued.id for name, enqueued in ids.items()}


def store_reports(pipeline: Pipeline) -> int:
    """Pull every delivery report from the simulator and store it as the ledger keeps them."""
    pipeline.simulator.control.flush_reports()
    stored = 0
    with SmsClient(SDKAPPID, APPKEY, pipeline.simulator.url) as client:
        for _ in range(PULL_ROUNDS):
            pulled = client.pull_status()
            if not pulled.reports:
                return stored
            with pipeline.sessions() as session:
                for report in pulled.reports:
                    message = session.scalars(
                        select(SmsMessage).where(SmsMessage.sid == report.sid)
                    ).one()
                    received = datetime.strptime(report.user_receive_time, "%Y-%m-%d %H:%M:%S")
                    session.add(
                        SmsDeliveryReport(
                            sid=report.sid,
                            message_id=message.id,
                            nationcode=report.nationcode,
                            mobile=report.mobile,
                            report_status=report.report_status,
                            errmsg=report.errmsg,
                            description=report.description,
                            user_receive_time=received.replace(tzinfo=BEIJING),
                            source="pull",
                        )
                    )
                    moved_to = DELIVERED if report.report_status == "SUCCESS" else UNDELIVERED
                    moves.transition(session, message.id, moved_to, from_statuses=(SENT,))
                    stored += 1
                session.commit()
    raise AssertionError(f"the simulator still had reports after {PULL_ROUNDS} pulls")


def counted_by_the_simulator(control: SimulatorControl) -> dict[str, Any]:
    """The expected figures, from the simulator's records only."""
    sends = [r for r in control.requests() if r.api in SEND_APIS]
    inbox = control.inbox()
    # Every send here was authenticated and answered, so each counts once per number.
    assert all(r.http_status == 200 and r.result is not None for r in sends)
    per_number = Counter(number for r in sends for number in r.numbers)
    billed_by_country: Counter[str] = Counter()
    for message in inbox:
        billed_by_country[message.nationcode] += message.fee
    return {
        "attempts": sum(per_number.values()),
        "retry_attempts": sum(count - 1 for count in per_number.values()),
        "successes": len(inbox),
        "billed_segments": sum(m.fee for m in inbox),
        "sids": sorted(m.sid for m in inbox),
        "billed_by_country": billed_by_country,
    }


def template_file(control: SimulatorControl, folder: Path) -> Path:
    """What the gateway knows and the client does not: the template texts and default sign."""
    config = control.config()
    lines = [f'default_sign = "{config["default_sign"]}"', "[templates]"]
    lines += [f'{t["id"]} = "{t["text"]}"' for t in config["templates"]]
    path = folder / "templates.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tomllib.loads(path.read_text(encoding="utf-8"))  # it is valid TOML
    return path


def rolled_up_rows(pipeline: Pipeline) -> int:
    with pipeline.sessions() as session:
        return session.scalar(select(func.count()).select_from(SmsDailyUsage)) or 0


def rollup_is_live(pipeline: Pipeline, days: list[date]) -> bool:
    """Whether the rollup holds, for each day, what the live tables say."""
    with pipeline.sessions() as session:
        rolled = ledger_finance.daily_usage(session, days[0], days[-1])
        return all(
            rolled.get(day, {})
            == ledger_finance.live_usage(
                session,
                finance.beijing_midnight(day),
                finance.beijing_midnight(day + timedelta(days=1)),
            )
            for day in days
        )


def run_cli(pipeline: Pipeline, *args: str) -> Any:
    return CliRunner().invoke(main, ["ledger", *args], env=pipeline.environment)


@pytest.mark.parametrize("pipeline", ["postgresql", "sqlite"], indirect=True)
def test_the_ledger_agrees_with_the_gateway_and_catches_tampering(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    control = pipeline.simulator.control
    ids = send_the_mix(pipeline)
    now = datetime.now(UTC)
    period = (now - timedelta(hours=1), now + timedelta(hours=1))
    expected = counted_by_the_simulator(control)
    assert (expected["successes"], expected["billed_segments"]) == (6, 8)

    # Before any report has come back, every success is a send without one.
    book = finance.TemplateBook.load(template_file(control, tmp_path))
    with SmsClient(SDKAPPID, APPKEY, pipeline.simulator.url) as client:
        waiting = finance.reconcile(
            pipeline.sessions, client, period, report_after_hours=0, templates=book
        )
    assert waiting.unreported.total == 6 and not waiting.ok

    assert store_reports(pipeline) == 6

    # The summary.
    (total,) = finance.summary(pipeline.sessions, *period)
    figures = total.figures
    assert figures.messages == len(ids) == 8
    assert (figures.accepted, figures.delivered) == (6, 6)
    for name in ("attempts", "retry_attempts", "successes", "billed_segments"):
        assert getattr(figures, name) == expected[name], name
    by_country = finance.summary(pipeline.sessions, *period, by=["country"])
    assert {row.key["country"]: row.figures.billed_segments for row in by_country} == dict(
        expected["billed_by_country"]
    )

    # The export streams, and holds exactly what the gateway saw.
    rows = finance.export(pipeline.sessions, "attempts", *period, batch=3)
    assert inspect.isgenerator(rows)
    exported = list(rows)
    assert len(exported) == expected["attempts"]
    assert sorted(row["sid"] for row in exported if row["result"] == 0) == expected["sids"]
    assert sum(row["fee"] for row in exported if row["result"] == 0) == expected["billed_segments"]
    assert len(list(finance.export(pipeline.sessions, "messages", *period))) == len(ids)

    # The rollup, run by the worker as beat would have it, holds the live figures.
    days = finance.trailing_days(ROLLUP_RECENT_DAYS)
    pipeline.celery_app.send_task(
        TASK_ROLLUP_USAGE, kwargs={"days": ROLLUP_RECENT_DAYS}, queue=QUEUE_MAINTENANCE
    )
    pipeline.wait_until(lambda: rollup_is_live(pipeline, days), timeout=120, what="rollup")
    assert rolled_up_rows(pipeline) > 0

    # Prices.
    with pipeline.sessions() as session:
        ledger_finance.set_price(session, nationcode="86", kind="*", valid_from=days[0],
                                 price_per_segment=Decimal("0.045"))  # fmt: skip
        ledger_finance.set_price(session, nationcode="*", kind="*", valid_from=days[0],
                                 price_per_segment=Decimal("0.30"))  # fmt: skip
        session.commit()
    (priced,) = finance.summary(
        pipeline.sessions, *period, prices=finance.PriceList.load(pipeline.sessions)
    )
    billed = expected["billed_by_country"]
    assert priced.cost == Decimal("0.045") * billed["86"] + Decimal("0.30") * billed["44"]

    # Reconciliation: every hour and the whole period match the gateway's own figures.
    with SmsClient(SDKAPPID, APPKEY, pipeline.simulator.url) as client:
        result = finance.reconcile(
            pipeline.sessions, client, period, report_after_hours=0, templates=book
        )
    assert result.ok, list(report_lines(result))
    gateway = SendFigures(expected["attempts"], expected["successes"], expected["billed_segments"])
    assert result.period.gateway == result.period.ledger == gateway
    assert result.unchecked_fees == 0
    templates = str(tmp_path / "templates.toml")
    cli_period = ["--from", period[0].isoformat(), "--to", period[1].isoformat()]
    answer = run_cli(pipeline, "reconcile", *cli_period, "--templates", templates)
    assert answer.exit_code == 0, answer.output
    assert "Everything matches." in answer.output

    # Tampering: one attempt billed a segment more than its text costs.
    with pipeline.sessions() as session:
        long_attempt = session.scalars(
            select(SmsAttempt).where(SmsAttempt.message_id == ids["long"])
        ).one()
        session.execute(update(SmsAttempt).where(SmsAttempt.id == long_attempt.id).values(fee=3))
        session.commit()
    with SmsClient(SDKAPPID, APPKEY, pipeline.simulator.url) as client:
        tampered = finance.reconcile(pipeline.sessions, client, period, templates=book)
    assert not tampered.ok
    (mismatch,) = tampered.fee_mismatches.items
    assert (mismatch.attempt_id, mismatch.fee, mismatch.expected) == (long_attempt.id, 3, 2)
    assert tampered.period.ledger.billed == tampered.period.gateway.billed + 1
    answer = run_cli(pipeline, "reconcile", *cli_period, "--templates", templates)
    assert answer.exit_code == 1, answer.output
    assert "fee 3, the text costs 2" in answer.output

    # Tampering: an attempt row gone (a request the gateway counted and the ledger lost).
    with pipeline.sessions() as session:
        session.execute(update(SmsAttempt).where(SmsAttempt.id == long_attempt.id).values(fee=2))
        session.execute(delete(SmsAttempt).where(SmsAttempt.message_id == ids["bad"]))
        session.commit()
    answer = run_cli(pipeline, "reconcile", *cli_period, "--templates", templates)
    assert answer.exit_code == 1, answer.output
    assert "Whole period DOES NOT MATCH" in answer.output
    json_answer = run_cli(pipeline, "reconcile", *cli_period, "--format", "json")
    assert json_answer.exit_code == 1


def test_the_commands_speak_csv_json_and_refuse_bad_input(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    phone = pipeline.new_phone()
    enqueued = pipeline.producer.enqueue(phone.e164, template=TPL_LONG, params=LONG_PARAMS)
    pipeline.wait_settled([enqueued.id])
    (received,) = pipeline.simulator.control.inbox(phone.mobile)
    now = datetime.now(UTC)
    period = ["--from", (now - timedelta(hours=1)).isoformat(), "--to",
              (now + timedelta(hours=1)).isoformat()]  # fmt: skip

    answer = run_cli(pipeline, "summary", *period, "--by", "template,country", "--format", "json")
    assert answer.exit_code == 0, answer.output
    (row,) = json.loads(answer.output)
    assert (row["template"], row["country"], row["billed_segments"]) == (
        TPL_LONG,
        "86",
        received.fee,
    )

    answer = run_cli(pipeline, "summary", *period, "--by", "kind", "--format", "csv")
    assert answer.exit_code == 0, answer.output
    header, line = answer.output.splitlines()
    assert header.startswith("kind,messages,accepted,delivered,attempts")
    assert line.startswith(f"notification,1,1,0,1,1,{received.fee},0,")

    output = tmp_path / "attempts.jsonl"
    answer = run_cli(pipeline, "export", *period, "--what", "attempts", "--format", "jsonl",
                     "--output", str(output))  # fmt: skip
    assert answer.exit_code == 0, answer.output
    (exported,) = [json.loads(text) for text in output.read_text().splitlines()]
    assert (exported["sid"], exported["fee"]) == (received.sid, received.fee)

    answer = run_cli(pipeline, "rollup", "--days", "2")
    assert answer.exit_code == 0 and "row(s)" in answer.output

    for arguments, option in (
        (["summary", "--from", "2026-02-30", "--to", "2026-03-01"], "'--from'"),
        (["summary", "--from", "2026-03-02", "--to", "2026-03-01"], "'--to'"),
        (["summary", *period, "--by", "colour"], "'--by'"),
        (["export", *period, "--what", "replies"], "'--what'"),
        (["rollup", "--days", "0"], "'--days'"),
    ):
        answer = run_cli(pipeline, *arguments)
        assert answer.exit_code == 2, (arguments, answer.output)
        assert option in answer.output, answer.output


def test_beat_rolls_usage_up_hourly_and_nightly_on_the_maintenance_queue() -> None:
    entries = [entry for entry in BEAT_SCHEDULE.values() if entry["task"] == TASK_ROLLUP_USAGE]
    assert sorted(entry["kwargs"]["days"] for entry in entries) == [
        ROLLUP_RECENT_DAYS,
        ROLLUP_TRAILING_DAYS,
    ]
    assert all(entry["options"]["queue"] == QUEUE_MAINTENANCE for entry in entries)
