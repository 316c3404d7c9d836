"""Importing a batch from CSV: every row ends accepted or rejected with its line and reason.

Real databases (PostgreSQL and SQLite), no worker: the import only writes the ledger.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.fixtures.simulator import APPKEY, SDKAPPID
from worker.api.batches import Batches
from worker.cli import main
from worker.config import Settings
from worker.ledger.optouts import add_opt_out
from worker.ledger.schema import SmsMessage
from worker.ledger.status import MARKETING, QUEUED, BatchStatus
from worker.services.batch_import import BatchInputError, ImportProgress, params_key

TEMPLATE = 100002


def batch_messages(sessions: sessionmaker[Session], batch_id: object) -> list[SmsMessage]:
    with sessions() as session:
        statement = select(SmsMessage).where(SmsMessage.batch_id == batch_id)
        return list(session.scalars(statement))


def test_every_row_is_accepted_or_rejected_with_its_line_and_reason(
    batches: Batches, sessions: sessionmaker[Session]
) -> None:
    with sessions() as session:
        add_opt_out(session, "86", "13700000005", source="command")
        session.commit()
    lines = [
        "mobile,nationcode,param1,param2",  # line 1
        "+8613700000001,,张女士,8",  # 2 ok
        "13700000002,86,李先生,9",  # 3 ok: national with nationcode
        "12345,,王,8",  # 4 bad number
        "+8613700000001,,张女士,8",  # 5 duplicate of line 2 (same chunk)
        "+8613700000005,,赵,7",  # 6 opted out
        "+8613700000006,,钱",  # 7 one param short
        "",  # blank lines are not rows
        "+8613700000007,,孙,8,extra",  # 9 more fields than the header
        "+8613700000008,,t.cn/abc,8",  # 10 a URL in a param
        "+8613700000009,,周,8",  # 11 ok
        "+8613700000002,,吴,8",  # 12 duplicate of line 3, written national there
        "+8613700000010,,郑,8",  # 13 ok
    ]
    seen: list[ImportProgress] = []
    report = batches.create(lines, template=TEMPLATE, sign="腾讯云", progress=seen.append)

    expected = {
        4: "bad_number",
        5: "duplicate",
        6: "opted_out",
        7: "wrong_param_count",
        9: "wrong_param_count",
        10: "bad_param",
        12: "duplicate",
    }
    rejected = batches.rejections(report.batch_id)
    assert {r.line_no: r.reason for r in rejected} == expected
    assert [r.line_no for r in rejected] == sorted(expected)
    assert rejected[0].raw == "12345,,王,8"
    url_detail = next(r.detail for r in rejected if r.line_no == 10)
    assert url_detail.startswith("param 1: 't.cn/abc' looks like a URL")
    assert (report.rows, report.accepted, report.rejected) == (11, 4, 7)
    assert report.reasons == dict(Counter(expected.values()))
    assert seen[-1] == ImportProgress(11, 4, 7)

    status = batches.status(report.batch_id)
    batch = status.batch
    assert (batch.status, batch.total_rows, batch.accepted, batch.rejected) == (
        BatchStatus.SCHEDULED,
        11,
        4,
        7,
    )
    assert status.messages == {QUEUED: 4}
    messages = {m.mobile: m for m in batch_messages(batches.sessions, report.batch_id)}
    assert sorted(messages) == [f"1370000000{n}" for n in (1, 2, 9)] + ["13700000010"]
    first = messages["13700000001"]
    assert (first.kind, first.account, first.tpl_id, first.sign) == (
        MARKETING, "default", TEMPLATE, "腾讯云",
    )  # fmt: skip
    assert first.params == ["张女士", "8"]
    assert first.params_key == params_key(["张女士", "8"])
    assert first.not_before == batch.start_at and first.expires_at == batch.window_end_at


def test_duplicates_across_chunks_are_caught_without_a_set_of_the_whole_file(
    settings: Settings, sessions: sessionmaker[Session]
) -> None:
    from worker.services.batch_import import BatchSpec, import_batch

    now = datetime.now(UTC)
    spec = BatchSpec("chunks", "default", TEMPLATE, None, now, now + timedelta(days=1), ("a", "8"))
    numbers = [f"+861370000{n:04d}" for n in range(25)]
    lines = ["mobile", *numbers, *numbers[::2]]  # every other number again, later
    report = import_batch(sessions, settings, lines, spec, chunk_rows=4)
    assert (report.rows, report.accepted, report.rejected) == (38, 25, 13)
    assert report.reasons == {"duplicate": 13}
    assert len(batch_messages(sessions, report.batch_id)) == 25


def test_shared_params_and_columns_by_name(batches: Batches, tmp_path: Path) -> None:
    file = tmp_path / "vip.csv"
    file.write_text("\ufeffName,Mobile,Discount\n王,+8613700000001,8\n", encoding="utf-8")
    by_name = batches.create(file, template=TEMPLATE, params_from=["name", "discount"])
    assert (by_name.accepted, by_name.rejected) == (1, 0)
    (message,) = batch_messages(batches.sessions, by_name.batch_id)
    assert message.params == ["王", "8"]
    assert batches.status(by_name.batch_id).batch.name == "vip.csv"

    shared = batches.create(["mobile", "+8613700000002"], template=TEMPLATE, params=["会员", "8"])
    assert batches.status(shared.batch_id).batch.params == ["会员", "8"]


@pytest.mark.parametrize(
    ("lines", "options", "problem"),
    [
        ([], {}, "empty"),
        (["number"], {}, "no mobile column"),
        (["mobile,param1,param3"], {}, "without gaps"),
        (["mobile,param1"], {"params": ["a"]}, "param columns and shared params"),
        (["mobile"], {"params": ["t.cn/abc"]}, "URL"),
        (["mobile,param1"], {"param_count": 2}, "takes 2 params"),
        (["mobile,name"], {"params_from": ["nick"]}, "no column nick"),
        (["mobile"], {"window_end_at": datetime.now(UTC) - timedelta(hours=1)}, "past"),
        (["mobile"], {"account": "shop"}, "unknown account"),
    ],
)
def test_unusable_input_is_refused_before_anything_is_written(
    batches: Batches, lines: list[str], options: dict[str, object], problem: str
) -> None:
    if "window_end_at" in options:
        options = {**options, "start_at": datetime.now(UTC) - timedelta(hours=2)}
    with pytest.raises(BatchInputError, match=problem):
        batches.create(lines, template=TEMPLATE, **options)
    assert batches.recent() == []


def test_an_import_that_fails_midway_leaves_nothing(
    batches: Batches, monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker.services import batch_import

    def failing_after_a_chunk(*args: Any, **kwargs: Any) -> Any:
        seen.append(1)
        if len(seen) > 1:  # the first chunk is written, the second fails
            raise OSError("the disk went away")
        return write(*args, **kwargs)

    seen: list[int] = []
    write = batch_import._write
    monkeypatch.setattr(batch_import, "_write", failing_after_a_chunk)
    lines = ["mobile", *(f"+86137{n:08d}" for n in range(6000))]
    with pytest.raises(OSError, match="disk"):
        batches.create(lines, template=TEMPLATE, params=["a", "8"])
    assert len(seen) == 2
    # One transaction: neither the batch nor the chunk written before the failure remains.
    assert batches.recent() == []
    with batches.sessions() as session:
        assert session.scalars(select(SmsMessage.id)).all() == []


def test_the_command_imports_and_summarises(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMS_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("SMS_SDKAPPID", SDKAPPID)
    monkeypatch.setenv("SMS_APPKEY", APPKEY)
    file = tmp_path / "list.csv"
    file.write_text("mobile,param1,param2\n+8613700000001,王,8\n12,李,8\n", encoding="utf-8")
    runner = CliRunner()
    args = ["batch", "create", str(file), "--template", str(TEMPLATE), "--sign", "腾讯云"]
    created = runner.invoke(main, [*args, "--start", "2030-05-01 09:00"])
    assert created.exit_code == 0, created.output
    assert "2 rows, 1 accepted, 1 rejected" in created.output
    assert "bad_number" in created.output

    listed = runner.invoke(main, ["batch", "list", "--format", "json"])
    (batch,) = json.loads(listed.output)
    # A time without an offset is Beijing time.
    assert datetime.fromisoformat(batch["start_at"]) == datetime(2030, 5, 1, 1, 0, tzinfo=UTC)
    status = runner.invoke(main, ["batch", "status", batch["id"][:8], "--format", "json"])
    assert json.loads(status.output)["messages"] == {"queued": 1}
    rejections = runner.invoke(main, ["batch", "rejections", batch["id"]])
    assert rejections.output.splitlines()[1].startswith("3,bad_number,")

    wrong = runner.invoke(main, [*args, "--param", "a", "--param", "8"])
    assert wrong.exit_code == 2
    assert "param columns and shared params" in wrong.output
    missing = runner.invoke(main, ["batch", "status", "ffffffff"])
    assert missing.exit_code == 2
    cancelled = runner.invoke(main, ["batch", "cancel", batch["id"]])
    assert cancelled.exit_code == 0 and "1 queued message(s)" in cancelled.output
    again = runner.invoke(main, ["batch", "cancel", batch["id"]])
    assert again.exit_code == 0, again.output  # cancelling twice is not an error


def test_opt_out_commands(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMS_DATABASE_URL", settings.database_url)
    runner = CliRunner()
    refused = runner.invoke(main, ["optout", "add", "13700000001"])
    assert refused.exit_code == 2 and "country code" in refused.output
    added = runner.invoke(main, ["optout", "add", "+8613700000001", "--reason", "phoned"])
    assert added.exit_code == 0 and "opted out 1" in added.output
    listed = json.loads(runner.invoke(main, ["optout", "list", "--format", "json"]).output)
    assert [(row["number"], row["source"], row["reason"]) for row in listed] == [
        ("+8613700000001", "command", "phoned")
    ]
    removed = runner.invoke(main, ["optout", "remove", "13700000001", "--nationcode", "86"])
    assert removed.exit_code == 0 and "removed 1" in removed.output
    assert json.loads(runner.invoke(main, ["optout", "list", "--format", "json"]).output) == []


def test_batches_are_listed_newest_first(batches: Batches) -> None:
    first = batches.create(["mobile", "+8613700000001"], template=TEMPLATE, name="first")
    second = batches.create(["mobile", "+8613700000002"], template=TEMPLATE, name="second")
    assert [b.id for b in batches.recent()] == [second.batch_id, first.batch_id]
    assert batches.find(str(second.batch_id)[:8]).id == second.batch_id
    with pytest.raises(LookupError):
        batches.find("0123456789abcdef")


def test_line_numbers_are_physical_lines_and_a_field_may_not_span_them(batches: Batches) -> None:
    lines = io.StringIO(
        'mobile,param1,param2\n"+8613700000001","王\n先生",8\n12,李,8\n', newline=""
    )
    report = batches.create(lines, template=TEMPLATE)
    # A row is one line: line 2 leaves its quote open, line 3 (with the closing quote out of
    # place) is read as a row of its own, and so is line 4.
    assert [(r.line_no, r.reason) for r in report.first_rejections] == [
        (2, "malformed"), (3, "malformed"), (4, "bad_number"),
    ]  # fmt: skip
    assert "may not span lines" in report.first_rejections[0].detail

    long_line = ["mobile", "+8613700000002", "x" * 200_000, "+8613700000003"]
    report = batches.create(long_line, template=TEMPLATE, params=["a", "8"])
    assert (report.rows, report.accepted) == (3, 2)
    (rejection,) = report.first_rejections
    assert (rejection.line_no, rejection.reason) == (3, "malformed")
    assert "200,000 bytes" in rejection.detail and rejection.raw == "x" * 200
