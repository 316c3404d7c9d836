"""The signature against the documented vectors, and against hashlib for arbitrary inputs."""

from __future__ import annotations

import hashlib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.tencent.signing import sign

KEY = "5f03a35d00ee52a21327ab048186a2c4"
RANDOM = 7226249334
TIME = 1457336869

appkeys = st.text(alphabet="0123456789abcdef", min_size=1, max_size=40)
randoms = st.integers(min_value=0, max_value=10**10 - 1)
times = st.integers(min_value=0, max_value=2**32)
mobiles = st.text(alphabet="0123456789", min_size=4, max_size=15)


def test_single_mobile_vector() -> None:
    assert (
        sign(KEY, RANDOM, TIME, mobiles=["13788888888"])
        == "ecab4881ee80ad3d76bb1da68387428ca752eb885e52621a3129dcf4d9bc4fd4"
    )


def test_group_vector() -> None:
    assert (
        sign(KEY, RANDOM, TIME, mobiles=["13788888888", "13788888889"])
        == "be66bb4aeb54701ed0637d0996a0b75111d5b8eda9b3a71bdc579a3d26f3edfb"
    )


def test_nothing_appended_vector() -> None:
    assert (
        sign(KEY, RANDOM, TIME)
        == "c13e54f047ed75e821e698730c72d030dc30e5b510b3f8a0fb6fb7605283d7df"
    )


def test_international_tel_vector() -> None:
    assert (
        sign(KEY, RANDOM, TIME, tel="+8613788888888")
        == "f272b136949f9e6faa5fae01cfc240caf5e6d89f2e18e8d47adf3d87ea0715fb"
    )


def test_group_order_matters() -> None:
    forward = sign(KEY, RANDOM, TIME, mobiles=["13788888888", "13788888889"])
    assert forward != sign(KEY, RANDOM, TIME, mobiles=["13788888889", "13788888888"])


def test_a_bare_string_is_refused() -> None:
    with pytest.raises(TypeError):
        sign(KEY, RANDOM, TIME, mobiles="13788888888")


def test_mobiles_and_tel_together_are_refused() -> None:
    with pytest.raises(ValueError, match="not both"):
        sign(KEY, RANDOM, TIME, mobiles=["13788888888"], tel="+8613788888888")


@given(appkeys, randoms, times, st.lists(mobiles, max_size=5))
def test_output_is_64_lowercase_hex(appkey: str, random: int, time: int, group: list[str]) -> None:
    assert re.fullmatch(r"[0-9a-f]{64}", sign(appkey, random, time, mobiles=group))


@given(appkeys, randoms, times, mobiles)
def test_group_of_one_is_the_single_shape(appkey: str, random: int, time: int, mobile: str) -> None:
    expected = hashlib.sha256(
        f"appkey={appkey}&random={random}&time={time}&mobile={mobile}".encode()
    ).hexdigest()
    assert sign(appkey, random, time, mobiles=(mobile,)) == expected


@given(appkeys, randoms, times, st.lists(mobiles, min_size=1, max_size=200))
def test_group_hashes_the_joined_numbers(
    appkey: str, random: int, time: int, group: list[str]
) -> None:
    text = f"appkey={appkey}&random={random}&time={time}&mobile={','.join(group)}"
    assert sign(appkey, random, time, mobiles=group) == hashlib.sha256(text.encode()).hexdigest()


@given(appkeys, randoms, times, st.from_regex(r"\+[1-9][0-9]{6,14}", fullmatch=True))
def test_tel_shape(appkey: str, random: int, time: int, tel: str) -> None:
    text = f"appkey={appkey}&random={random}&time={time}&tel={tel}"
    assert sign(appkey, random, time, tel=tel) == hashlib.sha256(text.encode()).hexdigest()


@given(appkeys, randoms, times)
def test_bare_shape(appkey: str, random: int, time: int) -> None:
    text = f"appkey={appkey}&random={random}&time={time}"
    assert sign(appkey, random, time) == hashlib.sha256(text.encode()).hexdigest()


@given(appkeys, appkeys, randoms, times)
def test_the_key_changes_the_signature(key_a: str, key_b: str, random: int, time: int) -> None:
    if key_a != key_b:
        assert sign(key_a, random, time) != sign(key_b, random, time)
    else:
        assert sign(key_a, random, time) == sign(key_b, random, time)
