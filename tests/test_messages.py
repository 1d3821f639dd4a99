"""POST /api/florent/conversations/{id}/messages: append, atomically."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import func, select

from florent.extensions import db
from florent.models import Conversation, Message

from .factories import URL, append_message, create_conversation


def test_append_stores_the_message_and_updates_the_conversation(app, client, alice):
    conversation = create_conversation(client, alice)

    response = client.post(
        f"{URL}/{conversation['_id']}/messages", json={"content": "Hello\n\tFlorent"}, headers=alice
    )

    assert response.status_code == 201
    body = response.get_json()
    message, updated = body["message"], body["conversation"]
    assert set(message) == {"_id", "conversationId", "role", "content", "status", "createdAt"}
    assert message["status"] == "complete"
    assert len(message["_id"]) == 24
    assert (message["conversationId"], message["role"], message["content"]) == (
        conversation["_id"],
        "user",
        "Hello\n\tFlorent",
    )
    assert updated["messageCount"] == 1
    assert updated["lastMessageAt"] == message["createdAt"] == updated["updatedAt"]
    assert updated["updatedAt"] > conversation["updatedAt"]
    with app.app_context():
        row = db.session.get(Message, ("org_01ACME", message["_id"]))
        assert (row.conversation_id, row.role, row.content) == (
            conversation["_id"],
            "user",
            "Hello\n\tFlorent",
        )


def test_content_up_to_32000_code_points_is_accepted(client, alice):
    conversation = create_conversation(client, alice)
    body = append_message(client, alice, conversation["_id"], "🙂" * 32_000)
    assert len(body["message"]["content"]) == 32_000


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, "required"),
        ({"content": None}, "invalid_type"),
        ({"content": ["hi"]}, "invalid_type"),
        ({"content": ""}, "too_short"),
        ({"content": "x" * 32_001}, "too_long"),
        ({"content": "nul \u0000"}, "invalid_character"),
        ({"content": "bell \u0007"}, "invalid_character"),
    ],
)
def test_invalid_content_is_400_and_changes_nothing(app, client, alice, body, code):
    conversation = create_conversation(client, alice)

    response = client.post(f"{URL}/{conversation['_id']}/messages", json=body, headers=alice)

    assert response.status_code == 400
    payload = response.get_json()
    assert payload["error"] == "invalid_body"
    assert [(i["path"], i["code"]) for i in payload["issues"]] == [(["content"], code)]
    with app.app_context():
        assert db.session.get(Conversation, ("org_01ACME", conversation["_id"])).message_count == 0
        assert db.session.scalar(select(func.count()).select_from(Message)) == 0


def test_lone_surrogate_content_is_400(client, alice):
    conversation = create_conversation(client, alice)
    response = client.post(
        f"{URL}/{conversation['_id']}/messages",
        data=b'{"content": "\\ud83d"}',
        headers={**alice, "Content-Type": "application/json"},
    )
    assert response.status_code == 400


def test_messages_keep_a_strict_order_even_within_one_millisecond(client, alice):
    conversation = create_conversation(client, alice)
    created = [
        append_message(client, alice, conversation["_id"], str(i))["message"] for i in range(20)
    ]

    times = [m["createdAt"] for m in created]
    assert times == sorted(times) and len(set(times)) == 20
    messages = client.get(f"{URL}/{conversation['_id']}", headers=alice).get_json()["messages"]
    assert [m["content"] for m in messages] == [str(i) for i in range(20)]


def test_fifty_concurrent_appends_lose_nothing(app, client, alice, live_server):
    conversation = create_conversation(client, alice)
    url = f"{live_server}{URL}/{conversation['_id']}/messages"

    def append(i: int) -> int:
        return requests.post(
            url, json={"content": f"message {i}"}, headers=alice, timeout=30
        ).status_code

    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(append, range(50)))

    assert statuses == [201] * 50
    body = client.get(f"{URL}/{conversation['_id']}", headers=alice).get_json()
    assert body["conversation"]["messageCount"] == 50
    assert sorted(m["content"] for m in body["messages"]) == sorted(
        f"message {i}" for i in range(50)
    )
    assert body["conversation"]["lastMessageAt"] == body["messages"][-1]["createdAt"]
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Message)) == 50
        assert db.session.get(Conversation, ("org_01ACME", conversation["_id"])).message_count == 50
