"""The simulator's own signature check, against the documented vectors and its shapes."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.simulator.signature import expected_sig, sig_matches, signed_text

K, R, T = "5f03a35d00ee52a21327ab048186a2c4", "7226249334", 1457336869


@pytest.mark.parametrize(
    ("kwargs", "sig"),
    [
        (
            {"mobiles": ["13788888888"]},
            "ecab4881ee80ad3d76bb1da68387428ca752eb885e52621a3129dcf4d9bc4fd4",
        ),
        (
            {"mobiles": ["13788888888", "13788888889"]},
            "be66bb4aeb54701ed0637d0996a0b75111d5b8eda9b3a71bdc579a3d26f3edfb",
        ),
        ({}, "c13e54f047ed75e821e698730c72d030dc30e5b510b3f8a0fb6fb7605283d7df"),
        (
            {"tel": "+8613788888888"},
            "f272b136949f9e6faa5fae01cfc240caf5e6d89f2e18e8d47adf3d87ea0715fb",
        ),
    ],
    ids=["single", "group", "pull", "international"],
)
def test_documented_vectors(kwargs: dict[str, object], sig: str) -> None:
    assert expected_sig(K, R, T, **kwargs) == sig  # type: ignore[arg-type]
    assert sig_matches(sig, K, R, T, **kwargs)  # type: ignore[arg-type]
    assert not sig_matches(sig.upper(), K, R, T, **kwargs)  # type: ignore[arg-type]
    assert not sig_matches(sig, K, "7226249335", T, **kwargs)  # type: ignore[arg-type]
    assert not sig_matches(sig, K, R, T + 1, **kwargs)  # type: ignore[arg-type]


def test_the_docs_copy_paste_error_is_not_accepted_for_sendisms() -> None:
    # One doc page prints the single-send digest for the international shape; it is wrong.
    wrong = "ecab4881ee80ad3d76bb1da68387428ca752eb885e52621a3129dcf4d9bc4fd4"
    assert not sig_matches(wrong, K, R, T, tel="+8613788888888")


digits = st.text(alphabet="0123456789", min_size=1, max_size=15)
appkeys = st.text(alphabet="0123456789abcdef", min_size=32, max_size=32)
times = st.integers(min_value=0, max_value=2**40)


@given(appkey=appkeys, rnd=digits, time=times, mobiles=st.lists(digits, min_size=1, max_size=5))
def test_send_shape(appkey: str, rnd: str, time: int, mobiles: list[str]) -> None:
    text = signed_text(appkey, rnd, time, mobiles=mobiles)
    assert text == f"appkey={appkey}&random={rnd}&time={time}&mobile={','.join(mobiles)}"
    digest = expected_sig(appkey, rnd, time, mobiles=mobiles)
    assert digest == hashlib.sha256(text.encode()).hexdigest()
    assert len(digest) == 64 and digest == digest.lower()
    assert sig_matches(digest, appkey, rnd, time, mobiles=mobiles)
    if len(mobiles) > 1 and mobiles != mobiles[::-1]:
        assert not sig_matches(digest, appkey, rnd, time, mobiles=mobiles[::-1])


@given(appkey=appkeys, rnd=digits, time=times, number=digits)
def test_tel_shape_differs_from_mobile_shape(appkey: str, rnd: str, time: int, number: str) -> None:
    tel = f"+{number}"
    digest = expected_sig(appkey, rnd, time, tel=tel)
    assert signed_text(appkey, rnd, time, tel=tel).endswith(f"&tel={tel}")
    assert sig_matches(digest, appkey, rnd, time, tel=tel)
    assert not sig_matches(digest, appkey, rnd, time, mobiles=[number])
    assert not sig_matches(digest, appkey, rnd, time)


@given(appkey=appkeys, other=appkeys, rnd=digits, time=times)
def test_pull_shape_and_key(appkey: str, other: str, rnd: str, time: int) -> None:
    digest = expected_sig(appkey, rnd, time)
    assert signed_text(appkey, rnd, time) == f"appkey={appkey}&random={rnd}&time={time}"
    assert sig_matches(digest, appkey, rnd, time)
    assert sig_matches(digest, other, rnd, time) == (other == appkey)


@given(given_sig=st.text(max_size=70))
def test_any_given_text_is_compared_without_error(given_sig: str) -> None:
    assert sig_matches(given_sig, K, R, T) == (
        given_sig == "c13e54f047ed75e821e698730c72d030dc30e5b510b3f8a0fb6fb7605283d7df"
    )


# The simulator's independence from the client's signing code is checked with every other
# import rule in tests/test_architecture.py.
