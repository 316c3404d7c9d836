"""How commands print what they found: a rich table for people, JSON or CSV for scripts.

Every tabular command takes ``--format`` with the same meanings: ``table`` (the default) is for a
terminal and may change between versions; ``json`` (an array of objects, or one object) and
``csv`` (a header row, then a row per record) are for scripts and stay stable.
"""

from __future__ import annotations

import csv
import json
import sys
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any, TypeVar

import click
from rich.console import Console, RenderableType

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


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=plain))


def echo_csv(records: Iterable[dict[str, Any]], columns: Sequence[str]) -> None:
    writer = csv.DictWriter(
        sys.stdout, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore"
    )
    writer.writeheader()
    writer.writerows({name: csv_cell(record.get(name)) for name in columns} for record in records)


def show(renderable: RenderableType) -> None:
    """A table (or any rich renderable) on stdout, as wide as the terminal."""
    Console().print(renderable)


def emit(
    records: list[dict[str, Any]],
    output_format: str,
    *,
    columns: Sequence[str],
    table: Callable[[], RenderableType],
) -> None:
    """``records`` in ``output_format``; ``table`` builds the view for people only if asked."""
    if output_format == JSON:
        echo_json(records)
    elif output_format == CSV:
        echo_csv(records, columns)
    else:
        show(table())
