"""The CSV batch importer under hostile files, on both dialects of a real ledger.

Files are made of bytes: numbers good, bad and repeated, junk cells, blank lines, quoted
newlines, extra and missing columns, lines over the length limit, BOMs, other encodings
and plain random bytes. What the importer documents, and is asserted here:

- it either refuses with ``BatchInputError`` or returns a report;
- a refusal writes nothing, wherever in the file its reason was found (one transaction);
- an imported batch accounts for every data row: ``accepted + rejected == rows``, each
  rejection with its line number and a reason; a row is one physical line, and a line that
  is not one CSV row is rejected as ``malformed`` while the lines after it are read on their
  own; with shared params the accepted rows are exactly the first occurrence of each valid
  number.
"""

from __future__ import annotations

import csv
import io
import os
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner
from hypothesis import event, example, given
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.fixtures.simulator import APPKEY, SDKAPPID
from tests.strategies import (
    FUZZ,
    HOSTILE_TEXT,
    INVALID_NUMBERS,
    VALID_NUMBER,
    fuzz_with,
    mostly,
)
from worker.api.batches import Batches
from worker.cli import main
from worker.config import Settings
from worker.ledger.schema import SmsBatch, SmsBatchRejection, SmsMessage
from worker.ledger.schema.batches import BAD_NUMBER, DUPLICATE, MALFORMED, REJECTION_REASONS
from worker.ledger.status import MARKETING, QUEUED, BatchStatus
from worker.services.batch_import import PARAM_COLUMN, BatchInputError, ImportReport
from worker.tencent import InvalidInput, Phone, parse_phone

TEMPLATE = 100002
SHARED = ["会员", "8"]
FIELD_LIMIT = csv.field_size_limit()
MAX_LINE_BYTES = 64 * 1024  # the documented limit of a row
MAX_FIELDS = 1000
# Fields unquoted without a quote, or quoted whole with their quotes doubled.
RFC_4180_LINE = re.compile(r'(?:"(?:[^"]|"")*"|[^",]*)(?:,(?:"(?:[^"]|"")*"|[^",]*))*')
# A few numbers, so that files repeat them (as national numbers too, with a nationcode).
POOL = [f"+86137{n:08d}" for n in range(0, 80_000_000, 9_876_543)] + ["+12015550123"]
UTF_CODECS = ("utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-32")
CODECS = (*UTF_CODECS, "gb18030", "big5", "shift_jis", "latin-1", "cp1252")


# --- files ----------------------------------------------------------------------------------

CELL = st.one_of(
    st.sampled_from(POOL),
    st.sampled_from(POOL).map(lambda number: number.removeprefix("+86")),
    st.sampled_from(POOL).map(lambda number: f" {number[:6]} {number[6:]} "),
    VALID_NUMBER,
    INVALID_NUMBERS,
    HOSTILE_TEXT,
    st.sampled_from(["86", "+86", "1", "", "line\nbreak", 'quote"d', "a,b", "x" * 2000]),
)
HEADERS = mostly(
    st.sampled_from(
        [
            ["mobile"],
            ["mobile", "nationcode"],
            [" Mobile ", "NationCode", "name"],
            ["name", "MOBILE", "note"],
            ["nationcode", "mobile"],
        ]
    ),
    st.sampled_from([["mobile", "param1"], ["phone"], ["mobile\ufeff"], [""], ["param0", "mobile"]])
    | st.lists(st.one_of(HOSTILE_TEXT, st.just("mobile")), min_size=1, max_size=4),
)


@st.composite
def csv_files(draw: st.DrawFn, header: st.SearchStrategy[list[str]] = HEADERS) -> bytes:
    """A CSV file's bytes: mostly a readable file with hostile content, sometimes not."""
    if draw(st.integers(0, 19)) == 0:
        return draw(st.binary(max_size=400))
    names = draw(header)
    rows: list[list[str]] = [names]
    for _ in range(draw(st.integers(0, 25))):
        if draw(st.integers(0, 9)) == 0:
            rows.append(draw(st.sampled_from([[], [""], ["  ", " "]])))  # blank lines
            continue
        width = max(0, len(names) + draw(st.sampled_from([0, 0, 0, 0, -1, 1, 2])))
        rows.append([draw(CELL) for _ in range(width)])
    if draw(st.integers(0, 29)) == 0:  # one field over the reader's limit
        rows.insert(draw(st.integers(1, len(rows))), ["+8613700000001", "y" * (FIELD_LIMIT + 1)])
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator=draw(st.sampled_from(["\r\n", "\n", "\r"])))
    writer.writerows(rows)
    text = buffer.getvalue()
    if draw(st.integers(0, 14)) == 0:  # a quote left open, or stray quotes mid-field
        text += draw(st.sampled_from(['"+8613700000001\n', 'ab"c,"d\n']))
    codec = draw(st.sampled_from(CODECS)) if draw(st.integers(0, 5)) == 0 else "utf-8"
    data = text.encode(codec, errors="surrogatepass" if codec in UTF_CODECS else "replace")
    if draw(st.integers(0, 9)) == 0:  # bytes that are not UTF-8, somewhere
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]
    if draw(st.integers(0, 9)) == 0:
        data = draw(st.sampled_from([b"\xef\xbb\xbf", b"\xef\xbb\xbf\xef\xbb\xbf"])) + data
    return data


