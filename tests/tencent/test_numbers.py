"""Phone number parsing: accepted spellings, normalisation, and errors that name the field."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.tencent.numbers import parse_phone
from worker.tencent.rules import InvalidInput
from worker.tencent.types import Phone

CHINA_MOBILE = Phone("86", "13788888888")


@pytest.mark.parametrize(
    ("number", "nationcode"),
    [
        ("+8613788888888", None),
        ("13788888888", "86"),
        ("13788888888", "+86"),
        (" +86 137-8888-8888 ", None),
        ("+8613788888888", "86"),
    ],
)
def test_spellings_of_one_chinese_mobile(number: str, nationcode: str | None) -> None:
    phone = parse_phone(number, nationcode)
    assert phone == CHINA_MOBILE
    assert phone.domestic
    assert phone.e164 == "+8613788888888"


def test_international_numbers_normalise_to_the_national_significant_number() -> None:
    assert parse_phone("+12015550123") == Phone("1", "2015550123")
    assert parse_phone("07911123456", "44") == Phone("44", "7911123456")  # trunk 0 dropped
    assert parse_phone("+390612345678") == Phone("39", "0612345678")  # Italian leading 0 kept
    assert not parse_phone("+447911123456").domestic


def test_invalid_number_names_the_country() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_phone("+86137")
    assert str(caught.value) == "mobile: '+86137' is not a valid number for China (86)"
    assert caught.value.field == "mobile"
    assert caught.value.code == 1016


def test_missing_country_code_says_how_to_fix_it() -> None:
    with pytest.raises(InvalidInput, match="no country code") as caught:
        parse_phone("13788888888")
    assert caught.value.field == "mobile"


@pytest.mark.parametrize("nationcode", ["abc", "", "８６", "999"])
def test_bad_nationcode_names_the_nationcode(nationcode: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_phone("13788888888", nationcode)
    assert caught.value.field == "nationcode"
    assert repr(nationcode) in caught.value.problem


def test_nationcode_contradicting_the_number() -> None:
    with pytest.raises(InvalidInput, match="does not match") as caught:
        parse_phone("+8613788888888", "1")
    assert caught.value.field == "nationcode"


@pytest.mark.parametrize("number", ["hello", "+", "+86", "+8613788888888888888888"])
def test_unparseable_numbers(number: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_phone(number)
    assert caught.value.field == "mobile"
    assert repr(number) in str(caught.value)


@given(st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True))
def test_valid_chinese_mobiles_round_trip(mobile: str) -> None:
    try:
        phone = parse_phone(mobile, "86")
    except InvalidInput as error:
        # Some prefixes are unallocated; then the error is about this number, nothing else.
        assert error.field == "mobile" and mobile in error.problem
    else:
        assert phone == Phone("86", mobile)
        assert parse_phone(phone.e164) == phone


@given(st.text(max_size=20))
def test_any_input_either_parses_or_raises_invalid_input(text: str) -> None:
    try:
        phone = parse_phone(text)
    except InvalidInput as error:
        assert error.field in {"mobile", "nationcode"}
    else:
        assert phone.nationcode.isdigit() and phone.mobile.isdigit()
