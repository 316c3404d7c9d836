"""The simulator's own fee counting: the rules' boundaries, and properties of the counter."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.simulator.billing import (
    GSM_BASIC,
    GSM_EXTENSION,
    new_sid,
    render_template,
    rendered_message,
    segments,
)


@pytest.mark.parametrize(
    ("length", "fee"),
    [(1, 1), (70, 1), (71, 2), (134, 2), (135, 3), (201, 3), (202, 4), (450, 7)],
)
def test_domestic_boundaries(length: int, fee: int) -> None:
    assert segments("短" * length, domestic=True) == fee
    assert segments("a" * length, domestic=True) == fee  # every character counts 1 at home


@pytest.mark.parametrize(
    ("length", "fee"), [(1, 1), (160, 1), (161, 2), (306, 2), (307, 3), (459, 3), (460, 4)]
)
def test_international_gsm_boundaries(length: int, fee: int) -> None:
    assert segments("a" * length, domestic=False) == fee


@pytest.mark.parametrize(
    ("text", "fee"),
    [
        ("{" * 80, 1),
        ("{" * 80 + "a", 2),
        ("€" * 80, 1),
        ("a" * 159 + "^", 2),
        ("a" * 158 + "|", 1),
        ("[]" * 40, 1),
        ("~\\" * 41, 2),
    ],
)
def test_gsm_extension_characters_count_two(text: str, fee: int) -> None:
    assert segments(text, domestic=False) == fee


@pytest.mark.parametrize(
    ("text", "fee"),
    [
        ("é" * 160, 1),
        ("ç" * 70, 1),
        ("ç" * 71, 2),
        ("a" * 69 + "中", 1),
        ("a" * 70 + "中", 2),
        ("中" * 134, 2),
        ("中" * 135, 3),
        ("a" * 100 + "😀", 2),
    ],
)
def test_international_ucs2_boundaries(text: str, fee: int) -> None:
    # é is in the GSM alphabet; ç (lower case) is not, and one such character makes it UCS-2.
    assert segments(text, domestic=False) == fee


def reference_fee(text: str, domestic: bool) -> int:
    """The rules of DESIGN.md 2.5, written out plainly once more."""
    if domestic:
        n, single, part = len(text), 70, 67
    elif all(c in GSM_BASIC or c in GSM_EXTENSION for c in text):
        n = sum(2 if c in GSM_EXTENSION else 1 for c in text)
        single, part = 160, 153
    else:
        n, single, part = len(text), 70, 67
    return 1 if n <= single else math.ceil(n / part)


gsm_text = st.text(alphabet=sorted(GSM_BASIC | GSM_EXTENSION), max_size=500)
any_text = st.text(max_size=500)


@given(text=gsm_text | any_text, domestic=st.booleans())
def test_fee_matches_the_written_rules(text: str, domestic: bool) -> None:
    assert segments(text, domestic=domestic) == reference_fee(text, domestic)


@given(text=gsm_text | any_text, domestic=st.booleans(), extra=st.characters())
def test_fee_is_at_least_one_and_never_shrinks_as_text_grows(
    text: str, domestic: bool, extra: str
) -> None:
    fee = segments(text, domestic=domestic)
    assert fee >= 1
    if domestic:
        assert segments(text + extra, domestic=True) >= fee


@given(text=any_text)
def test_a_segment_holds_at_most_its_share(text: str) -> None:
    fee = segments(text, domestic=True)
    assert len(text) <= (70 if fee == 1 else 67 * fee)


def test_rendering() -> None:
    assert render_template("{1}为{2}，请于{3}分钟内填写。", ["验证码", "1234", "4"]) == (
        "验证码为1234，请于4分钟内填写。"
    )
    assert render_template("{2}{1}{2}", ["a", "b"]) == "bab"
    assert render_template("no variables", []) == "no variables"
    assert rendered_message("hi", "腾讯云", domestic=True) == "【腾讯云】hi"
    assert rendered_message("hi", "Acme", domestic=False) == "[Acme]hi"
    assert rendered_message("hi", None, domestic=False) == "hi"


def test_sid_shape_and_uniqueness() -> None:
    sids = {new_sid("20240501") for _ in range(10_000)}
    assert len(sids) == 10_000
    assert all(re.fullmatch(r"8:[A-Za-z0-9]{20}20240501", sid) for sid in sids)