# --- what the file should make --------------------------------------------------------------


@dataclass(frozen=True)
class Readable:
    """A file that decodes, with a header and rows: the data rows with their lines (None for
    a line that is not one CSV row)."""

    header: list[str]
    records: list[tuple[int, list[str] | None]]


def one_row(line: str) -> list[str] | None:
    """The documented reading of one physical line; None when it is malformed."""
    if len(line.encode("utf-8", "surrogatepass")) > MAX_LINE_BYTES:
        return None
    try:
        (fields,) = list(csv.reader([line], strict=True)) or [[""]]
    except csv.Error:
        return None
    if '"' in line and not RFC_4180_LINE.fullmatch(line):  # a quote out of place
        return None
    if len(fields) > MAX_FIELDS or any(re.search("[\x00\ud800-\udfff]", f) for f in fields):
        return None
    return fields


def read(data: bytes) -> Readable | None:
    """The file as the documented format reads it (one BOM dropped, a row per line ended by
    \\n, \\r\\n or \\r); None if it is not UTF-8, its header is malformed, or it has no rows."""
    try:
        text = data.removeprefix(b"\xef\xbb\xbf").decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return None
    records: list[tuple[int, list[str] | None]] = []
    for line_no, line in enumerate(re.split("\r\n|\r|\n", text), start=1):
        fields = one_row(line)
        if fields is None or any(value.strip() for value in fields):  # blank lines are not rows
            records.append((line_no, fields))
    if len(records) < 2 or records[0][1] is None:
        return None
    return Readable(records[0][1], records[1:])


def header_usable(header: Sequence[str], *, shared_params: bool) -> bool:
    """The documented header: a mobile column, no name twice; with shared params no param
    columns, else param columns param1..paramN without gaps (names compared stripped, in any
    case)."""
    names = [name.strip().lower() for name in header]
    if len({name for name in names if name}) < len([name for name in names if name]):
        return False
    numbers = sorted(int(m.group(1)) for name in names if (m := PARAM_COLUMN.fullmatch(name)))
    if shared_params:
        return "mobile" in names and not numbers
    return "mobile" in names and numbers == list(range(1, len(numbers) + 1))


def expected_verdicts(readable: Readable) -> dict[int, str | None]:
    """Line -> None (accepted) or the rejection reason, for a batch with shared params."""
    names = [name.strip().lower() for name in readable.header]
    mobile = names.index("mobile")
    nationcode = names.index("nationcode") if "nationcode" in names else None
    seen: set[Phone] = set()
    verdicts: dict[int, str | None] = {}
    for line_no, row in readable.records:
        if row is None:
            verdicts[line_no] = MALFORMED
            continue

        def cell(index: int | None, row: list[str] = row) -> str:
            return row[index].strip() if index is not None and index < len(row) else ""

        try:
            phone = parse_phone(cell(mobile), cell(nationcode) or None)
        except InvalidInput:
            verdicts[line_no] = BAD_NUMBER
            continue
        verdicts[line_no] = DUPLICATE if phone in seen else None
        seen.add(phone)
    return verdicts


def refusal_kind(error: BatchInputError) -> str:
    """The refusal without its figures, for the statistics of the run."""
    return "refused: " + re.sub(r"[0-9]+", "N", str(error))[:40]


# --- the ledger -----------------------------------------------------------------------------


def batch_ids(sessions: sessionmaker[Session]) -> set[uuid.UUID]:
    with sessions() as session:
        return set(session.scalars(select(SmsBatch.id)))


