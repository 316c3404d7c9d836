"""Import a batch's recipients from CSV, streaming, so a file of a million rows fits in memory.

The file (UTF-8, a header row first; blank lines are skipped):

- ``mobile``: the number, E.164 (``+8613788888888``), or national with a ``nationcode`` column;
- ``nationcode`` (optional): the country calling code of a national ``mobile``;
- the template's params, when each recipient has their own: columns ``param1``..``paramN``, or
  the columns named by ``params_from`` in the order of ``{1}``, ``{2}``, ... Other columns are
  ignored. With shared params (``params``) the file needs no param columns.

Rows are read in chunks of ``CHUNK_ROWS``; each chunk is validated (number, param count and
values, duplicates, opt-outs), written in one transaction and counted, so memory stays bounded
and a running import shows its progress. Duplicates within a chunk are caught by a set of that
chunk's numbers, across chunks by the unique index of the ledger on (batch, nationcode, mobile):
no set of every number of the file is kept. Every row ends as a message or as a rejection with
its line number and reason, and the importer checks ``accepted + rejected == rows`` at the end.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from worker.config import ConfigError, Settings
from worker.ledger import batch_rows, batches
from worker.ledger.batch_models import (
    BAD_NUMBER,
    BAD_PARAM,
    CANCELLED,
    DUPLICATE,
    IMPORTING,
    OPTED_OUT,
    RAW_TEXT_LIMIT,
    SCHEDULED,
    WRONG_PARAM_COUNT,
)
from worker.ledger.optouts import opted_out
from worker.ledger.status import MARKETING, QUEUED
from worker.ledger.types import MAX_INTEGER, text_problem
from worker.tencent import InvalidInput, check_params, parse_phone

CHUNK_ROWS = 5000
MAX_NAME_LENGTH = 128
# ASCII digits, and few: "param١" is not param1, and int() of thousands of digits raises.
PARAM_COLUMN = re.compile(r"param([0-9]{1,6})")
MAX_SIGN_LENGTH = 64  # sms_batches.sign and sms_messages.sign


class BatchInputError(ValueError):
    """The input cannot make a batch at all: bad options, or a file without a usable header."""


@dataclass(frozen=True, slots=True)
class BatchSpec:
    """What every message of the batch shares."""

    name: str
    account: str
    tpl_id: int
    sign: str | None
    start_at: datetime
    window_end_at: datetime
    params: tuple[str, ...] | None = None  # shared by all; None: from the file's columns
    params_from: tuple[str, ...] | None = None  # the file's columns holding {1}, {2}, ...
    param_count: int | None = None  # the template's, when known; else the file's columns


@dataclass(frozen=True, slots=True)
class ImportProgress:
    rows: int
    accepted: int
    rejected: int


@dataclass(frozen=True, slots=True)
class Rejected:
    line_no: int
    reason: str
    detail: str
    raw: str


@dataclass(frozen=True, slots=True)
class ImportReport:
    batch_id: uuid.UUID
    rows: int
    accepted: int
    rejected: int
    reasons: dict[str, int]  # rejected rows by reason
    first_rejections: list[Rejected]  # the first few, in file order


@dataclass(frozen=True, slots=True)
class _Columns:
    mobile: int
    nationcode: int | None
    params: tuple[int, ...]
    expected: int  # params per recipient
    width: int  # fields in the header


@dataclass
class _Chunk:
    """One chunk's rows, validated as far as can be without the database."""

    batch_id: uuid.UUID
    messages: list[dict[str, Any]] = field(default_factory=list)
    lines: dict[uuid.UUID, tuple[int, str]] = field(default_factory=dict)  # id -> line, raw
    rejected: list[Rejected] = field(default_factory=list)
    numbers: set[tuple[str, str]] = field(default_factory=set)
    rows: int = 0


