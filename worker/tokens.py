"""Shared secrets that people choose: how strong a token is, and the refusal when it is not.

The receiver's path token and the simulator's control token are typed into consoles and
``.env`` files by people, so "aaaaaaaaaaaaaaaa" or "password1234567890" come up. The estimate
below is deliberately simple and conservative: the Shannon entropy of the characters (repeats
count for little), and, separately, the characters that continue a run such as ``abcd`` or
``1234`` counted as free; the lower of the two must reach ``MIN_TOKEN_BITS``. A token from
``secrets.token_urlsafe(16)`` or longer always passes.
"""

from __future__ import annotations

import itertools
import math
import string
from collections import Counter

MIN_TOKEN_LENGTH = 16
MIN_TOKEN_BITS = 64
MAKE_TOKEN = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"  # noqa: S105
_CLASSES = (
    frozenset(string.ascii_lowercase),
    frozenset(string.ascii_uppercase),
    frozenset(string.digits),
)


def estimated_bits(token: str) -> float:
    """A low estimate of the entropy of ``token``, in bits (see the module's docstring)."""
    if not token:
        return 0.0
    size = len(token)
    counts = Counter(token)
    shannon = -sum(n / size * math.log2(n / size) for n in counts.values()) * size
    present = set(counts)
    classes = [chars for chars in _CLASSES if chars & present]
    alphabet = sum(len(chars) for chars in classes) + len(present.difference(*classes))
    steps = [ord(second) - ord(first) for first, second in itertools.pairwise(token)]
    in_a_run = sum(1 for index in range(1, len(steps)) if steps[index] == steps[index - 1])
    patterned = (size - in_a_run) * math.log2(max(alphabet, 2))
    return max(0.0, min(shannon, patterned))


def weakness(token: str) -> str | None:
    """Why ``token`` is too weak to guard anything (never quoting it), or None when it will do."""
    if len(token) < MIN_TOKEN_LENGTH:
        return f"is shorter than {MIN_TOKEN_LENGTH} characters"
    if estimated_bits(token) < MIN_TOKEN_BITS:
        return "is too easy to guess (repeated characters, runs such as abcd or 1234, or words)"
    return None
