"""Idempotency keys: what a caller's key may be, the keys ``enqueue_many`` derives from it, and
when using a key again is a conflict rather than a retry.

A key names one request. The same key with the same payload is a retry: the earlier message is
returned and nothing more is sent. The same key with anything else (another recipient, other
content, another account, one recipient where there were several) is a mistake that would drop
an SMS without a word, so it raises ``IdempotencyConflict``.

``enqueue_many`` gives recipient ``i`` the key ``<key>#<i>``. Caller keys may not contain ``#``,
so a derived key never equals a key a caller passes, nor another request's derived key.

Importing this module imports neither the database nor Celery (``worker.IdempotencyConflict``).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from worker.tencent.rules import InvalidInput

FIELD = "idempotency_key"
MAX_KEY_LENGTH = 128  # sms_messages.idempotency_key
# Only derived keys hold it: "<key>#<index>".
RESERVED = "#"
# What a message is, as the ledger stores it, and the name a conflict gives each part.
PAYLOAD = {
    "account": "account",
    "nationcode": "recipient",
    "mobile": "recipient",
    "kind": "kind",
    "tpl_id": "template",
    "params": "params",
    "content": "text",
    "sign": "sign",
    "ext": "ext",
    "extend": "extend",
}


class IdempotencyConflict(InvalidInput):
    """An idempotency key used before for a different message: nothing was written.

    ``key`` is the key, ``earlier_id`` the message it was first used for, ``differences`` what
    differs (``recipient``, ``params``, ``account``...). Use a new key for a new message.
    """

    def __init__(self, key: str, earlier_id: uuid.UUID, differences: Sequence[str]) -> None:
        self.key = key
        self.earlier_id = earlier_id
        self.differences = tuple(differences)
        super().__init__(
            FIELD,
            f"{key!r:.80} was used for message {earlier_id} with a different "
            f"{', '.join(self.differences)}; give a new key for a new message",
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.key, self.earlier_id, self.differences))


def check_key(key: str) -> None:
    """Refuse a caller's key that could collide with a derived one, or too long to store."""
    if not 0 < len(key) <= MAX_KEY_LENGTH:
        raise InvalidInput(FIELD, f"must be 1..{MAX_KEY_LENGTH} characters")
    if RESERVED in key:
        raise InvalidInput(
            FIELD,
            f"must not contain {RESERVED!r}: it is reserved for the keys enqueue_many derives "
            f"for each recipient (<key>{RESERVED}0, <key>{RESERVED}1, ...)",
        )


def derived_keys(key: str | None, count: int) -> list[str | None]:
    """The key of each of ``count`` recipients: the key itself for one, ``key#i`` for several."""
    if key is None:
        return [None] * count
    if count == 1:
        return [key]
    keys: list[str | None] = [f"{key}{RESERVED}{index}" for index in range(count)]
    if len(f"{key}{RESERVED}{count - 1}") > MAX_KEY_LENGTH:
        raise InvalidInput(
            FIELD, f"with its '{RESERVED}<index>' suffix must be 1..{MAX_KEY_LENGTH} characters"
        )
    return keys


def related_keys(key: str) -> list[str]:
    """Every key a request with caller key ``key`` may have stored for its first recipient: as
    one recipient (the key) or as several (``key#0``). Finding the other one is a conflict."""
    return [key, f"{key}{RESERVED}0"]


def differences(earlier: Any, row: Mapping[str, Any]) -> list[str]:
    """What differs between an earlier message and a new one under the same key, by name."""
    names = [name for column, name in PAYLOAD.items() if getattr(earlier, column) != row[column]]
    return list(dict.fromkeys(names))