def messages_by_status(sessions: sessionmaker[Session], batch_id: uuid.UUID) -> dict[str, int]:
    with sessions() as session:
        counted = session.execute(
            select(SmsMessage.status, func.count())
            .where(SmsMessage.batch_id == batch_id)
            .group_by(SmsMessage.status)
        )
        return {status: count for status, count in counted}


def assert_refused_cleanly(
    sessions: sessionmaker[Session], before: set[uuid.UUID], error: BatchInputError
) -> None:
    """Nothing written: a batch is created in one transaction."""
    assert str(error).strip(), "a refusal without a message"
    assert batch_ids(sessions) - before == set(), f"{error} left a batch behind"


def assert_accounted_for(
    sessions: sessionmaker[Session],
    readable: Readable,
    report: ImportReport,
    before: set[uuid.UUID],
) -> list[SmsBatchRejection]:
    """The report, the batch row and its rejections agree, and cover every data row."""
    assert batch_ids(sessions) - before == {report.batch_id}
    assert report.rows == len(readable.records)
    assert report.accepted + report.rejected == report.rows
    with sessions() as session:
        batch = session.get(SmsBatch, report.batch_id)
        assert batch is not None
        assert (batch.status, batch.total_rows, batch.accepted, batch.rejected) == (
            BatchStatus.SCHEDULED, report.rows, report.accepted, report.rejected,
        )  # fmt: skip
        rejections = list(
            session.scalars(
                select(SmsBatchRejection)
                .where(SmsBatchRejection.batch_id == report.batch_id)
                .order_by(SmsBatchRejection.line_no)
            )
        )
    data_lines = {line_no for line_no, _ in readable.records}
    assert len(rejections) == report.rejected
    for rejection in rejections:
        assert rejection.line_no in data_lines, f"line {rejection.line_no} holds no data row"
        assert rejection.reason in REJECTION_REASONS and rejection.detail.strip()
    assert len({r.line_no for r in rejections}) == len(rejections), "a line rejected twice"
    assert messages_by_status(sessions, report.batch_id) == (
        {QUEUED: report.accepted} if report.accepted else {}
    )
    return rejections


# --- the properties -------------------------------------------------------------------------

EXAMPLES = [
    b"",
    b"\xef\xbb\xbf",
    b"mobile\n+8613700000001\n\x00\n",
    b"mobile\n+86137\x0000000001\n",  # a NUL in a rejected row: PostgreSQL refused to keep it
    b"mobile,nationcode\n13700000001," + b"8" * 5000 + b"\n",
    b"mobile,param" + b"9" * 5000 + b"\n+8613700000001\n",
    b"mobile\n+8613700000001\n\xff\xfe\n",
    "mobile\n+8613700000001\n".encode("utf-16"),
    b'mobile\n"+8613700000001\n+8613700000002"\n+8613700000001\n\n \n',
    b"mobile,x\n+8613700000001," + b"y" * (FIELD_LIMIT + 1) + b"\n",
    b'mobile\n+8613700010498\n+8613700010499,"oops\n+8613700010500\n',  # a quote left open
    b"mobile\r\n+8613700000001\r+8613700000002\n\n,,\n",
    b"mobile,Mobile\n+8613700000001,+8613700000002\n",  # a name twice
    b"mobile\n",  # a header without rows
    b"mobile,x\n+8613700000001,\xed\xa0\x80\n+8613700000002,ok\n",  # an encoded surrogate
    b"mobile\n+8613700000001\n" + b",ab" * 30_000 + b"\n+8613700000002\n",
    b"\xef\xbb\xbf\xef\xbb\xbfmobile\n+8613700000001\n",
]


def _with_examples(test: Callable[..., None]) -> Callable[..., None]:
    for data in EXAMPLES:
        test = example(data=data)(test)
    return test