def import_batch(
    sessions: sessionmaker[Session],
    settings: Settings,
    lines: Iterable[str],
    spec: BatchSpec,
    *,
    progress: Callable[[ImportProgress], None] | None = None,
    chunk_rows: int = CHUNK_ROWS,
    keep_rejections: int = 10,
) -> ImportReport:
    """Create a batch from CSV ``lines`` (a text file opened with ``newline=""`` will do).

    Raises ``BatchInputError`` before anything is written when the options or the header are
    unusable. A failure (or an interrupt) midway cancels the batch and its messages.
    """
    _check_spec(spec, settings)
    records = _records(lines)
    header = next(records, None)
    if header is None:
        raise BatchInputError("the file is empty; expected a header row with a mobile column")
    columns = _columns(header[1], spec)
    with sessions() as session:
        batch = batches.insert_batch(
            session, name=spec.name, account=spec.account, tpl_id=spec.tpl_id, sign=spec.sign,
            params=list(spec.params) if spec.params is not None else None, status=IMPORTING,
            start_at=spec.start_at, window_end_at=spec.window_end_at,
        )  # fmt: skip
        batch_id = batch.id
        session.commit()
    totals = ImportProgress(0, 0, 0)
    first: list[Rejected] = []
    try:
        chunk = _Chunk(batch_id)
        for line_no, row in records:
            _take(chunk, row, line_no, columns, spec)
            if chunk.rows >= chunk_rows:
                totals = _write(sessions, chunk, totals, first, keep_rejections)
                chunk = _Chunk(batch_id)
                if progress is not None:
                    progress(totals)
        totals = _write(sessions, chunk, totals, first, keep_rejections)
        if progress is not None:
            progress(totals)
        if totals.accepted + totals.rejected != totals.rows:
            raise RuntimeError(f"import of batch {batch_id} lost track of rows: {totals}")
        with sessions() as session:
            batches.move_batch(
                session, batch_id, SCHEDULED, from_statuses=(IMPORTING,), now=settings.now()
            )
            reasons = batch_rows.rejection_counts(session, batch_id)
            session.commit()
    except BaseException:
        with sessions() as session:
            now = settings.now()
            batches.move_batch(session, batch_id, CANCELLED, from_statuses=(IMPORTING,), now=now)
            batches.cancel_queued(session, batch_id=batch_id, reason="its import did not finish")
            session.commit()
        raise
    return ImportReport(batch_id, totals.rows, totals.accepted, totals.rejected, reasons, first)


def _records(lines: Iterable[str]) -> Iterator[tuple[int, list[str]]]:
    """Each record that is not blank, with the line it starts on; a file the CSV reader cannot
    read raises BatchInputError naming the line."""
    reader = csv.reader(lines)
    line_no = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            raise BatchInputError(f"line {reader.line_num}: {error}") from None
        except UnicodeDecodeError:
            # Lines are decoded a block ahead of the reader: the place is "after", not "on".
            raise BatchInputError(
                f"the file is not UTF-8 text (after line {reader.line_num})"
            ) from None
        start, line_no = line_no + 1, reader.line_num
        if any(value.strip() for value in row):
            yield start, row


