"""What a batch is asked to be: its options checked, and its columns found in the header.

Both are checked before anything is written. The header's names are compared stripped and in
any case; a name given twice is refused (which of two ``mobile`` columns is meant cannot be
guessed), unnamed columns are ignored.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from worker.config import ConfigError, Settings
from worker.ledger.types import MAX_INTEGER, text_problem
from worker.services.batch_types import BatchInputError, BatchSpec
from worker.services.csv_lines import shown
from worker.tencent import InvalidInput, check_params, sign_text

MAX_NAME_LENGTH = 128
# ASCII digits, and few: "param١" is not param1, and int() of thousands of digits raises.
PARAM_COLUMN = re.compile(r"param([0-9]{1,6})")
MAX_SIGN_LENGTH = 64  # sms_batches.sign and sms_messages.sign


@dataclass(frozen=True, slots=True)
class Columns:
    """Where a row's values are."""

    mobile: int
    nationcode: int | None
    params: tuple[int, ...]
    expected: int  # params per recipient
    width: int  # fields in the header


def check_spec(spec: BatchSpec, settings: Settings) -> None:
    if not spec.name.strip() or len(spec.name) > MAX_NAME_LENGTH:
        raise BatchInputError(f"name: must be 1..{MAX_NAME_LENGTH} characters")
    for option, value, limit in (("name", spec.name, None), ("sign", spec.sign, MAX_SIGN_LENGTH)):
        problem = text_problem(value, limit) if value is not None else None
        if problem is not None:
            raise BatchInputError(f"{option}: {problem}")
    if spec.sign:  # stored as given: one written with its 【】 is refused with the text to give
        try:
            text = sign_text(spec.sign)
        except InvalidInput as error:
            raise BatchInputError(f"sign: {error.problem}") from None
        if text != spec.sign:
            raise BatchInputError(f"sign: give the sign's text without 【】: {text!r}")
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
            check_params(spec.params, verification=False, sign=spec.sign)
        except InvalidInput as error:
            raise BatchInputError(f"param: {error.problem}") from None
        if spec.params_from:
            raise BatchInputError("give shared params or params_from columns, not both")
        if spec.param_count is not None and spec.param_count != len(spec.params):
            raise BatchInputError(
                f"param: {len(spec.params)} given, the template takes {spec.param_count}"
            )


def find_columns(header: Sequence[str], spec: BatchSpec) -> Columns:
    """Where the mobile, nationcode and params are in each row, from the header."""
    names = [name.strip().lower() for name in header]
    _refuse_repeated_names(header, names)
    if "mobile" not in names:
        raise BatchInputError(
            f"the header has no mobile column (it has: {shown(', '.join(header))})"
        )
    if spec.params_from:
        missing = [name for name in spec.params_from if name.strip().lower() not in names]
        if missing:
            raise BatchInputError(
                f"params_from: no column {shown(', '.join(missing))} in the header"
            )
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
    return Columns(names.index("mobile"), nationcode, params, expected, len(names))


def _refuse_repeated_names(header: Sequence[str], names: Sequence[str]) -> None:
    """Which of two ``mobile`` (or ``param1``) columns is meant cannot be guessed. Unnamed
    columns are ignored, so several of them are no repetition."""
    seen: dict[str, int] = {}
    for column, name in enumerate(names, start=1):
        if not name:
            continue
        if name in seen:
            raise BatchInputError(
                f"the header names the column {shown(header[column - 1].strip())!r} twice "
                f"(columns {seen[name]} and {column}); give each column its own name"
            )
        seen[name] = column