@FUZZ
@given(data=csv_files())
@_with_examples
def test_shared_params_every_row_is_accepted_once_or_rejected_with_its_line(
    batches: Batches, sessions: sessionmaker[Session], tmp_path: Path, data: bytes
) -> None:
    file = tmp_path / "recipients.csv"
    file.write_bytes(data)
    readable = read(data)
    before = batch_ids(sessions)

    try:
        # Examples repeat (shrinking replays them): each is a batch of its own here.
        report = batches.create(
            file, template=TEMPLATE, sign="腾讯云", params=SHARED, allow_duplicate=True
        )
    except BatchInputError as error:
        event(refusal_kind(error))
        fits = readable is not None and header_usable(readable.header, shared_params=True)
        assert not fits, f"a readable file with a usable header was refused: {error}"
        assert_refused_cleanly(sessions, before, error)
        return
    event("imported")
    assert readable is not None, "a file that is not UTF-8 CSV was imported"
    assert header_usable(readable.header, shared_params=True)

    rejections = assert_accounted_for(sessions, readable, report, before)
    verdicts = expected_verdicts(readable)
    assert {r.line_no: r.reason for r in rejections} == {
        line_no: reason for line_no, reason in verdicts.items() if reason is not None
    }
    with sessions() as session:
        messages = list(
            session.scalars(select(SmsMessage).where(SmsMessage.batch_id == report.batch_id))
        )
    assert len(messages) == report.accepted == sum(v is None for v in verdicts.values())
    for message in messages:
        assert (message.kind, message.tpl_id, message.params) == (MARKETING, TEMPLATE, SHARED)


PARAM_HEADERS = st.sampled_from(
    [
        ["mobile", "param1", "param2"],
        ["param2", "mobile", "param1", "note"],
        ["mobile", "nationcode", "param1"],
        ["Mobile", " PARAM1 ", "param2", "param3"],
    ]
)


@FUZZ
@given(data=csv_files(PARAM_HEADERS))
@example(data=b"mobile,param1\n+8613700000001,a\x00b\n+8613700000002,\x00\n")
@example(data=b"mobile,param1\n+8613700000001,http://a.cn\n+8613700000002," + b"x" * 13 + b"\n")
def test_params_per_row_every_row_is_accounted_for(
    batches: Batches, sessions: sessionmaker[Session], data: bytes
) -> None:
    readable = read(data)
    before = batch_ids(sessions)
    lines = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8-sig", newline="")

    try:
        report = batches.create(lines, template=TEMPLATE, name="fuzz", allow_duplicate=True)
    except BatchInputError as error:
        event(refusal_kind(error))
        fits = readable is not None and header_usable(readable.header, shared_params=False)
        assert not fits, f"a readable file with a usable header was refused: {error}"
        assert_refused_cleanly(sessions, before, error)
        return
    event("imported")
    assert readable is not None
    assert_accounted_for(sessions, readable, report, before)
    expected = sum(1 for name in readable.header if PARAM_COLUMN.fullmatch(name.strip().lower()))
    with sessions() as session:
        messages = list(
            session.scalars(select(SmsMessage).where(SmsMessage.batch_id == report.batch_id))
        )
    for message in messages:
        assert len(message.params) == expected
        assert all(len(param) <= 12 for param in message.params)


# The command is a thin layer over the import checked above: fewer examples.
@fuzz_with(50)
@given(data=csv_files())
@example(data=b"mobile\n+8613700000001\n\xff\n")
@example(data=b"phone\n+8613700000001\n")
def test_the_command_exits_0_or_2_never_a_traceback(
    settings: Settings, sessions: sessionmaker[Session], tmp_path: Path, data: bytes
) -> None:
    file = tmp_path / "list.csv"
    file.write_bytes(data)
    before = batch_ids(sessions)
    args = ["batch", "create", str(file), "--template", str(TEMPLATE), "--allow-duplicate"]
    # Exactly this ledger's variables, as settings_under gives the other tests.
    environment = {name: None for name in os.environ if name.startswith("SMS_")}
    runner = CliRunner(
        env={**environment, "SMS_DATABASE_URL": settings.database_url,
             "SMS_SDKAPPID": SDKAPPID, "SMS_APPKEY": APPKEY}
    )  # fmt: skip

    result = runner.invoke(main, [*args, "--param", SHARED[0], "--param", SHARED[1]])

    assert result.exit_code in (0, 2), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    readable = read(data)
    usable = readable is not None and header_usable(readable.header, shared_params=True)
    assert result.exit_code == (0 if usable else 2), result.output
    new = batch_ids(sessions) - before
    if result.exit_code == 2:
        event("refused")
        assert "sms-worker batch" in result.output
        assert new == set()
        return
    event("imported")
    (batch_id,) = new
    with sessions() as session:
        batch = session.get(SmsBatch, batch_id)
        assert batch is not None
    summary = f"{batch.total_rows} rows, {batch.accepted} accepted, {batch.rejected} rejected"
    assert summary in " ".join(result.output.split())
    assert readable is not None and batch.total_rows == len(readable.records)
    assert batch.total_rows == batch.accepted + batch.rejected