def params_key(params: Sequence[str]) -> str:
    """Equal for equal params: the dispatcher groups messages by it."""
    text = json.dumps(list(params), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


def _check_spec(spec: BatchSpec, settings: Settings) -> None:
    if not spec.name.strip() or len(spec.name) > MAX_NAME_LENGTH:
        raise BatchInputError(f"name: must be 1..{MAX_NAME_LENGTH} characters")
    for option, value, limit in (("name", spec.name, None), ("sign", spec.sign, MAX_SIGN_LENGTH)):
        problem = text_problem(value, limit) if value is not None else None
        if problem is not None:
            raise BatchInputError(f"{option}: {problem}")
    try:
        settings.account(spec.account)
    except ConfigError as error:
        raise BatchInputError(f"account: {error}") from None
    tpl_id: object = spec.tpl_id
    if isinstance(tpl_id, bool) or not isinstance(tpl_id, int) or not 0 < tpl_id <= MAX_INTEGER:
        raise BatchInputError(f"template: must be a template id from 1 to {MAX_INTEGER}")
    if spec.param_count is not None and spec.param_count < 0:
        raise BatchInputError("param count: must not be negative")
    for name, moment in (("start", spec.start_at), ("window end", spec.window_end_at)):
        if moment.tzinfo is None:
            raise BatchInputError(f"{name}: must be a timezone-aware time")
    if spec.window_end_at <= spec.start_at:
        raise BatchInputError("window end: must be after the start")
    if spec.window_end_at <= settings.now():
        raise BatchInputError("window end: is already in the past")
    if spec.params is not None:
        try:
            check_params(spec.params, verification=False)
        except InvalidInput as error:
            raise BatchInputError(f"param: {error.problem}") from None
        if spec.params_from:
            raise BatchInputError("give shared params or params_from columns, not both")
        if spec.param_count is not None and spec.param_count != len(spec.params):
            raise BatchInputError(
                f"param: {len(spec.params)} given, the template takes {spec.param_count}"
            )


def _columns(header: Sequence[str], spec: BatchSpec) -> _Columns:
    """Where the mobile, nationcode and params are in each row, from the header."""
    names = [name.strip().lower() for name in header]
    if "mobile" not in names:
        raise BatchInputError(f"the header has no mobile column (it has: {', '.join(header)})")
    if spec.params_from:
        missing = [name for name in spec.params_from if name.strip().lower() not in names]
        if missing:
            raise BatchInputError(f"params_from: no column {', '.join(missing)} in the header")
        params = tuple(names.index(name.strip().lower()) for name in spec.params_from)
    else:
        numbered = {
            int(match.group(1)): index
            for index, name in enumerate(names)
            if (match := PARAM_COLUMN.fullmatch(name))
        }
        if sorted(numbered) != list(range(1, len(numbered) + 1)):
            raise BatchInputError("param columns must be param1, param2, ... without gaps")
        params = tuple(numbered[number] for number in sorted(numbered))
    if spec.params is not None:
        if params:
            raise BatchInputError("the file has param columns and shared params were given")
        expected = len(spec.params)
    else:
        expected = spec.param_count if spec.param_count is not None else len(params)
        if expected > len(params):
            raise BatchInputError(
                f"the template takes {expected} params; the file has {len(params)} param columns"
            )
    nationcode = names.index("nationcode") if "nationcode" in names else None
    return _Columns(names.index("mobile"), nationcode, params, expected, len(names))


def _take(chunk: _Chunk, row: list[str], line_no: int, columns: _Columns, spec: BatchSpec) -> None:
    """Validate one row into the chunk: a message to insert, or a rejection."""
    chunk.rows += 1
    # Kept for people to find the row; a NUL (which PostgreSQL refuses) is shown, not stored.
    raw = ",".join(row)[:RAW_TEXT_LIMIT].replace("\x00", "\\x00")

    def reject(reason: str, detail: str) -> None:
        chunk.rejected.append(Rejected(line_no, reason, detail, raw))

    def cell(index: int | None) -> str:
        return row[index].strip() if index is not None and index < len(row) else ""

    try:
        phone = parse_phone(cell(columns.mobile), cell(columns.nationcode) or None)
    except InvalidInput as error:
        return reject(BAD_NUMBER, error.problem)
    if spec.params is not None:
        params = list(spec.params)
    else:
        if len(row) > columns.width:
            detail = f"{len(row)} fields, the header has {columns.width} (quote values with commas)"
            return reject(WRONG_PARAM_COUNT, detail)
        params = [cell(index) for index in columns.params]
        while params and not params[-1]:
            params.pop()
        if len(params) != columns.expected:
            return reject(
                WRONG_PARAM_COUNT, f"expected {columns.expected} params, got {len(params)}"
            )
        try:
            check_params(params, verification=False)
        except InvalidInput as error:
            position = re.search(r"\d+", error.field)  # params[0] is {1}
            which = f"param {int(position.group()) + 1}" if position else "param"
            return reject(BAD_PARAM, f"{which}: {error.problem}")
    number = (phone.nationcode, phone.mobile)
    if number in chunk.numbers:
        return reject(DUPLICATE, f"{phone.e164} appears earlier in the file")
    chunk.numbers.add(number)
    message_id = uuid.uuid4()
    chunk.lines[message_id] = (line_no, raw)
    chunk.messages.append(
        {
            "id": message_id,
            "account": spec.account,
            "kind": MARKETING,
            "nationcode": phone.nationcode,
            "mobile": phone.mobile,
            "tpl_id": spec.tpl_id,
            "params": params,
            "params_key": params_key(params),
            "sign": spec.sign,
            "ext": "",
            "extend": "",
            "status": QUEUED,
            "batch_id": chunk.batch_id,
            "not_before": spec.start_at,
            "expires_at": spec.window_end_at,
        }
    )


def _write(
    sessions: sessionmaker[Session],
    chunk: _Chunk,
    totals: ImportProgress,
    first: list[Rejected],
    keep: int,
) -> ImportProgress:
    """Opt-outs, then the insert (the unique index turns away numbers of earlier chunks)."""
    if not chunk.rows:
        return totals
    rejected = list(chunk.rejected)
    with sessions() as session:
        opted = opted_out(session, chunk.numbers)
        session.commit()  # a read ends here: on SQLite the writes below start their own
        keep_rows = []
        for message in chunk.messages:
            if (message["nationcode"], message["mobile"]) in opted:
                line_no, raw = chunk.lines[message["id"]]
                rejected.append(Rejected(line_no, OPTED_OUT, "the number opted out", raw))
            else:
                keep_rows.append(message)
        created = batch_rows.insert_batch_messages(session, keep_rows)
        for message in keep_rows:
            if message["id"] not in created:
                line_no, raw = chunk.lines[message["id"]]
                e164 = f"+{message['nationcode']}{message['mobile']}"
                rejected.append(Rejected(line_no, DUPLICATE, f"{e164} appears earlier", raw))
        rejected.sort(key=lambda item: item.line_no)
        batch_rows.insert_rejections(
            session,
            [
                {"batch_id": chunk.batch_id, "line_no": r.line_no, "reason": r.reason,
                 "detail": r.detail, "raw": r.raw}
                for r in rejected
            ],
        )  # fmt: skip
        batch_rows.count_import(
            session, chunk.batch_id, rows=chunk.rows, accepted=len(created), rejected=len(rejected)
        )
        session.commit()
    first.extend(rejected[: max(0, keep - len(first))])
    return ImportProgress(
        totals.rows + chunk.rows,
        totals.accepted + len(created),
        totals.rejected + len(rejected),
    )
