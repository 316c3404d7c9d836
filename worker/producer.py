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
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from worker.config import Settings
from worker.ledger import messages
from worker.ledger.status import KINDS, NOTIFICATION, QUEUED, VERIFICATION
from worker.tencent import InvalidInput, Phone, check_length, check_params, parse_phone

log = logging.getLogger(__name__)

Publisher = Callable[..., None]  # publish(message_id, kind, *, countdown=None)
MAX_KEY_LENGTH = 128
# Messages due within this many seconds are published with a countdown; later ones are left
# to the sweeper, so no long ETA message ever sits in the broker.
MAX_PUBLISH_DELAY_SECONDS = 300.0
SWEEPER_PUBLISHES = -1.0
_PENDING = "sms_pending_publish"


@dataclass(frozen=True, slots=True)
class Enqueued:
    """A message accepted for sending. ``created`` is False when its idempotency key was
    used before: ``id`` is then the earlier message and nothing more will be sent."""

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

    def enqueue(
        self,
        to: str,
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
    ) -> Enqueued:
        """Accept one SMS to ``to`` (E.164, or a national number with ``nationcode``)."""
        (enqueued,) = self.enqueue_many(
            [to], template=template, params=params, text=text, sign=sign, kind=kind,
            nationcode=nationcode, account=account, idempotency_key=idempotency_key, ext=ext,
            extend=extend, not_before=not_before, expires_at=expires_at, session=session,
        )  # fmt: skip
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
        any is written. With ``idempotency_key``, recipient ``i`` gets the key ``key:i`` (one
        recipient: the key itself)."""
        now = datetime.now(UTC)
        phones = [parse_phone(number, nationcode) for number in recipients]
        if not phones:
            raise InvalidInput("to", "no recipients given")
        fields = self._validated_fields(
            template=template, params=params, text=text, sign=sign, kind=kind, account=account,
            idempotency_key=idempotency_key, ext=ext, extend=extend, not_before=not_before,
            expires_at=expires_at, now=now,
        )  # fmt: skip
        keys = _keys(idempotency_key, len(phones))
        countdown = _countdown(not_before, now)
        if session is not None:
            return self._write(session, phones, keys, fields, countdown)
        with self.sessions() as own:
            enqueued = self._write(own, phones, keys, fields, countdown)
            own.commit()
        return enqueued

    def _write(
        self,
        session: Session,
        phones: Sequence[Phone],
        keys: Sequence[str | None],
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
        # One statement for all the rows; a row whose key was used before is looked up after.
        inserted = set(messages.insert_messages(session, rows))
        results: list[Enqueued] = []
        pending = _pending_for(session, self.publish)
        for row in rows:
            if row["id"] in inserted:
                message_id, created, status = row["id"], True, row["status"]
            else:
                message, created = messages.insert_message(session, **row)
                message_id, status = message.id, message.status
            results.append(Enqueued(message_id, created, status))
            if created and countdown != SWEEPER_PUBLISHES:
                pending.append(_Pending(message_id, fields["kind"], countdown))
        return results

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
    ) -> dict[str, Any]:
        if kind not in KINDS:
            raise InvalidInput("kind", f"{kind!r} is not one of {', '.join(KINDS)}")
        name = account or self.settings.default_account_name
        known = ", ".join(self.settings.account_names) or "none"
        if name is None:
            raise InvalidInput("account", f"none named and no default account (known: {known})")
        if name not in self.settings.account_names:
            raise InvalidInput("account", f"{name!r} is not configured (known: {known})")
        if (template is None) == (text is None):
            raise InvalidInput("template", "give either a template id or a text, not both")
        if template is not None:
            if isinstance(template, bool) or not isinstance(template, int) or template <= 0:
                raise InvalidInput("template", f"{template!r} is not a positive template id")
            params = [str(param) for param in params]
            check_params(params, verification=kind == VERIFICATION)
        elif text is not None:
            if not text.strip():
                raise InvalidInput("text", "is empty")
            check_length(text)
        if idempotency_key is not None and not 0 < len(idempotency_key) <= MAX_KEY_LENGTH:
            raise InvalidInput("idempotency_key", f"must be 1..{MAX_KEY_LENGTH} characters")
        if extend and not extend.isdigit():
            raise InvalidInput("extend", f"{extend!r} must be digits only")
        for name_, moment in (("not_before", not_before), ("expires_at", expires_at)):
            if moment is not None and moment.tzinfo is None:
                raise InvalidInput(name_, "must be a timezone-aware datetime")
        deadline = expires_at or (not_before or now) + self.settings.ttl(kind)
        if deadline <= now:
            raise InvalidInput("expires_at", "is already in the past")
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


def _keys(key: str | None, count: int) -> list[str | None]:
    if key is None:
        return [None] * count
    return [key] if count == 1 else [f"{key}:{index}" for index in range(count)]


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
