"""The producer API: validate, write the message row, publish its task after commit.

    import worker
    worker.enqueue("+8613788888888", template=100001, params=["482913", "5"],
                   kind="verification", sign="腾讯云")

Validation fails fast with ``InvalidInput`` naming the field. Given the caller's SQLAlchemy
session, the row joins the caller's transaction and the task is published only once that
transaction commits; a rollback publishes nothing. A failed publish loses nothing: the row stays
``queued`` and the sweeper publishes it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypedDict, Unpack

from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from worker import clock
from worker.api.idempotency import (
    MAX_KEY_LENGTH,
    IdempotencyConflict,
    check_key,
    derived_keys,
    differences,
    related_keys,
)
from worker.config import Settings
from worker.ledger import messages
from worker.ledger.keys import lock_key, messages_with_keys
from worker.ledger.schema import SmsMessage
from worker.ledger.status import KINDS, NOTIFICATION, QUEUED, VERIFICATION
from worker.ledger.types import MAX_INTEGER, text_problem
from worker.tencent import (
    InvalidInput,
    Phone,
    check_length,
    check_param_count,
    check_params,
    check_signed_text,
    parse_phone,
    sign_text,
)
from worker.tencent.types import MAX_PARAM_LENGTH

log = logging.getLogger(__name__)

Publisher = Callable[..., None]  # publish(message_id, kind, *, countdown=None)
__all__ = ["MAX_KEY_LENGTH", "Enqueued", "IdempotencyConflict", "Producer", "SendOptions"]
_COLUMNS = SmsMessage.__table__.columns
# Messages due within this many seconds are published with a countdown; later ones are left
# to the sweeper, so no long ETA message ever sits in the broker.
MAX_PUBLISH_DELAY_SECONDS = 300.0
SWEEPER_PUBLISHES = -1.0
_PENDING = "sms_pending_publish"


class SendOptions(TypedDict, total=False):
    """The keyword options of ``Producer.enqueue_many`` (and ``enqueue``), for type checkers."""

    template: int | None
    params: Sequence[str]
    text: str | None
    sign: str | None
    kind: str
    nationcode: str | None
    account: str | None
    idempotency_key: str | None
    ext: str
    extend: str
    not_before: datetime | None
    expires_at: datetime | None
    session: Session | None


@dataclass(frozen=True, slots=True)
class Enqueued:
    """A message accepted for sending. ``created`` is False when its idempotency key was
    used before for the same message: ``id`` is then the earlier message and nothing more will
    be sent. (The key used before for a different message raises ``IdempotencyConflict``.)"""

    id: uuid.UUID
    created: bool
    status: str


@dataclass(frozen=True, slots=True)
class _Pending:
    id: uuid.UUID
    kind: str
    countdown: float | None


class Producer:
    """Enqueues messages for one configuration; thread-safe."""

    def __init__(
        self, settings: Settings, sessions: sessionmaker[Session], publish: Publisher
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.publish = publish

    def enqueue(self, to: str, **options: Unpack[SendOptions]) -> Enqueued:
        """Accept one SMS to ``to`` (E.164, or a national number with ``nationcode``); the
        options and their defaults are ``enqueue_many``'s."""
        (enqueued,) = self.enqueue_many([to], **options)
        return enqueued

    def enqueue_many(
        self,
        recipients: Iterable[str],
        *,
        template: int | None = None,
        params: Sequence[str] = (),
        text: str | None = None,
        sign: str | None = None,
        kind: str = NOTIFICATION,
        nationcode: str | None = None,
        account: str | None = None,
        idempotency_key: str | None = None,
        ext: str = "",
        extend: str = "",
        not_before: datetime | None = None,
        expires_at: datetime | None = None,
        session: Session | None = None,
    ) -> list[Enqueued]:
        """Accept the same SMS to each recipient, one message each. All are validated before
        any is written. With ``idempotency_key``, recipient ``i`` gets the key ``key#i`` (one
        recipient: the key itself); a key used before for a different message raises
        ``IdempotencyConflict`` (in the caller's ``session``: roll it back)."""
        now = clock.now()
        if isinstance(recipients, str | bytes) or not isinstance(recipients, Iterable):
            raise InvalidInput("to", f"must be a list of numbers, not {type(recipients).__name__}")
        phones = [parse_phone(number, nationcode) for number in recipients]
        if not phones:
            raise InvalidInput("to", "no recipients given")
        fields = self._validated_fields(
            template=template, params=params, text=text, sign=sign, kind=kind, account=account,
            idempotency_key=idempotency_key, ext=ext, extend=extend, not_before=not_before,
            expires_at=expires_at, now=now, domestic=any(phone.domestic for phone in phones),
        )  # fmt: skip
        keys = derived_keys(idempotency_key, len(phones))
        countdown = _countdown(not_before, now)
        if session is not None:
            return self._write(session, phones, keys, idempotency_key, fields, countdown)
        with self.sessions() as own:
            enqueued = self._write(own, phones, keys, idempotency_key, fields, countdown)
            own.commit()
        return enqueued

    def _write(
        self,
        session: Session,
        phones: Sequence[Phone],
        keys: Sequence[str | None],
        key: str | None,
        fields: dict[str, Any],
        countdown: float | None,
    ) -> list[Enqueued]:
        rows = [
            {
                "id": uuid.uuid4(),
                "idempotency_key": key,
                "nationcode": phone.nationcode,
                "mobile": phone.mobile,
                **fields,
            }
            for phone, key in zip(phones, keys, strict=True)
        ]
        # One statement for all the rows. A row whose key is taken waits on the unique index
        # until the transaction holding it ends, so the earlier message is there to compare.
        if key is not None:
            lock_key(session, key)
        inserted = set(messages.insert_messages(session, rows))
        earlier = self._earlier(session, rows, inserted, key) if key is not None else {}
        results: list[Enqueued] = []
        for row in rows:
            if row["id"] in inserted:
                results.append(Enqueued(row["id"], True, row["status"]))
                continue
            first = earlier.get(row["idempotency_key"])
            if first is None:  # not found by key: the ledger's own lookup says what it was
                first, _ = messages.insert_message(session, **row)
            results.append(Enqueued(first.id, False, first.status))
        if countdown != SWEEPER_PUBLISHES:
            pending = _pending_for(session, self.publish)
            pending += [_Pending(r.id, fields["kind"], countdown) for r in results if r.created]
        return results

    def _earlier(
        self, session: Session, rows: Sequence[dict[str, Any]], inserted: set[uuid.UUID], key: str
    ) -> dict[str, SmsMessage]:
        """The earlier message of each row whose key was taken, by key; raises
        ``IdempotencyConflict`` when the key was used for anything but this very request."""
        by_key = {row["idempotency_key"]: row for row in rows}
        looked_up = [*by_key, *related_keys(key)]
        earlier: dict[str, SmsMessage] = {}
        for message in messages_with_keys(session, self.settings.account_names, looked_up):
            if message.id in inserted:
                continue
            row = by_key.get(message.idempotency_key)
            if row is None or row["account"] != message.account:
                # Another account's key, or the key of a request to one recipient where this
                # one has several (or the reverse): a different request either way.
                other = "account" if message.account != rows[0]["account"] else "recipients"
                raise IdempotencyConflict(key, message.id, [other])
            differ = differences(message, row)
            if differ:
                raise IdempotencyConflict(key, message.id, differ)
            earlier[row["idempotency_key"]] = message
        return earlier

    def _validated_fields(
        self,
        *,
        template: int | None,
        params: Sequence[str],
        text: str | None,
        sign: str | None,
        kind: str,
        account: str | None,
        idempotency_key: str | None,
        ext: str,
        extend: str,
        not_before: datetime | None,
        expires_at: datetime | None,
        now: datetime,
        domestic: bool,
    ) -> dict[str, Any]:
        if _checked_text("kind", kind) not in KINDS:
            raise InvalidInput("kind", f"{kind!r:.40} is not one of {', '.join(KINDS)}")
        name = _checked_text("account", account, "account") or self.settings.default_account_name
        known = ", ".join(self.settings.account_names) or "none"
        if name is None:
            raise InvalidInput("account", f"none named and no default account (known: {known})")
        if name not in self.settings.account_names:
            raise InvalidInput("account", f"{name!r} is not configured (known: {known})")
        if template is None and text is None:
            raise InvalidInput("template", "missing: give a template id or a text")
        if template is not None and text is not None:
            raise InvalidInput("template", "give either a template id or a text, not both")
        if template is not None:
            if isinstance(template, bool) or not isinstance(template, int):
                raise InvalidInput(
                    "template", f"must be a whole number, not {type(template).__name__}"
                )
            if not 0 < template <= MAX_INTEGER:
                raise InvalidInput("template", f"must be a template id from 1 to {MAX_INTEGER}")
            if isinstance(params, str | bytes) or not isinstance(params, Sequence):
                raise InvalidInput(
                    "params", f"must be a list of strings, not {type(params).__name__}"
                )
            check_param_count(params)  # first: a million params are refused without a look
        if sign is not None and _checked_text("sign", sign, "sign"):
            sign = sign_text(sign)
        if template is not None:
            params = [_param_text(index, param) for index, param in enumerate(params)]
            check_params(params, verification=kind == VERIFICATION, sign=sign)
        elif text is not None:
            if not _checked_text("text", text).strip():
                raise InvalidInput("text", "is empty")
            check_length(text)
            if domestic:
                check_signed_text(text)
        _checked_text("ext", ext, "ext")
        if idempotency_key is not None:
            check_key(_checked_text("idempotency_key", idempotency_key, "idempotency_key"))
        if _checked_text("extend", extend, "extend") and not (
            extend.isascii() and extend.isdigit()
        ):
            raise InvalidInput("extend", f"{extend!r} must be digits only")
        for name_, moment in (("not_before", not_before), ("expires_at", expires_at)):
            if moment is not None and not isinstance(moment, datetime):
                raise InvalidInput(name_, f"must be a datetime, not {type(moment).__name__}")
            if moment is not None and moment.tzinfo is None:
                raise InvalidInput(name_, "must be a timezone-aware datetime")
        # Computed even when expires_at is given: a not_before too far off for its own default
        # deadline is wrong in itself, whatever the expires_at beside it.
        try:
            default_deadline = (not_before or now) + self.settings.ttl(kind)
        except OverflowError:
            raise InvalidInput("not_before", "is too far in the future") from None
        deadline = expires_at or default_deadline
        if deadline <= now:
            raise InvalidInput("expires_at", "is already in the past")
        if not_before is not None and deadline <= not_before:
            raise InvalidInput("expires_at", "must be after not_before")
        return {
            "account": name,
            "kind": kind,
            "tpl_id": template,
            "params": list(params) if template is not None else [],
            "content": text,
            "sign": sign,
            "ext": ext,
            "extend": extend,
            "status": QUEUED,
            "created_at": now,
            "updated_at": now,
            "not_before": not_before,
            "expires_at": deadline,
        }


