"""Every claim, lease and state move of a message: the state machine holds for each of them,
leaving ``sending`` always clears the lease, and a claim of one message or of a chunk takes the
same rows."""

from __future__ import annotations

import ast
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

import worker
from worker.ledger import accounts, messages, moves, status
from worker.ledger.schema import SmsMessage

NOW = datetime(2024, 11, 24, 12, 0, tzinfo=UTC)
LIVE = NOW + timedelta(minutes=1)  # a lease still held at NOW
RAN_OUT = NOW - timedelta(minutes=1)  # a lease that ran out before NOW
OWNER = "w1"


def add(session: Session, **fields: Any) -> uuid.UUID:
    """A message with ``fields`` set as stored (its state, lease, account...); its id."""
    values = {
        "account": "default",
        "kind": status.MARKETING,
        "nationcode": "86",
        "mobile": f"137{uuid.uuid4().int % 10**8:08d}",
        "tpl_id": 7839,
        "params": ["1234"],
        **fields,
    }
    message, created = messages.insert_message(session, **values)
    assert created
    session.commit()
    return message.id


def held(session: Session, **fields: Any) -> uuid.UUID:
    """A message ``sending`` under OWNER's live lease."""
    return add(session, status=status.SENDING, lease_owner=OWNER, lease_until=LIVE, **fields)


def stored(session: Session, message_id: uuid.UUID) -> SmsMessage:
    session.expire_all()
    message = messages.get_message(session, message_id)
    assert message is not None
    return message


# --- (a) no move leaves a state the state machine does not let it leave -----------------------

Move = Callable[[Session, uuid.UUID], object]

REFUSED: list[tuple[str, str, Move]] = [
    ("cancel_queued", status.SENT, lambda s, i: moves.cancel_queued(s, ids=[i], reason="x")),
    ("cancel_queued", status.SENDING, lambda s, i: moves.cancel_queued(s, ids=[i], reason="x")),
    ("expire_queued", status.DELIVERED, lambda s, i: moves.expire_queued(s, _batch(s, i), "x")),
    ("expire_queued", status.SENDING, lambda s, i: moves.expire_queued(s, _batch(s, i), "x")),
    ("claim_chunk", status.FAILED, lambda s, i: moves.claim_chunk(s, [i], OWNER, NOW, 60)),
    ("claim_chunk", status.SENT, lambda s, i: moves.claim_chunk(s, [i], OWNER, NOW, 60)),
    ("claim_message", status.UNKNOWN, lambda s, i: moves.claim_message(s, i, OWNER, 60, NOW)),
    ("mark_handed_over", status.SENT, lambda s, i: moves.mark_handed_over(s, [i], NOW, 60)),
    ("mark_handed_over", status.SENDING, lambda s, i: moves.mark_handed_over(s, [i], NOW, 60)),
    ("hold_chunk", status.FAILED, lambda s, i: moves.hold_chunk(s, [i], OWNER, NOW, 60)),
    ("requeue", status.SENT, lambda s, i: moves.requeue(s, i, OWNER, None, "x")),
    ("requeue_many", status.EXPIRED, lambda s, i: moves.requeue_many(s, [i], OWNER, None, "x")),
    ("end_many", status.QUEUED, lambda s, i: moves.end_many(s, [i], OWNER, status.FAILED)),
    (
        "transition",
        status.DELIVERED,
        lambda s, i: moves.transition(s, i, status.UNDELIVERED, from_statuses=(status.SENT,)),
    ),
    (
        "transition_many",
        status.QUEUED,
        lambda s, i: moves.transition_many(
            s, {i: {"sid": "x"}}, status.SENT, from_statuses=(status.SENDING,)
        ),
    ),
]


def _batch(session: Session, message_id: uuid.UUID) -> uuid.UUID:
    batch_id = stored(session, message_id).batch_id
    assert batch_id is not None
    return batch_id


@pytest.mark.parametrize(
    ("move", "state", "call"), REFUSED, ids=[f"{m}-{s}" for m, s, _ in REFUSED]
)
def test_a_move_leaves_a_message_in_a_state_it_does_not_apply_to_alone(
    ledger_session: Session, move: str, state: str, call: Move
) -> None:
    # Every field a move could match on matches: only the state is wrong for it.
    message_id = add(
        ledger_session, status=state, lease_owner=OWNER, lease_until=RAN_OUT,
        batch_id=uuid.uuid4(),
    )  # fmt: skip
    before = stored(ledger_session, message_id)
    seen = (before.status, before.lease_owner, before.lease_until, before.updated_at)
    assert not call(ledger_session, message_id)
    ledger_session.commit()
    after = stored(ledger_session, message_id)
    assert (after.status, after.lease_owner, after.lease_until, after.updated_at) == seen


@pytest.mark.parametrize(
    ("to_status", "from_statuses"),
    [
        (status.DELIVERED, (status.SENDING,)),  # only a report delivers, after `sent`
        (status.QUEUED, (status.SENT,)),  # nothing out of our hands comes back
        (status.SENDING, (status.FAILED,)),
        (status.CANCELLED, (status.SENDING,)),  # a claimed message is handed back first
        (status.SENT, ()),  # from nowhere
    ],
)
def test_every_builder_of_a_move_refuses_what_next_forbids(
    ledger_session: Session, to_status: str, from_statuses: tuple[str, ...]
) -> None:
    message_id = held(ledger_session)
    with pytest.raises(ValueError, match="no transition"):
        moves.transition(ledger_session, message_id, to_status, from_statuses=from_statuses)
    with pytest.raises(ValueError, match="no transition"):
        moves.transition_many(ledger_session, {}, to_status, from_statuses=from_statuses)
    if from_statuses == (status.SENDING,):
        with pytest.raises(ValueError, match="no transition"):
            moves.end_many(ledger_session, [message_id], OWNER, to_status)


