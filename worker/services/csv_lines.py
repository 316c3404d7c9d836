"""A batch file read as CSV one physical line at a time, in bounded memory.

The rules, strict so that one bad line costs one row and never the rows after it:

- a row is one physical line, ended by ``\\n``, ``\\r\\n`` or ``\\r``; a quoted field may not
  span lines (a line whose quote is still open at its end is a malformed row, and the line
  after it is read as a row of its own);
- a line longer than ``MAX_LINE_BYTES`` is a malformed row; its bytes are read in chunks and
  skipped up to the next line end, never held whole;
- a row of more than ``MAX_FIELDS`` fields, one with a quote out of place (inside an unquoted
  field, or text after a closing quote: a field that holds a quote is quoted whole, its quotes
  doubled), or one with a NUL character or a lone surrogate in any field is a malformed row;
- the file is UTF-8, one byte order mark at its start is dropped (Excel writes one); a byte
  that is not UTF-8 anywhere ends the reading with ``NotUtf8`` naming its line.

Memory: a read holds at most ``MAX_LINE_BYTES`` plus one read of ``READ_BYTES``, whatever the
file holds.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO, cast

MAX_LINE_BYTES = 64 * 1024
MAX_FIELDS = 1000
READ_BYTES = 64 * 1024
# Of any input quoted in a message or kept with a rejected row.
SHOWN_CHARACTERS = 200
_SHOWN_BYTES = SHOWN_CHARACTERS * 4  # enough bytes for that many characters of UTF-8
_BOM = codecs.BOM_UTF8
_LINE_END = re.compile(rb"\r\n|\r|\n")
# Encoded surrogates (b"\xed\xa0\x80") decode to a lone surrogate, which then rejects its row:
# a row's problem, not the file's encoding.
_ERRORS = "surrogatepass"
_SURROGATE = re.compile("[\ud800-\udfff]")
_UNPRINTABLE = re.compile("[\x00\ud800-\udfff]")
# One line of RFC 4180 fields: each unquoted and without a quote, or quoted whole with its
# quotes doubled, nothing before the opening quote or after the closing one.
_FIELD = r'(?:"[^"]*(?:""[^"]*)*"|[^",]*)'
_QUOTED_ROW = re.compile(f"{_FIELD}(?:,{_FIELD})*")

# A CSV file's path, the file opened in binary, or its lines as strings.
Source = str | os.PathLike[str] | BinaryIO | Iterable[str]


class NotUtf8(ValueError):
    """A line of the file is not UTF-8 text."""

    def __init__(self, line_no: int) -> None:
        super().__init__(line_no)
        self.line_no = line_no

    def __str__(self) -> str:
        return f"line {self.line_no} is not UTF-8 text"


class MalformedRow(ValueError):
    """A line that is not one CSV row by the rules above; the message says why."""


@dataclass(frozen=True, slots=True)
class Line:
    number: int  # 1 for the file's first line
    text: str | None  # without its line end; None when longer than MAX_LINE_BYTES
    shown: str  # its first characters, safe to store and print (see ``shown``)
    size: int  # in bytes, without the line end


def shown(text: str, limit: int = SHOWN_CHARACTERS) -> str:
    """At most ``limit`` characters of ``text``, with NUL and lone surrogates written as
    escapes: PostgreSQL stores neither, and a terminal shows neither."""
    return _UNPRINTABLE.sub(lambda found: ascii(found.group())[1:-1], text[:limit])


@contextmanager
def binary_source(source: Source) -> Iterator[BinaryIO]:
    """``source`` as a seekable binary file (an import reads it twice). A text file is read
    from its bytes; lines in memory get a line end each."""
    if isinstance(source, str | os.PathLike):
        with open(source, "rb") as file:
            yield file
        return
    if isinstance(source, io.TextIOWrapper):
        source = cast(BinaryIO, source.buffer)
    binary = isinstance(source, io.IOBase) and not isinstance(source, io.TextIOBase)
    if binary and cast(BinaryIO, source).seekable():
        yield cast(BinaryIO, source)
        return
    # Lines in memory, or a pipe: spooled to a temporary file, so memory stays bounded.
    with tempfile.TemporaryFile() as spool:
        if binary:
            while chunk := cast(BinaryIO, source).read(READ_BYTES):
                spool.write(chunk)
        else:
            for line in cast(Iterable[str], source):
                # Lone surrogates pass, to reject their row; a line without an end gets one.
                spool.write(line.encode("utf-8", "surrogatepass"))
                if not line.endswith(("\n", "\r")):
                    spool.write(b"\n")
        spool.seek(0)
        yield spool


def physical_lines(stream: BinaryIO) -> Iterator[Line]:
    """Every line of ``stream`` (a binary file), in order, blank ones included.

    Raises ``NotUtf8`` at the first line holding a byte that is not UTF-8.
    """
    number = 0
    buffer = b""
    skipped: _SkippedLine | None = None  # the line being read past, once it is too long
    start, at_end = True, False
    while not at_end:
        chunk = stream.read(READ_BYTES)
        at_end = not chunk
        buffer += chunk
        if start:
            if len(buffer) < len(_BOM) and not at_end:
                continue
            buffer, start = buffer.removeprefix(_BOM), False
        position = 0
        while found := _LINE_END.search(buffer, position):
            if found.group() == b"\r" and found.end() == len(buffer) and not at_end:
                break  # the next read may bring the \n of a \r\n
            piece, position = buffer[position : found.start()], found.end()
            number += 1
            if skipped is not None:
                skipped.feed(piece)
                yield skipped.line()
                skipped = None
            else:
                yield _line(number, piece)
        buffer = buffer[position:]
        if at_end:
            if skipped is not None:
                skipped.feed(buffer)
                yield skipped.line()
            elif buffer:
                yield _line(number + 1, buffer)
        elif skipped is not None or len(buffer) > MAX_LINE_BYTES:
            if skipped is None:
                skipped = _SkippedLine(number + 1)
            # A final \r stays: it may be the first half of the line's \r\n.
            keep = 1 if buffer.endswith(b"\r") else 0
            skipped.feed(buffer[: len(buffer) - keep])
            buffer = buffer[len(buffer) - keep :]


def _line(number: int, data: bytes) -> Line:
    if len(data) > MAX_LINE_BYTES:
        skipped = _SkippedLine(number)
        skipped.feed(data)
        return skipped.line()
    try:
        text = data.decode("utf-8", _ERRORS)
    except UnicodeDecodeError:
        raise NotUtf8(number) from None
    return Line(number, text, shown(text), len(data))


class _SkippedLine:
    """A line too long to hold: its size, its first characters, and whether it is UTF-8."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.size = 0
        self.head = b""
        self.decoder = codecs.getincrementaldecoder("utf-8")(_ERRORS)

    def feed(self, data: bytes) -> None:
        self.size += len(data)
        if len(self.head) < _SHOWN_BYTES:
            self.head += data[: _SHOWN_BYTES - len(self.head)]
        try:
            self.decoder.decode(data)  # checked, then dropped
        except UnicodeDecodeError:
            raise NotUtf8(self.number) from None

    def line(self) -> Line:
        try:
            self.decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise NotUtf8(self.number) from None
        head = self.head.decode("utf-8", "ignore")  # a character cut at the end is dropped
        return Line(self.number, None, shown(head), self.size)


