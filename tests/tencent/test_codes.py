"""The result-code table against DESIGN 2.4, written out here independently of RESULT_CODES."""

from __future__ import annotations

import pytest

from worker.tencent.codes import Outcome, classify_http_status, classify_result, code_info

T, RL, P = Outcome.TRANSIENT, Outcome.THROTTLED, Outcome.REJECTED

# code -> class, copied from the table in DESIGN.md section 2.4 (on its own, without history;
# the send policy's caps on transient codes are tested in tests/services/sending/test_policy.py).
DESIGN_TABLE = {
    0: Outcome.OK,
    1001: P, 1002: P, 1003: P, 1004: P, 1006: P,
    1007: T, 1008: T,
    1009: P, 1011: P, 1012: P,
    1013: RL,
    1014: P, 1015: P, 1016: P, 1017: P, 1019: P, 1020: P,
    1021: T,
    1022: RL, 1023: RL, 1024: RL, 1025: RL, 1026: RL, 1029: RL,
    1030: P, 1031: P, 1032: P, 1033: P, 1034: P, 1036: P, 1038: P, 1045: P, 1046: P,
    1047: RL,
    1048: P,
    60008: T,
}  # fmt: skip


@pytest.mark.parametrize(("code", "outcome"), sorted(DESIGN_TABLE.items()))
def test_documented_code_maps_to_its_class(code: int, outcome: Outcome) -> None:
    assert classify_result(code) is outcome
    assert code_info(code).code == code


@pytest.mark.parametrize("code", [1001, 1009, 1019, 1020])
def test_configuration_codes_are_flagged(code: int) -> None:
    assert code_info(code).configuration


@pytest.mark.parametrize("code", [1031, 1033])
def test_account_codes_pause_the_account(code: int) -> None:
    assert code_info(code).pauses_account


def test_throttles_say_how_long_to_wait() -> None:
    assert (code_info(1023).wait_seconds or 0) >= 30
    assert (code_info(1024).wait_seconds or 0) >= 3600
    for code in (1022, 1025, 1029):
        assert code_info(code).wait is not None


@pytest.mark.parametrize("code", [-1, 1, 999, 1005, 1018, 1027, 1099, 59999, 70000])
def test_unknown_code_is_rejected(code: int) -> None:
    assert classify_result(code) is P


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (429, RL),
        (400, P), (401, P), (403, P), (404, P), (413, P), (499, P),
        (500, T), (502, T), (503, T), (504, T), (599, T),
        (204, T), (301, T),
    ],
)  # fmt: skip
def test_http_status_classes(status: int, outcome: Outcome) -> None:
    assert classify_http_status(status) is outcome
