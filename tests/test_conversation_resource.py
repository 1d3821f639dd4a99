"""GET (one), PATCH and DELETE of a conversation."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from florent.extensions import db
from florent.models import Conversation, Message

from .factories import URL, append_message, create_conversation


def test_get_returns_the_conversation_and_its_messages_oldest_first(client, alice):
    conversation = create_conversation(client, alice, title="Plans")
    for text in ["first", "second", "third"]:
        append_message(client, alice, conversation["_id"], text)

    response = client.get(f"{URL}/{conversation['_id']}", headers=alice)

    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"conversation", "messages", "olderMessagesCursor"}
    assert body["olderMessagesCursor"] is None
    assert body["conversation"]["_id"] == conversation["_id"]
    assert body["conversation"]["messageCount"] == 3
    assert [m["content"] for m in body["messages"]] == ["first", "second", "third"]
    assert all(
        m["conversationId"] == conversation["_id"] and m["role"] == "user" for m in body["messages"]
    )
    assert body["conversation"]["lastMessageAt"] == body["messages"][-1]["createdAt"]


def test_get_of_an_empty_conversation_has_no_messages(client, alice):
    conversation = create_conversation(client, alice)
    body = client.get(f"{URL}/{conversation['_id']}", headers=alice).get_json()
    assert body == {"conversation": conversation, "messages": [], "olderMessagesCursor": None}


@pytest.mark.parametrize(
    "conversation_id",
    [
        "0" * 24,
        "ffffffffffffffffffffffff",
        "not-an-id",
        "ABCDEF0123456789ABCDEF01",
        "0" * 25,
        "%00",
        "' OR 1=1 --",
    ],
)
def test_unknown_or_malformed_id_is_404_everywhere(client, alice, conversation_id):
    for method, body in [("get", None), ("patch", {"title": "x"}), ("delete", None)]:
        response = getattr(client, method)(f"{URL}/{conversation_id}", json=body, headers=alice)
        assert response.status_code == 404, (method, conversation_id)
        assert response.get_json() == {"error": "not_found"}
    response = client.post(
        f"{URL}/{conversation_id}/messages", json={"content": "hi"}, headers=alice
    )
    assert response.status_code == 404
    assert response.get_json() == {"error": "not_found"}


def test_rename_changes_the_title_and_moves_updated_at_forward(client, alice):
    conversation = create_conversation(client, alice, title="Old")

    response = client.patch(
        f"{URL}/{conversation['_id']}", json={"title": "New title"}, headers=alice
    )

    assert response.status_code == 200
    renamed = response.get_json()["conversation"]
    assert renamed["title"] == "New title"
    assert renamed["updatedAt"] > conversation["updatedAt"]
    assert renamed["createdAt"] == conversation["createdAt"]
    assert (
        client.get(f"{URL}/{conversation['_id']}", headers=alice).get_json()["conversation"]
        == renamed
    )


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, "required"),
        ({"title": None}, "invalid_type"),
        ({"title": 3}, "invalid_type"),
        ({"title": ""}, "too_short"),
        ({"title": "x" * 121}, "too_long"),
        ({"title": "bad\u0000"}, "invalid_character"),
    ],
)
def test_rename_with_an_invalid_title_is_400(client, alice, body, code):
    conversation = create_conversation(client, alice, title="Keep")

    response = client.patch(f"{URL}/{conversation['_id']}", json=body, headers=alice)

    assert response.status_code == 400
    payload = response.get_json()
    assert payload["error"] == "invalid_body"
    assert [(i["path"], i["code"]) for i in payload["issues"]] == [(["title"], code)]
    assert (
        client.get(f"{URL}/{conversation['_id']}", headers=alice).get_json()["conversation"][
            "title"
        ]
        == "Keep"
    )


def test_rename_with_malformed_json_is_400(client, alice):
    conversation = create_conversation(client, alice)
    response = client.patch(
        f"{URL}/{conversation['_id']}",
        data=b'{"title":',
        headers={**alice, "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_body"


def test_delete_removes_the_conversation_and_its_messages(app, client, alice):
    conversation = create_conversation(client, alice)
    keep = create_conversation(client, alice)
    append_message(client, alice, conversation["_id"], "one")
    append_message(client, alice, conversation["_id"], "two")
    append_message(client, alice, keep["_id"], "kept")

    response = client.delete(f"{URL}/{conversation['_id']}", headers=alice)

    assert response.status_code == 204
    assert response.data == b""
    assert "Content-Type" not in response.headers  # no body, so no type (not text/html)
    assert client.get(f"{URL}/{conversation['_id']}", headers=alice).status_code == 404
    assert client.delete(f"{URL}/{conversation['_id']}", headers=alice).status_code == 404
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Message)) == 1
        assert db.session.scalars(select(Conversation.id)).all() == [keep["_id"]]


def test_endpoints_need_a_token(client, alice):
    conversation = create_conversation(client, alice)
    for method, path in [
        ("get", URL),
        ("get", f"{URL}/{conversation['_id']}"),
        ("patch", f"{URL}/{conversation['_id']}"),
        ("delete", f"{URL}/{conversation['_id']}"),
        ("post", f"{URL}/{conversation['_id']}/messages"),
    ]:
        response = getattr(client, method)(path, json={"title": "x", "content": "x"})
        assert response.status_code == 401, (method, path)
        assert response.get_json() == {"error": "unauthorized"}