def cells(line: Line) -> list[str]:
    """The line's fields; ``MalformedRow`` saying why when it is not one CSV row."""
    if line.text is None:
        raise MalformedRow(
            f"the line is {line.size:,} bytes; a row may be at most {MAX_LINE_BYTES:,}"
        )
    text = line.text
    if '"' not in text:
        fields = text.split(",")
    else:
        try:
            fields = next(csv.reader([text], strict=True))
        except csv.Error as error:
            raise MalformedRow(_csv_problem(str(error))) from None
        if not _QUOTED_ROW.fullmatch(text):
            # The reader takes a"b as a field; strictly it is a quote out of place, and the
            # last line of a quoted field that spanned lines looks just like it.
            raise MalformedRow(
                "a quote inside an unquoted field (a field that holds a quote is quoted whole, "
                'each of its quotes doubled: "5"" screen")'
            )
    if len(fields) > MAX_FIELDS:
        raise MalformedRow(f"{len(fields):,} fields; a row may have at most {MAX_FIELDS:,}")
    for index, value in enumerate(fields, start=1):
        if "\x00" in value:
            raise MalformedRow(f"field {index} holds a NUL character")
        if _SURROGATE.search(value):
            raise MalformedRow(f"field {index} holds a lone surrogate, which is not text")
    return fields


def _csv_problem(error: str) -> str:
    if "unexpected end of data" in error:
        return (
            "a quoted field is not closed on this line (each row is one line; "
            "a field may not span lines)"
        )
    if "expected after" in error:
        return 'text follows a closing quote (write a quote inside a quoted field as "")'
    return f"not a CSV row: {error}"


def is_blank(fields: list[str]) -> bool:
    """A line of empty fields (``,,``) is no row, like an empty one."""
    return not any(value.strip() for value in fields)
