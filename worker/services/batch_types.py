"""What a batch import takes and gives back, shared by the importer and its key checks."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime


class BatchInputError(ValueError):
    """The input cannot make a batch at all: bad options, a file without a usable header or
    without rows, a file that is not UTF-8, or a repeated creation."""


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
    # False: the key named a batch created before, and this is its report; nothing was written.
    created: bool = True