def _checked_text(field: str, value: Any, column: str | None = None) -> Any:
    """``value`` (None passes) if it is a string its ledger ``column`` stores as is: within
    the column's length, without NUL (PostgreSQL refuses it) or lone surrogates (not UTF-8).
    Refused here, by name, rather than by the database halfway through an insert."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(field, f"must be a string, not {type(value).__name__}")
    limit = getattr(_COLUMNS[column].type, "length", None) if column else None
    problem = text_problem(value, limit)
    if problem is not None:
        raise InvalidInput(field, problem)
    return value


def _param_text(index: int, value: Any) -> str:
    """A template param: a string, or a whole number written out (a code given as an int)."""
    field = f"params[{index}]"
    if isinstance(value, int) and not isinstance(value, bool):
        if abs(value) >= 10**MAX_PARAM_LENGTH:  # too long anyway; str() of a huge int raises
            raise InvalidInput(field, f"is longer than {MAX_PARAM_LENGTH} characters", 1036)
        return str(value)
    text: str = _checked_text(field, value)
    if text is None:
        raise InvalidInput(field, "must be a string, not NoneType", 1004)
    return text


def _countdown(not_before: datetime | None, now: datetime) -> float | None:
    """None: publish now; seconds: publish with that countdown; or SWEEPER_PUBLISHES."""
    if not_before is None or not_before <= now:
        return None
    delay = (not_before - now) / timedelta(seconds=1)
    return delay if delay <= MAX_PUBLISH_DELAY_SECONDS else SWEEPER_PUBLISHES


def _pending_for(session: Session, publish: Publisher) -> list[_Pending]:
    """The session's list of tasks to publish once it commits (dropped if it rolls back)."""
    pending: list[_Pending] | None = session.info.get(_PENDING)
    if pending is None:
        pending = session.info[_PENDING] = []

        @event.listens_for(session, "after_commit")
        def _publish(_: Session) -> None:
            ready, pending[:] = list(pending), []
            for item in ready:
                try:
                    publish(item.id, item.kind, countdown=item.countdown)
                except Exception:
                    log.warning(
                        "could not publish message %s; it stays queued for the sweeper",
                        item.id, exc_info=True,
                    )  # fmt: skip

        @event.listens_for(session, "after_rollback")
        def _forget(_: Session) -> None:
            pending.clear()

    return pending
