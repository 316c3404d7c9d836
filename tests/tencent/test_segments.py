"""Rendering, billed length and segment counts (DESIGN 2.5), at the boundaries and by property."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.tencent.segments import (
    GSM_BASIC,
    GSM_EXTENSION,
    count_segments,
    is_gsm,
    message_length,
    render,
)

BASIC = sorted(GSM_BASIC)
EXTENSION = "^{}[]~\\|€"  # written out from the design brief, not read from the module
gsm_basic_text = st.text(alphabet=BASIC, max_size=1000)
gsm_text = st.text(alphabet=BASIC + list(EXTENSION), max_size=1000)
any_text = st.text(max_size=1000)


def test_extension_set_is_the_documented_one() -> None:
    assert set(EXTENSION) == GSM_EXTENSION


def test_render_domestic_and_international() -> None:
    assert render("您的验证码是1234", "腾讯云", domestic=True) == "【腾讯云】您的验证码是1234"
    assert render("Your code is 1234", "Acme", domestic=False) == "[Acme]Your code is 1234"
    assert render("【腾讯云】已带签名", None, domestic=True) == "【腾讯云】已带签名"
    assert render("no sign", None, domestic=False) == "no sign"


@pytest.mark.parametrize(
    ("length", "segments"), [(0, 1), (1, 1), (70, 1), (71, 2), (134, 2), (135, 3), (450, 7)]
)
def test_domestic_boundaries(length: int, segments: int) -> None:
    assert count_segments("字" * length, domestic=True) == segments


def test_domestic_counts_gsm_extension_chars_once() -> None:
    assert message_length("{" * 70, domestic=True) == 70
    assert count_segments("{" * 70, domestic=True) == 1


@pytest.mark.parametrize(
    ("length", "segments"), [(1, 1), (160, 1), (161, 2), (306, 2), (307, 3), (459, 3), (460, 4)]
)
def test_gsm_boundaries(length: int, segments: int) -> None:
    assert count_segments("a" * length, domestic=False) == segments


@pytest.mark.parametrize(("length", "segments"), [(70, 1), (71, 2), (134, 2), (135, 3)])
def test_ucs2_boundaries(length: int, segments: int) -> None:
    assert count_segments("é" + "中" * (length - 1), domestic=False) == segments


def test_one_extension_char_flips_a_full_gsm_segment() -> None:
    assert count_segments("a" * 159 + "b", domestic=False) == 1
    assert message_length("a" * 159 + "€", domestic=False) == 161
    assert count_segments("a" * 159 + "€", domestic=False) == 2


def test_one_non_gsm_char_switches_to_ucs2() -> None:
    text = "a" * 100
    assert count_segments(text, domestic=False) == 1
    switched = text[:-1] + "ü"  # ü is in GSM: still one segment
    assert count_segments(switched, domestic=False) == 1
    switched = text[:-1] + "ú"  # ú is not
    assert not is_gsm(switched)
    assert count_segments(switched, domestic=False) == 2


def test_extension_chars_count_once_in_ucs2() -> None:
    assert message_length("中{", domestic=False) == 2


@given(gsm_text)
def test_gsm_length_counts_extensions_twice(text: str) -> None:
    extensions = sum(char in EXTENSION for char in text)
    assert message_length(text, domestic=False) == len(text) + extensions


@given(any_text, st.booleans())
def test_one_segment_iff_within_the_single_limit(text: str, domestic: bool) -> None:
    length = message_length(text, domestic=domestic)
    single = 160 if not domestic and is_gsm(text) else 70
    assert (count_segments(text, domestic=domestic) == 1) == (length <= single)


@given(any_text, st.booleans())
def test_multipart_is_ceil_of_the_part_size(text: str, domestic: bool) -> None:
    length = message_length(text, domestic=domestic)
    gsm = not domestic and is_gsm(text)
    single, part = (160, 153) if gsm else (70, 67)
    if length > single:
        assert count_segments(text, domestic=domestic) == math.ceil(length / part)


@given(gsm_basic_text, st.integers(min_value=1, max_value=200))
def test_monotone_in_length_gsm(text: str, extra: int) -> None:
    longer = text + "a" * extra
    assert count_segments(longer, domestic=False) >= count_segments(text, domestic=False)


@given(st.integers(min_value=0, max_value=600), st.integers(min_value=0, max_value=600))
def test_monotone_in_length_domestic(shorter: int, longer: int) -> None:
    shorter, longer = sorted((shorter, longer))
    fewer = count_segments("字" * shorter, domestic=True)
    assert fewer <= count_segments("字" * longer, domestic=True)


@given(st.integers(min_value=1, max_value=10))
def test_exact_multiples_fill_their_segments(k: int) -> None:
    if k > 1:
        assert count_segments("字" * (67 * k), domestic=True) == k
        assert count_segments("字" * (67 * k + 1), domestic=True) == k + 1
        assert count_segments("a" * (153 * k), domestic=False) == k
        assert count_segments("a" * (153 * k + 1), domestic=False) == k + 1
    else:
        assert count_segments("字" * 67, domestic=True) == 1
        assert count_segments("a" * 153, domestic=False) == 1
