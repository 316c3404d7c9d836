"""Import a batch's recipients from CSV, streaming, so a file of a million rows fits in memory.

The file (UTF-8, a header row first; blank lines are skipped; ``csv_lines`` has the rules for
lines, quotes and sizes, and each row is one physical line):

- ``mobile``: the number, E.164 (``+8613788888888``), or national with a ``nationcode`` column;
- ``nationcode`` (optional): the country calling code of a national ``mobile``;
- the template's params, when each recipient has their own: columns ``param1``..``paramN``, or
  the columns named by ``params_from`` in the order of ``{1}``, ``{2}``, ... Other columns are
  ignored. With shared params (``params``) the file needs no param columns.

A header naming a column twice is refused, as is a header without rows. Rows are read in chunks
of ``CHUNK_ROWS``; each chunk is validated (the line itself, number, param count and values,
duplicates, opt-outs), written and counted, so memory stays bounded and a running import shows
its progress. The whole batch is one transaction, committed once every row is in. Duplicates
within a chunk are caught by a set of that chunk's numbers, across chunks by the unique index of
the ledger on (batch, nationcode, mobile): no set of every number of the file is kept. Every row
ends as a message or as a rejection with its line number and reason, and the importer checks
``accepted + rejected == rows`` at the end. Messages quote at most 200 characters of input.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from worker.config import Settings
from worker.ledger import batch_rows, batches
from worker.ledger.optouts import opted_out
from worker.ledger.schema.batches import (
    BAD_NUMBER,
    BAD_PARAM,
    DUPLICATE,
    MALFORMED,
    OPTED_OUT,
    WRONG_PARAM_COUNT,
)
from worker.ledger.status import MARKETING, QUEUED, BatchStatus
from worker.services.batch_keys import (
    check_key,
    earlier_creation,
    input_fingerprint,
    refuse_duplicate,
)
from worker.services.batch_options import PARAM_COLUMN, Columns, check_spec, find_columns
from worker.services.batch_types import (
    BatchInputError,
    BatchSpec,
    ImportProgress,
    ImportReport,
    Rejected,
)
from worker.services.csv_lines import (
    SHOWN_CHARACTERS,
    Line,
    MalformedRow,
    NotUtf8,
    Source,
    binary_source,
    cells,
    is_blank,
    physical_lines,
    shown,
)
from worker.tencent import InvalidInput, check_params, parse_phone

__all__ = [
    "CHUNK_ROWS",
    "PARAM_COLUMN",
    "BatchInputError",
    "BatchSpec",
    "ImportProgress",
    "ImportReport",
    "Rejected",
    "import_batch",
    "params_key",
]

CHUNK_ROWS = 5000
# Characters of one value quoted in a rejection's detail.
QUOTED_CHARACTERS = 40


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
    source: Source,
    spec: BatchSpec,
    *,
    key: str | None = None,
    allow_duplicate: bool = False,
    progress: Callable[[ImportProgress], None] | None = None,
    chunk_rows: int = CHUNK_ROWS,
    keep_rejections: int = 10,
) -> ImportReport:
    """Create a batch from the CSV file ``source`` (a path, a binary file, or lines: see
    ``csv_lines.binary_source``). See ``batch_keys`` for ``key`` and ``allow_duplicate``.

    Raises ``BatchInputError`` when the options, the header or the file are unusable, and for a
    repeated creation. The batch and all its rows are written in one transaction: a refusal, a
    failure or a crash midway leaves nothing behind, and a rerun starts afresh.
    """
    check_spec(spec, settings)
    check_key(key)
    with binary_source(source) as stream:
        fingerprint = input_fingerprint(stream, spec)
        lines = _lines(stream)
        columns = find_columns(_header(lines), spec)
        with sessions() as session:
            try:
                batch_id = _insert(session, spec, key, fingerprint)
            except IntegrityError:
                # The key made a batch before, or another create with it has just committed.
                session.rollback()
                earlier = None
                if key is not None:
                    earlier = earlier_creation(
                        session, spec.account, key, fingerprint, keep_rejections
                    )
                if earlier is None:
                    raise
                return earlier
            if key is None and not allow_duplicate:
                refuse_duplicate(session, spec.account, fingerprint, settings.now(), batch_id)
            report = _fill(
                session, settings, batch_id, lines, columns, spec, progress=progress,
                chunk_rows=chunk_rows, keep_rejections=keep_rejections,
            )  # fmt: skip
            session.commit()
        return report


def _insert(session: Session, spec: BatchSpec, key: str | None, fingerprint: str) -> uuid.UUID:
    """The new batch, ``importing``. The transaction starts with this write: on SQLite it takes
    the database before any read."""
    batch = batches.insert_batch(
        session, name=spec.name, account=spec.account, tpl_id=spec.tpl_id, sign=spec.sign,
        params=list(spec.params) if spec.params is not None else None, status=BatchStatus.IMPORTING,
        start_at=spec.start_at, window_end_at=spec.window_end_at, idempotency_key=key,
        fingerprint=fingerprint,
    )  # fmt: skip
    return batch.id


def _fill(
    session: Session,
    settings: Settings,
    batch_id: uuid.UUID,
    lines: Iterator[Line],
    columns: Columns,
    spec: BatchSpec,
    *,
    progress: Callable[[ImportProgress], None] | None,
    chunk_rows: int,
    keep_rejections: int,
) -> ImportReport:
    """Every data line into the batch, chunk by chunk; then the batch is ``scheduled``. Does not
    commit."""
    totals = ImportProgress(0, 0, 0)
    first: list[Rejected] = []
    chunk = _Chunk(batch_id)
    for line in lines:
        _take(chunk, line, columns, spec)
        if chunk.rows >= chunk_rows:
            totals = _write(session, chunk, totals, first, keep_rejections)
            chunk = _Chunk(batch_id)
            if progress is not None:
                progress(totals)
    totals = _write(session, chunk, totals, first, keep_rejections)
    if progress is not None:
        progress(totals)
    if not totals.rows:
        raise BatchInputError("the file has a header and no rows; nothing to send")
    if totals.accepted + totals.rejected != totals.rows:
        raise RuntimeError(f"import of batch {batch_id} lost track of rows: {totals}")
    batches.move_batch(
        session,
        batch_id,
        BatchStatus.SCHEDULED,
        from_statuses=(BatchStatus.IMPORTING,),
        now=settings.now(),
    )
    reasons = batch_rows.rejection_counts(session, batch_id)
    return ImportReport(batch_id, totals.rows, totals.accepted, totals.rejected, reasons, first)


def _lines(source: BinaryIO) -> Iterator[Line]:
    """The file's lines; one that is not UTF-8 refuses the whole file, naming it."""
    try:
        yield from physical_lines(source)
    except NotUtf8 as error:
        raise BatchInputError(
            f'{error}: the file must be UTF-8. Save it as "CSV UTF-8", or convert it, e.g. '
            "iconv -f GBK -t UTF-8 list.csv > list-utf8.csv (GBK: Excel's usual Chinese export)"
        ) from None


