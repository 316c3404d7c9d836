"""How commands print what they found: a rich table for people, JSON or CSV for scripts.

Every tabular command takes ``--format`` with the same meanings: ``table`` (the default) is for a
terminal and may change between versions; ``json`` (an array of objects, or one object) and
``csv`` (a header row, then a row per record) are for scripts and stay stable.

What the commands print comes from people (CSV files, names, reasons) and from the gateway
(errmsg), so it is data, never instructions to the terminal or to a spreadsheet:

- for people, data is shown as it is: never read as rich markup (``[/bold]``) or emoji codes,
  and the characters a terminal would act on (ESC and the other control characters, the
  bidirectional overrides) are shown as escapes such as ``\\x1b``; use ``literal``, ``line``,
  ``DataTable`` and ``data_console`` rather than rich's defaults;
- in CSV, a text cell a spreadsheet would run as a formula starts with ``'`` (see
  ``spreadsheet_cell``) unless the command is given ``--raw``;
- JSON is always exact.
"""

from __future__ import annotations

import csv
import json
import re
import sys
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import IO, Any, TypeVar

import click
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

TABLE, JSON, CSV = "table", "json", "csv"
FORMAT_HELP = {
    TABLE: "a table for people",
    JSON: "JSON for scripts",
    CSV: "CSV with a header row",
    "text": "lines for people",
    "jsonl": "one JSON object a line",
}

F = TypeVar("F", bound=Callable[..., Any])


def format_option(*choices: str, default: str | None = TABLE) -> Callable[[F], F]:
    """``--format`` with ``choices`` (the first is the default unless ``default`` says else)."""
    shown = default or choices[0]
    described = "; ".join(f"{name}: {FORMAT_HELP.get(name, name)}" for name in choices)
    return click.option(
        "--format",
        "output_format",
        type=click.Choice(choices),
        default=default,
        help=f"{described}. Default: {shown}.",
    )


RAW_HELP = (
    "CSV cells exactly as stored, for scripts. Without it, a text cell that a spreadsheet would "
    "run as a formula (starting with =, +, -, @, a tab or a carriage return, also after spaces) "
    "is written with a ' before it. E.164 numbers (+8613...) are such cells: opened as they "
    "are, a spreadsheet takes them for a formula and shows 8.6137E+12; with the ' it keeps the "
    "whole number as text. JSON is always exact."
)
raw_option = click.option("--raw", is_flag=True, help=RAW_HELP)


# --- Data for people -------------------------------------------------------------------------

# What a terminal acts on rather than shows: the C0 and C1 controls and DEL (ESC begins colour,
# cursor and window-title sequences; CR and BS overwrite what was printed), the line and
# paragraph separators, and the bidirectional embeddings, overrides and isolates, which reorder
# the text after them.
_ACTED_ON = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _NAMED_ESCAPES.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def visible(text: str) -> str:
    """``text`` as a terminal should show it: each control character as an escape (``\\x1b``,
    ``\\n``), so data can neither colour, move nor hide what is printed, nor break a line."""
    return _ACTED_ON.sub(_escape, text)


def literal(value: object, style: str = "") -> Text:
    """Data for people, shown as it is: never markup nor emoji codes, control characters
    visible (see ``visible``); ``style`` is how the whole of it looks."""
    return Text(visible(value if isinstance(value, str) else str(value)), style=style)


def line(*parts: object) -> Text:
    """One line of words and data: a ``Text`` part keeps its style (build it with ``literal``
    when it holds data); anything else is shown literally."""
    return Text.assemble(*(part if isinstance(part, Text) else literal(part) for part in parts))


def _cell(value: RenderableType | None) -> RenderableType | None:
    if value is None or isinstance(value, Text) or not isinstance(value, str):
        return value  # nothing, styled text built from literal parts, or a nested renderable
    return literal(value)