# --- (b) leaving `sending` always clears the lease ---------------------------------------------

LEAVING_SENDING: list[tuple[str, Callable[[Session, uuid.UUID], object]]] = [
    *(
        (
            f"transition-{to}",
            lambda s, i, to=to: moves.transition(
                s, i, to, from_statuses=(status.SENDING,), owner=OWNER
            ),
        )
        for to in sorted(status.NEXT[status.SENDING])
    ),
    *(
        (
            f"transition_many-{to}",
            lambda s, i, to=to: moves.transition_many(
                s, {i: {"reason": "r"}}, to, from_statuses=(status.SENDING,), owner=OWNER
            ),
        )
        for to in sorted(status.NEXT[status.SENDING])
    ),
    *(
        (f"end_many-{to}", lambda s, i, to=to: moves.end_many(s, [i], OWNER, to, reason="r"))
        for to in sorted(status.NEXT[status.SENDING])
    ),
    ("requeue", lambda s, i: moves.requeue(s, i, OWNER, None, "r")),
    ("requeue_many", lambda s, i: moves.requeue_many(s, [i], OWNER, LIVE, "r")),
]


@pytest.mark.parametrize(("move", "call"), LEAVING_SENDING, ids=[m for m, _ in LEAVING_SENDING])
def test_every_move_out_of_sending_clears_the_lease(
    ledger_session: Session, move: str, call: Callable[[Session, uuid.UUID], object]
) -> None:
    message_id = held(ledger_session)
    assert call(ledger_session, message_id)
    ledger_session.commit()
    message = stored(ledger_session, message_id)
    assert message.status != status.SENDING
    assert (message.lease_owner, message.lease_until) == (None, None)


def test_a_lease_renewal_keeps_the_state_and_the_owner(ledger_session: Session) -> None:
    message_id = held(ledger_session)
    (renewed,) = moves.hold_chunk(ledger_session, [message_id], OWNER, NOW, 600)
    assert (renewed.status, renewed.lease_owner) == (status.SENDING, OWNER)
    assert renewed.lease_until == NOW + timedelta(seconds=600)
    assert moves.hold_chunk(ledger_session, [message_id], "w2", NOW, 600) == []


# --- (c) one claimable predicate --------------------------------------------------------------


def test_a_claim_of_one_message_and_of_a_chunk_take_the_same_rows(
    ledger_session: Session,
) -> None:
    assert accounts.pause_account(ledger_session, "paused", code=None, reason="t", now=RAN_OUT)
    ledger_session.commit()
    cases = {
        "due": (True, {"status": status.QUEUED}),
        "due at last": (True, {"status": status.QUEUED, "not_before": RAN_OUT}),
        "not due": (False, {"status": status.QUEUED, "not_before": LIVE}),
        # Handed to a single-send task: that task claims it, so a claim ignores the mark.
        "handed over": (True, {"status": status.QUEUED, "lease_until": LIVE}),
        "held": (False, {"status": status.SENDING, "lease_owner": "w0", "lease_until": LIVE}),
        "lost": (True, {"status": status.SENDING, "lease_owner": "w0", "lease_until": RAN_OUT}),
        "paused, due": (False, {"status": status.QUEUED, "account": "paused"}),
        "paused, lost": (
            False,
            {"status": status.SENDING, "lease_until": RAN_OUT, "account": "paused"},
        ),
        **{
            state: (False, {"status": state})
            for state in status.MESSAGE_STATUSES
            if state not in status.CLAIMABLE
        },
    }
    ids = {name: add(ledger_session, **fields) for name, (_, fields) in cases.items()}
    expected = {name for name, (claimable, _) in cases.items() if claimable}

    by_chunk = set(moves.claim_chunk(ledger_session, list(ids.values()), OWNER, NOW, 60))
    ledger_session.rollback()
    one_by_one = {
        message_id
        for message_id in ids.values()
        if moves.claim_message(ledger_session, message_id, OWNER, 60, NOW) is not None
    }
    names = {message_id: name for name, message_id in ids.items()}
    assert {names[i] for i in by_chunk} == {names[i] for i in one_by_one} == expected


# --- one home ---------------------------------------------------------------------------------


def test_every_write_to_sms_messages_state_or_lease_is_in_moves() -> None:
    """An UPDATE of ``sms_messages`` anywhere else would skip the state machine and the lease
    rule (and, later, the outbox)."""
    message_tables = {"SmsMessage", "_MESSAGES"}
    elsewhere = []
    for path in sorted(Path(worker.__file__).parent.rglob("*.py")):
        if path.name == "moves.py" and path.parent.name == "ledger":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "update"
                and node.args
                and isinstance(node.args[0], ast.Name)
                and node.args[0].id in message_tables
            ):
                elsewhere.append(f"{path.name}:{node.lineno}")
    assert elsewhere == []