def _header(lines: Iterator[Line]) -> list[str]:
    """The first line that is not blank, as the header's names."""
    for line in lines:
        try:
            names = cells(line)
        except MalformedRow as error:
            raise BatchInputError(f"line {line.number}, the header: {error}") from None
        if not is_blank(names):
            return names
    raise BatchInputError("the file is empty; expected a header row with a mobile column")


def params_key(params: Sequence[str]) -> str:
    """Equal for equal params: the dispatcher groups messages by it."""
    text = json.dumps(list(params), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


def _take(chunk: _Chunk, line: Line, columns: Columns, spec: BatchSpec) -> None:
    """Validate one line into the chunk: a message to insert, a rejection, or nothing for a
    blank line."""
    line_no, raw = line.number, line.shown  # raw: kept for people to find the row
    try:
        row = cells(line)
    except MalformedRow as error:
        chunk.rows += 1
        chunk.rejected.append(Rejected(line_no, MALFORMED, str(error), raw))
        return
    if is_blank(row):
        return
    chunk.rows += 1

    def reject(reason: str, detail: str, *quoted: str) -> None:
        chunk.rejected.append(Rejected(line_no, reason, _quoting_little(detail, quoted), raw))

    def cell(index: int | None) -> str:
        return row[index].strip() if index is not None and index < len(row) else ""

    mobile, nationcode = cell(columns.mobile), cell(columns.nationcode)
    try:
        phone = parse_phone(mobile, nationcode or None)
    except InvalidInput as error:
        return reject(BAD_NUMBER, error.problem, mobile, nationcode)
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
            check_params(params, verification=False, sign=spec.sign)
        except InvalidInput as error:
            position = re.search(r"\d+", error.field)  # params[0] is {1}
            which = f"param {int(position.group()) + 1}" if position else "param"
            return reject(BAD_PARAM, f"{which}: {error.problem}", *params)
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


def _quoting_little(detail: str, values: Iterable[str]) -> str:
    """``detail`` with each long value it quotes cut to ``QUOTED_CHARACTERS``; never more than
    ``SHOWN_CHARACTERS`` in all, so a cell of 60,000 characters is not repeated back."""
    for value in values:
        if len(value) > QUOTED_CHARACTERS:
            detail = detail.replace(repr(value), repr(value[:QUOTED_CHARACTERS]) + "...")
    return shown(detail, SHOWN_CHARACTERS)


def _write(
    session: Session,
    chunk: _Chunk,
    totals: ImportProgress,
    first: list[Rejected],
    keep: int,
) -> ImportProgress:
    """Opt-outs, then the insert (the unique index turns away numbers of earlier chunks).
    Does not commit."""
    if not chunk.rows:
        return totals
    rejected = list(chunk.rejected)
    opted = opted_out(session, chunk.numbers)
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
    first.extend(rejected[: max(0, keep - len(first))])
    return ImportProgress(
        totals.rows + chunk.rows,
        totals.accepted + len(created),
        totals.rejected + len(rejected),
    )