class DataTable(Table):
    """A rich Table whose text cells and title are data: shown literally, never as markup."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if isinstance(self.title, str):
            self.title = literal(self.title, "table.title")

    def add_row(
        self,
        *renderables: RenderableType | None,
        style: Any = None,
        end_section: bool = False,
    ) -> None:
        super().add_row(*(_cell(r) for r in renderables), style=style, end_section=end_section)


def data_console(*, stderr: bool = False) -> Console:
    """A console for commands' output: a plain string it prints is shown as it is (no markup,
    no emoji codes, no guessed highlighting); styles come from ``Text`` only."""
    return Console(stderr=stderr, markup=False, emoji=False, highlight=False)


def show(renderable: RenderableType) -> None:
    """A table (or any rich renderable) on stdout, as wide as the terminal."""
    data_console().print(renderable)


# --- Data for scripts ------------------------------------------------------------------------


def plain(value: Any) -> Any:
    """A value as JSON holds it: times in ISO 8601, ids and money as text."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    return value


_AS_THEY_ARE = frozenset({str, int, float})


def csv_cell(value: Any) -> Any:
    """A value as a CSV cell: lists and objects as JSON, nothing as an empty cell."""
    # Most cells of an export are plain text and numbers: answered before any isinstance, as
    # an export of millions of rows calls this for every cell.
    if type(value) in _AS_THEY_ARE:
        return value
    if value is None:
        return ""
    value = plain(value)
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    return "" if value is None else value


# OWASP "CSV Injection": a cell starting with one of these is read as a formula by Excel,
# LibreOffice or Google Sheets (a tab or CR is skipped and what follows is read); ASVS 1.2.10
# adds NUL. The signs also count after leading blanks, which an import may trim.
_FORMULA_SIGNS = frozenset("=+-@")
_FORMULA_FIRST = _FORMULA_SIGNS | frozenset("\t\r\0")
_BLANKS = " \t\r\n\0"
_RISKY_FIRST = _FORMULA_FIRST | frozenset(_BLANKS)


def spreadsheet_cell(value: Any) -> Any:
    """``csv_cell``, with ``'`` before a text cell a spreadsheet would run as a formula.

    Only text is changed: a number the ledger counted (a fee, a count, a Decimal cost, even
    below zero) cannot carry a formula, and stays a number finance can add up.
    """
    if not isinstance(value, str):
        return csv_cell(value)  # a number, a time, an id, a list as JSON ([...]): no formula
    # Most text starts with a letter or a digit: one set lookup answers it.
    if value and value[0] in _RISKY_FIRST and _runs_as_formula(value):
        return "'" + value
    return value


def _runs_as_formula(text: str) -> bool:
    return text[0] in _FORMULA_FIRST or text.lstrip(_BLANKS)[:1] in _FORMULA_SIGNS


class CsvWriter:
    """A CSV with a header row, written a record at a time; cells safe to open in a spreadsheet
    (``spreadsheet_cell``) unless ``raw``, then exactly as ``csv_cell`` gives them."""

    def __init__(self, file: IO[str], columns: Sequence[str], *, raw: bool = False) -> None:
        self._columns = list(columns)
        self._cell = csv_cell if raw else spreadsheet_cell
        self._writer = csv.writer(file, lineterminator="\n")
        # Lines end in \n, so csv quotes a cell holding \n but not one holding a lone \r,
        # which every reader takes for the end of the row (and a spreadsheet then reads what
        # follows as a new row's first cell): a row with a \r has every cell quoted.
        self._quoted = csv.writer(file, lineterminator="\n", quoting=csv.QUOTE_ALL)
        self._writer.writerow(self._columns)

    def write(self, record: Mapping[str, Any]) -> None:
        cell = self._cell
        cells = [cell(record.get(name)) for name in self._columns]
        # One join and one search per row: an export writes millions of them.
        if "\r" in "".join([value for value in cells if type(value) is str]):
            self._quoted.writerow(cells)
        else:
            self._writer.writerow(cells)


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=plain))


def echo_csv(
    records: Iterable[Mapping[str, Any]], columns: Sequence[str], *, raw: bool = False
) -> None:
    writer = CsvWriter(sys.stdout, columns, raw=raw)
    for record in records:
        writer.write(record)


def emit(
    records: list[dict[str, Any]],
    output_format: str,
    *,
    columns: Sequence[str],
    table: Callable[[], RenderableType],
    raw: bool = False,
) -> None:
    """``records`` in ``output_format``; ``table`` builds the view for people only if asked;
    ``raw``: CSV cells as stored (see ``CsvWriter``)."""
    if output_format == JSON:
        echo_json(records)
    elif output_format == CSV:
        echo_csv(records, columns, raw=raw)
    else:
        show(table())
