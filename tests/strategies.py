"""Hypothesis strategies shared by the fuzz tests of the three input surfaces.

The producer API, the CSV importer and the receiver all take text, numbers and numbers-as-text
from outside. These strategies make both kinds of input they must handle: plausible values
(which must be accepted) and hostile ones (which must be refused cleanly or accepted validly).
"""

from __future__ import annotations

from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

T = TypeVar("T")

# One budget for every fuzz test: no per-example deadline (the machine is shared and the
# database is real), fixtures set up once per test rather than once per example.
FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)


def fuzz_with(max_examples: int) -> settings:
    """``FUZZ`` with fewer examples, for a property that is a thin layer over another."""
    return settings(FUZZ, max_examples=max_examples)


# Every code point, lone surrogates and NUL included (st.text() leaves surrogates out).
ANY_CHARACTER = st.characters(exclude_categories=())
# Values that have broken text handling somewhere: the database (NUL, surrogates, lengths just
# over a column's), parsers (digits of other scripts, full-width forms), the gateway (URLs).
AWKWARD_STRINGS = st.sampled_from(
    [
        "",
        " ",
        "\x00",
        "a\x00b",
        "\ud800",
        "\udcff",
        "\ufeff",
        "\r\n",
        '"',
        "退订",
        "𝟙𝟚𝟛",
        "١٢٣",
        "１２３",
        "\u202e123",
        "😀" * 7,
        "http://a.cn/x",
        "www.example.com",
        "t.cn/abc",
        "x" * 13,
        "x" * 33,
        "x" * 65,
        "x" * 129,
        "x" * 257,
        "x" * 451,
        "x" * 5000,
    ]
)
HOSTILE_TEXT = st.one_of(st.text(ANY_CHARACTER, max_size=40), AWKWARD_STRINGS)
# Integers of every size, including those str() refuses to write out (over 4300 digits).
HOSTILE_INTS = st.one_of(
    st.integers(),
    st.sampled_from([0, -1, 2**31 - 1, 2**31, 2**63, -(2**63), 10**40, 10**5000, -(10**5000)]),
)
ANY_SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    HOSTILE_INTS,
    st.floats(),
    HOSTILE_TEXT,
    st.binary(max_size=10),
)

# Mainland mobiles (137 + 8 digits), the shape the gateway's own examples use.
CHINA_MOBILE = st.integers(0, 10**8 - 1).map(lambda n: f"+86137{n:08d}")
# Valid numbers of other countries, written as people write them.
OTHER_VALID_NUMBERS = st.sampled_from(
    ["+12015550123", "+447911123456", "+390612345678", "+61 412 345 678", "+86 137-0000-0001"]
)
VALID_NUMBER = st.one_of(CHINA_MOBILE, OTHER_VALID_NUMBERS)
# Numbers no parser should accept.
INVALID_NUMBERS = st.sampled_from(
    [
        "",
        "+",
        "+86",
        "+86137",
        "13788888888",  # no country code
        "+999123456789",  # a calling code nobody has
        "+8613788888888" + "9" * 300,
        "not a number",
        "+86137\x0088888888",
    ]
)
NUMBER_LIKE = st.one_of(
    VALID_NUMBER,
    INVALID_NUMBERS,
    st.from_regex(r"\A\+?[0-9 ()+\-.]{0,20}\Z"),
    HOSTILE_TEXT,
    HOSTILE_INTS,
)

JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([10**30, -(10**30), 2**63, 2**64]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    AWKWARD_STRINGS,
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=16,
)


def mostly(
    good: st.SearchStrategy[T], bad: st.SearchStrategy[Any], in_ten: int = 7
) -> st.SearchStrategy[Any]:
    """``good`` ``in_ten`` times out of ten, else ``bad``: most examples stay near valid input,
    so a rejection is usually caused by one field and the paths past validation run too."""
    return st.integers(0, 9).flatmap(lambda n: good if n < in_ten else bad)
