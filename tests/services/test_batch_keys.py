"""A batch is created once: by its key (``--key``), and by its input within a day.

The installed command in a subprocess, on both dialects of a real ledger; two commands at once
are two real processes; a crash is a real SIGKILL in the middle of an import.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from tests.cli.batch_cli import SHARED, Ledger, number, summary
from worker.api.batches import Batches, BatchInputError, BatchKeyConflict, DuplicateBatch
from worker.ledger.schema import SmsBatch

ROWS = 3000


@pytest.fixture
def ledger(ledger_url: str, sessions: sessionmaker[Session]) -> Ledger:
    return Ledger(ledger_url, sessions)


def recipients(folder: Path, name: str = "list.csv", rows: int = ROWS, first: int = 1) -> Path:
    file = folder / name
    lines = ["mobile", *(number(n) for n in range(first, first + rows))]
    file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return file


def test_the_same_key_returns_the_batch_it_made_and_creates_nothing(
    ledger: Ledger, tmp_path: Path
) -> None:
    file = recipients(tmp_path)
    created = ledger.create(file, *SHARED, "--key", "may-day")
    assert created.returncode == 0, created.stderr
    batch = ledger.only_batch()
    assert batch["key"] == "may-day"

    again = ledger.create(file, *SHARED, "--key", "may-day", "--start", "2030-05-01 09:00")

    assert again.returncode == 0, again.stderr
    assert f"batch {batch['id']} was created before with this key; nothing new" in again.stdout
    assert f"{ROWS} rows, {ROWS} accepted, 0 rejected" in summary(again)
    assert ledger.only_batch() == batch
    assert ledger.messages() == ROWS


@pytest.mark.parametrize(
    "change",
    [["--other-file"], ["--template", "100003"], ["--sign", "腾讯云"], ["--param", "9"]],
    ids=["file", "template", "sign", "params"],
)
def test_the_same_key_with_another_input_is_refused_naming_the_batch(
    ledger: Ledger, tmp_path: Path, change: list[str]
) -> None:
    file = recipients(tmp_path)
    assert ledger.create(file, *SHARED, "--key", "k1").returncode == 0
    batch = ledger.only_batch()

    if change == ["--other-file"]:
        other, args = recipients(tmp_path, "other.csv", first=ROWS + 1), [*SHARED]
    elif change[0] == "--param":
        other, args = file, ["--param", "会员", *change]
    else:
        other, args = file, [*SHARED, *change]
    refused = ledger.create(other, *args, "--key", "k1")

    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert f"key 'k1' already made batch {batch['id']}" in refused.stderr
    assert ledger.only_batch() == batch


def test_the_same_input_within_a_day_is_refused_unless_allowed(
    ledger: Ledger, tmp_path: Path
) -> None:
    file = recipients(tmp_path)
    assert ledger.create(file, *SHARED).returncode == 0
    first = ledger.only_batch()

    # The name and the schedule do not make another input.
    twice = ledger.create(file, *SHARED, "--name", "again", "--start", "2030-05-01 09:00")

    assert twice.returncode == 2, twice.stdout + twice.stderr
    assert f"batch {first['id']}" in twice.stderr
    assert "--allow-duplicate" in twice.stderr and "--key" in twice.stderr
    assert ledger.batches() == [first]

    allowed = ledger.create(file, *SHARED, "--allow-duplicate")
    assert allowed.returncode == 0, allowed.stderr
    assert len(ledger.batches()) == 2
    another_sign = ledger.create(file, *SHARED, "--sign", "腾讯云")
    assert another_sign.returncode == 0, another_sign.stderr
    assert ledger.messages() == 3 * ROWS


def test_only_a_recent_batch_that_may_have_sent_counts_as_a_duplicate(
    batches: Batches, sessions: sessionmaker[Session]
) -> None:
    lines = ["mobile", number(1), number(2)]
    first = batches.create(lines, template=100002, params=["a", "8"])
    with pytest.raises(DuplicateBatch) as refused:
        batches.create(lines, template=100002, params=["a", "8"])
    assert refused.value.batch_id == first.batch_id

    # Cancelled before anything went out: nothing of it could be sent twice.
    assert batches.cancel(first.batch_id) == 2
    second = batches.create(lines, template=100002, params=["a", "8"])
    # More than a day ago: no longer a duplicate.
    with sessions() as session:
        created_at = batches.status(second.batch_id).batch.created_at
        session.execute(
            update(SmsBatch)
            .where(SmsBatch.id == second.batch_id)
            .values(created_at=created_at - timedelta(hours=24, minutes=1))
        )
        session.commit()
    third = batches.create(lines, template=100002, params=["a", "8"])
    assert len({first.batch_id, second.batch_id, third.batch_id}) == 3


def test_the_python_api_returns_the_keyed_batch_or_refuses_a_conflict(batches: Batches) -> None:
    lines = ["mobile", number(1), "12"]
    made = batches.create(lines, template=100002, params=["a", "8"], key="api-1")
    assert made.created

    again = batches.create(lines, template=100002, params=["a", "8"], key="api-1")

    assert not again.created
    assert (again.batch_id, again.rows, again.accepted, again.rejected) == (
        made.batch_id, 2, 1, 1,
    )  # fmt: skip
    assert again.reasons == made.reasons == {"bad_number": 1}
    assert [(r.line_no, r.reason) for r in again.first_rejections] == [(3, "bad_number")]
    with pytest.raises(BatchKeyConflict) as conflict:
        batches.create(lines, template=100003, params=["a", "8"], key="api-1")
    assert conflict.value.batch_id == made.batch_id
    for bad in ("", "   ", "k" * 129, "a\x00b"):
        with pytest.raises(BatchInputError, match="key: "):
            batches.create(lines, template=100002, params=["a", "8"], key=bad)
    assert len(batches.recent()) == 1


@pytest.mark.parametrize("key", [["--key", "at-once"], []], ids=["key", "no-key"])
def test_two_creates_at_once_make_one_batch(ledger: Ledger, tmp_path: Path, key: list[str]) -> None:
    # Small: on SQLite the second create waits for the first's transaction (busy timeout 30 s).
    rows = 1000
    file = recipients(tmp_path, rows=rows)
    command = ledger.command(*ledger.create_args(file, *SHARED, *key))
    children = [
        subprocess.Popen(
            command,
            env=ledger.environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [child.communicate(timeout=600) for child in children]
    results = [(child.returncode, *output) for child, output in zip(children, outputs, strict=True)]

    batch = ledger.only_batch()
    assert ledger.messages() == rows
    codes = sorted(code for code, _, _ in results)
    if key:
        assert codes == [0, 0], results
        assert all(f"batch {batch['id']}" in out for _, out, _ in results)
    else:
        assert codes == [0, 2], results
        (refusal,) = [err for code, _, err in results if code == 2]
        assert f"batch {batch['id']}" in refusal


# Imports the file like ``batch create --key`` and is killed by SIGKILL while writing its second
# chunk of rows, the first already written.
KILLED_MIDWAY = """
import os, signal, sys
from worker.api.batches import Batches
from worker.services import batch_import

write, calls = batch_import._write, []

def write_then_die(*args, **kwargs):
    calls.append(1)
    if len(calls) == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return write(*args, **kwargs)

batch_import._write = write_then_die
with Batches() as batches:
    batches.create(sys.argv[1], template=100002, params=["会员", "8"], key=sys.argv[2])
"""


def test_a_create_killed_midway_leaves_nothing_and_its_rerun_creates_the_batch_once(
    ledger: Ledger, tmp_path: Path
) -> None:
    rows = 7000  # two chunks of the import
    file = recipients(tmp_path, rows=rows)
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_MIDWAY, str(file), "crash-safe"], env=ledger.environment,
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert ledger.batches() == []
    assert ledger.messages() == 0

    rerun = ledger.create(file, *SHARED, "--key", "crash-safe")

    assert rerun.returncode == 0, rerun.stderr
    assert "created before" not in rerun.stdout
    assert f"{rows} rows, {rows} accepted, 0 rejected" in summary(rerun)
    batch = ledger.only_batch()
    assert (batch["status"], batch["key"], batch["accepted"]) == ("scheduled", "crash-safe", rows)
    assert ledger.messages() == rows
