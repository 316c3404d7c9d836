"""Content checks: each refusal names its field and carries the gateway's code for it."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.tencent.rules import (
    InvalidInput,
    check_group,
    check_length,
    check_params,
    render_template,
)
from worker.tencent.types import Phone


def china(n: int) -> Phone:
    return Phone("86", f"137{n:08d}")


def test_invalid_input_shape() -> None:
    error = InvalidInput("mobile", "is wrong", 1016)
    assert str(error) == "mobile: is wrong"
    assert (error.field, error.problem, error.code) == ("mobile", "is wrong", 1016)
    assert isinstance(error, ValueError)
    assert InvalidInput("x", "y").code is None


def test_params_within_limits_pass() -> None:
    check_params(["张三", "123456789012", ""], verification=False)
    check_params(["123456", "0", ""], verification=True)


def test_param_longer_than_12_is_1036() -> None:
    with pytest.raises(InvalidInput) as caught:
        check_params(["ok", "1234567890123"], verification=False)
    assert caught.value.code == 1036
    assert caught.value.field == "params[1]"
    assert "13 characters" in caught.value.problem


@pytest.mark.parametrize("value", ["1234567", "12a4", "１２３", " 123", "12.3"])
def test_verification_code_must_be_0_to_6_digits(value: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_params([value], verification=True)
    assert caught.value.code == 1038


@pytest.mark.parametrize(
    "value", ["http://a.b", "https://x", "www.qq.com", "t.cn/abc", "bit.ly/x", "QQ.COM"]
)
def test_urls_are_1048(value: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_params([value], verification=False)
    assert caught.value.code == 1048


@pytest.mark.parametrize("value", ["3.14", "v1.2", "¥12.50", "a.b", "Mr. Li", "2024.01.02"])
def test_things_that_are_not_urls_pass(value: str) -> None:
    check_params([value], verification=False)


def test_group_sizes() -> None:
    check_group([china(1)])
    check_group([china(n) for n in range(200)])
    for size in (0, 201):
        with pytest.raises(InvalidInput) as caught:
            check_group([china(n) for n in range(size)])
        assert caught.value.code == 1046
        assert caught.value.field == "tel"


def test_group_must_not_mix_domestic_and_international() -> None:
    check_group([Phone("1", "2015550123"), Phone("44", "7911123456")])
    with pytest.raises(InvalidInput) as caught:
        check_group([china(1), Phone("1", "2015550123")])
    assert caught.value.code == 1034


def test_group_duplicates_are_named() -> None:
    with pytest.raises(InvalidInput, match=r"\+8613700000002") as caught:
        check_group([china(1), china(2), china(3), china(2)])
    assert caught.value.field == "tel"


def test_length_limit_is_1017() -> None:
    check_length("字" * 450)
    with pytest.raises(InvalidInput) as caught:
        check_length("字" * 451)
    assert caught.value.code == 1017
    assert "451" in caught.value.problem


def test_render_template_fills_placeholders() -> None:
    text = "验证码{1}，{2}分钟内有效。再次确认：{1}"
    assert render_template(text, ["1234", "5"]) == "验证码1234，5分钟内有效。再次确认：1234"
    assert render_template("no variables", []) == "no variables"


def test_render_template_does_not_refill_values() -> None:
    assert render_template("{1}-{2}", ["{2}", "x"]) == "{2}-x"


@pytest.mark.parametrize(
    ("text", "params"),
    [("{1}", []), ("{1}", ["a", "b"]), ("{1} {3}", ["a", "b", "c"]), ("plain", ["a"])],
)
def test_render_template_count_mismatch_is_1014(text: str, params: list[str]) -> None:
    with pytest.raises(InvalidInput) as caught:
        render_template(text, params)
    assert caught.value.code == 1014
    assert caught.value.field == "params"


values = st.text(alphabet=st.characters(exclude_characters="\x00"), max_size=12)


@given(st.lists(values | st.sampled_from(["{1}", "{2}", "{9}"]), max_size=8))
def test_render_template_round_trip(params: list[str]) -> None:
    text = "\x00".join(f"{{{n}}}" for n in range(1, len(params) + 1))
    assert render_template(text, params).split("\x00") == (params or [""])


def test_invalid_input_survives_pickling() -> None:
    error = pickle.loads(pickle.dumps(InvalidInput("tel", "too many", 1046)))
    assert (str(error), error.field, error.problem, error.code) == (
        "tel: too many",
        "tel",
        "too many",
        1046,
    )
