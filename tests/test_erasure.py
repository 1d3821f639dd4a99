"""DELETE /api/florent/conversations and erase_person: every conversation of a person
goes, with all that hangs from them, a batch at a time; nobody else's."""

from __future__ import annotations

import pytest
from flask import g
from sqlalchemy import text

from florent.auth import Caller
from florent.conversations import erasure, views
from florent.errors import ApiError
from florent.extensions import db
from florent.models import READ

from .conftest import recorded_statements
from .factories import URL, append_message, create_conversation

TABLES = ("conversations", "messages", "idempotency_keys", "socket_tickets")


def rows_of(app, org_id: str, user_id: str) -> dict[str, int]:
    """How many rows each table holds for the person (messages through their
    conversation, so a message left behind would still be counted)."""
    counts = {}
    with app.app_context():
        for table in TABLES:
            owned = (
                "org_id = :org AND conversation_id IN (SELECT id FROM conversations "
                "WHERE org_id = :org AND user_id = :user) OR org_id = :org AND user_id = :user"
                if table == "messages"
                else "org_id = :org AND user_id = :user"
            )
            counts[table] = db.session.execute(
                text(f"SELECT count(*) FROM {table} WHERE {owned}"),
                {"org": org_id, "user": user_id},
            ).scalar_one()
        db.session.rollback()
    return counts


def with_everything(client, caller, title: str) -> str:
    """A conversation with messages, made with an idempotency key, with a socket ticket."""
    response = client.post(URL, json={"title": title}, headers={**caller, "Idempotency-Key": title})
    assert response.status_code == 201
    conversation_id = response.get_json()["conversation"]["_id"]
    append_message(client, caller, conversation_id, f"{title}: one")
    append_message(client, caller, conversation_id, f"{title}: two")
    ticket = client.post(f"{URL}/{conversation_id}/ws-ticket", headers=caller)
    assert ticket.status_code == 201
    return conversation_id


def erase(client, caller) -> dict:
    response = client.delete(URL, headers=caller)
    assert response.status_code == 200
    return response.get_json()


def test_erasing_takes_every_conversation_of_the_caller_and_nobody_else_s(
    app, client, alice, bob, alice_elsewhere
):
    for n in range(3):
        with_everything(client, alice, f"alice-{n}")
    with_everything(client, bob, "bob")
    with_everything(client, alice_elsewhere, "elsewhere")
    everything = {"conversations": 3, "messages": 6, "idempotency_keys": 3, "socket_tickets": 3}
    assert rows_of(app, "org_01ACME", "user_01ALICE") == everything

    assert erase(client, alice) == {"deleted": 3}

    assert rows_of(app, "org_01ACME", "user_01ALICE") == dict.fromkeys(TABLES, 0)
    assert client.get(URL, headers=alice).get_json()["conversations"] == []
    one_of_each = {"conversations": 1, "messages": 2, "idempotency_keys": 1, "socket_tickets": 1}
    assert rows_of(app, "org_01ACME", "user_01BOB") == one_of_each
    assert rows_of(app, "org_02OTHER", "user_01ALICE") == one_of_each


def test_erasing_again_erases_nothing(client, alice):
    with_everything(client, alice, "once")
    assert erase(client, alice) == {"deleted": 1}
    assert erase(client, alice) == {"deleted": 0}


def test_an_erased_conversation_is_gone_and_its_key_makes_a_new_one(client, alice):
    conversation_id = with_everything(client, alice, "again")
    erase(client, alice)
    assert client.get(f"{URL}/{conversation_id}", headers=alice).status_code == 404
    retried = client.post(
        URL, json={"title": "again"}, headers={**alice, "Idempotency-Key": "again"}
    )
    assert retried.status_code == 201
    assert "Idempotent-Replayed" not in retried.headers
    assert retried.get_json()["conversation"]["_id"] != conversation_id


def test_erasure_goes_a_batch_at_a_time(app, client, alice, monkeypatch):
    for n in range(5):
        conversation = create_conversation(client, alice, title=f"c{n}")
        append_message(client, alice, conversation["_id"], "m")
    monkeypatch.setattr(erasure, "BATCH_CONVERSATIONS", 2)

    with recorded_statements(app) as statements:
        assert erase(client, alice) == {"deleted": 5}

    deletes = [sql for sql, _ in statements if sql.startswith("DELETE FROM conversations")]
    assert len(deletes) == 4  # 2, 2, 1, then none left


def test_a_batch_stops_before_too_many_messages_but_takes_at_least_one_conversation(
    app, client, alice, monkeypatch
):
    for n in range(4):
        conversation = create_conversation(client, alice, title=f"c{n}")
        for m in range(3):
            append_message(client, alice, conversation["_id"], f"m{m}")
    monkeypatch.setattr(erasure, "BATCH_MESSAGES", 5)

    with recorded_statements(app) as statements:
        assert erase(client, alice) == {"deleted": 4}

    deletes = [sql for sql, _ in statements if sql.startswith("DELETE FROM conversations")]
    # 3 messages each: a batch takes two (0 and 3 messages before them, under 5).
    assert len(deletes) == 3
    monkeypatch.setattr(erasure, "BATCH_MESSAGES", 1)
    conversation = create_conversation(client, alice, title="big")
    for m in range(3):
        append_message(client, alice, conversation["_id"], f"m{m}")
    assert erase(client, alice) == {"deleted": 1}


def test_erase_person_is_the_same_erasure_for_an_operator(app, client, alice, bob):
    with_everything(client, alice, "alice")
    with_everything(client, bob, "bob")
    with app.app_context():
        assert erasure.erase_person("org_01ACME", "user_01ALICE") == 1
        assert erasure.erase_person("org_01ACME", "user_01ALICE") == 0
        assert erasure.erase_person("org_01ACME", "user_01NOBODY") == 0
    assert rows_of(app, "org_01ACME", "user_01ALICE") == dict.fromkeys(TABLES, 0)
    assert rows_of(app, "org_01ACME", "user_01BOB")["conversations"] == 1


def test_erase_person_also_takes_keys_left_without_a_conversation(app, client, alice):
    with app.app_context():
        db.session.execute(
            text(
                "INSERT INTO idempotency_keys (org_id, user_id, key, request_hash) "
                "VALUES ('org_01ACME', 'user_01ALICE', 'unfinished', '\\x00')"
            )
        )
        db.session.commit()
        assert erasure.erase_person("org_01ACME", "user_01ALICE") == 0
    assert rows_of(app, "org_01ACME", "user_01ALICE")["idempotency_keys"] == 0


def test_erasing_needs_a_token_and_the_write_permission(app, client):
    assert client.delete(URL).status_code == 401
    with app.test_request_context(URL, method="DELETE"):
        g.caller = Caller("org_01ACME", "apikey_x", "x", permissions=frozenset({READ}))
        with pytest.raises(ApiError) as refused:
            views.erase_conversations()
    assert refused.value.status == 403
