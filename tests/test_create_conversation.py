"""POST /api/florent/conversations, per the seed and florent-api.md."""

from __future__ import annotations

import re

import pytest
from flask import url_for
from sqlalchemy import select

from florent.extensions import db
from florent.models import Conversation

from .factories import CONVERSATION_FIELDS, URL

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
FIELDS = set(CONVERSATION_FIELDS)


def stored(app, conversation_id: str) -> Conversation:
    with app.app_context():
        return db.session.scalars(
            select(Conversation).where(Conversation.id == conversation_id)
        ).one()


def test_create_with_empty_object_returns_201_and_the_new_conversation(client, alice):
    response = client.post(URL, json={}, headers=alice)

    assert response.status_code == 201
    assert response.mimetype == "application/json"
    conversation = response.get_json()["conversation"]
    assert set(conversation) == FIELDS
    assert re.fullmatch(r"[0-9a-f]{24}", conversation["_id"])
    assert conversation["userId"] == "user_01ALICE"
    assert conversation["title"] == "New conversation"
    assert conversation["model"] == "florent-test-model"
    assert conversation["messageCount"] == 0
    assert conversation["lastMessageAt"] is None
    assert TIMESTAMP.fullmatch(conversation["createdAt"])
    assert conversation["createdAt"] == conversation["updatedAt"]
    assert response.headers["Location"] == f"{URL}/{conversation['_id']}"


@pytest.mark.parametrize("base_url", ["http://localhost/", "http://localhost/mounted/"])
def test_location_is_the_url_of_the_new_conversation(app, client, alice, base_url):
    """Also when the app is mounted under a prefix (SCRIPT_NAME)."""
    response = client.post(URL, json={}, headers=alice, base_url=base_url)
    conversation_id = response.get_json()["conversation"]["_id"]
    with app.test_request_context(base_url=base_url):
        expected = url_for("api.conversations.get_conversation", conversation_id=conversation_id)
    assert response.headers["Location"] == expected
    found = client.get(f"{URL}/{conversation_id}", headers=alice, base_url=base_url)
    assert found.status_code == 200


def test_create_stores_every_field_scoped_to_the_caller(app, client, alice):
    body = {"title": "Q2 plan", "userDisplay": "Alice", "timezone": "Europe/Paris"}
    conversation = client.post(URL, json=body, headers=alice).get_json()["conversation"]

    row = stored(app, conversation["_id"])
    assert (row.org_id, row.user_id) == ("org_01ACME", "user_01ALICE")
    assert (row.title, row.user_display, row.timezone) == ("Q2 plan", "Alice", "Europe/Paris")
    assert row.message_count == 0 and row.last_message_at is None
    assert row.created_at == row.updated_at


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (b"", None),
        (b"", "application/json"),
        (b"  \n", "application/json"),
        (b'{"title": "From curl -d"}', "application/x-www-form-urlencoded"),
        (b'{"title": "No content type"}', None),
        (b'{"title": "Plain"}', "text/plain"),
    ],
)
def test_body_is_json_whatever_the_content_type_and_empty_means_empty_object(
    client, alice, data, content_type
):
    headers = dict(alice)
    if content_type:
        headers["Content-Type"] = content_type
    response = client.post(URL, data=data, headers=headers)

    assert response.status_code == 201, response.get_json()
    expected = (data.decode().strip() and data.decode().split('"')[3]) or "New conversation"
    assert response.get_json()["conversation"]["title"] == expected


def test_unknown_keys_are_ignored(client, alice):
    response = client.post(
        URL, json={"title": "T", "model": "evil", "userId": "x", "foo": 1}, headers=alice
    )

    assert response.status_code == 201
    conversation = response.get_json()["conversation"]
    assert (conversation["model"], conversation["userId"]) == ("florent-test-model", "user_01ALICE")


@pytest.mark.parametrize(
    "body",
    [
        {"title": "x" * 120},
        {"title": "😀" * 120},  # 120 code points, 480 bytes
        {"title": "é"},
        {"title": "tab\tand\nnewline"},
        {"userDisplay": "d" * 200, "timezone": "t" * 100},
        {"userDisplay": "", "timezone": ""},
    ],
)
def test_accepts_strings_up_to_their_limits_in_code_points(app, client, alice, body):
    response = client.post(URL, json=body, headers=alice)

    assert response.status_code == 201
    row = stored(app, response.get_json()["conversation"]["_id"])
    assert row.title == body.get("title", "New conversation")
    assert row.user_display == body.get("userDisplay")


@pytest.mark.parametrize(
    ("body", "path", "code"),
    [
        ({"title": None}, ["title"], "invalid_type"),
        ({"title": 5}, ["title"], "invalid_type"),
        ({"title": ["a"]}, ["title"], "invalid_type"),
        ({"title": {"a": 1}}, ["title"], "invalid_type"),
        ({"title": True}, ["title"], "invalid_type"),
        ({"title": ""}, ["title"], "too_short"),
        ({"title": "x" * 121}, ["title"], "too_long"),
        ({"title": "😀" * 121}, ["title"], "too_long"),
        ({"userDisplay": "d" * 201}, ["userDisplay"], "too_long"),
        ({"userDisplay": None}, ["userDisplay"], "invalid_type"),
        ({"timezone": "t" * 101}, ["timezone"], "too_long"),
        ({"timezone": 1.5}, ["timezone"], "invalid_type"),
        ({"title": "nul\u0000byte"}, ["title"], "invalid_character"),
        ({"title": "bell\u0007"}, ["title"], "invalid_character"),
        ({"title": "esc\u001b[31m"}, ["title"], "invalid_character"),
        ({"title": "cr\r"}, ["title"], "invalid_character"),
        ({"title": "del\u007f"}, ["title"], "invalid_character"),
        ({"title": "c1\u0085"}, ["title"], "invalid_character"),
        ({"userDisplay": "\u0000"}, ["userDisplay"], "invalid_character"),
    ],
)
def test_invalid_fields_are_400_invalid_body_with_issues(client, alice, body, path, code):
    response = client.post(URL, json=body, headers=alice)

    assert response.status_code == 400
    payload = response.get_json()
    assert payload["error"] == "invalid_body"
    assert [(i["path"], i["code"]) for i in payload["issues"]] == [(path, code)]
    assert payload["issues"][0]["message"]


def test_every_invalid_field_is_reported(client, alice):
    response = client.post(
        URL, json={"title": None, "userDisplay": 1, "timezone": "x" * 101}, headers=alice
    )

    assert response.status_code == 400
    paths = sorted(i["path"][0] for i in response.get_json()["issues"])
    assert paths == ["timezone", "title", "userDisplay"]


@pytest.mark.parametrize(
    "raw",
    [
        b'{"title": "\\ud800"}',  # lone surrogate: Python's json would accept it
        b'{"title": "\\udfff x"}',
        b'{"title": "unterminated',
        b'{"title": "x",}',
        b"{'title': 'single quotes'}",
        b"\xff\xfe{}",
        b'{"title": "\xc3\x28"}',  # invalid UTF-8
        b"[" * 100_000,
        b"[" * 100_000 + b"]" * 100_000,
        b"NaN",
        b'{"title": 1e999}',
    ],
)
def test_malformed_json_is_a_json_400(client, alice, raw):
    response = client.post(URL, data=raw, headers={**alice, "Content-Type": "application/json"})

    assert response.status_code == 400
    assert response.mimetype == "application/json"
    assert response.get_json()["error"] == "invalid_body"


@pytest.mark.parametrize("raw", [b"[]", b"[{}]", b'"title"', b"42", b"null", b"true"])
def test_json_that_is_not_an_object_is_400(client, alice, raw):
    response = client.post(URL, data=raw, headers={**alice, "Content-Type": "application/json"})

    assert response.status_code == 400
    payload = response.get_json()
    assert payload["error"] == "invalid_body"
    assert payload["issues"] == [
        {"path": [], "code": "invalid_type", "message": "Expected a JSON object."}
    ]


def test_nothing_is_stored_on_a_rejected_create(app, client, alice):
    client.post(URL, json={"title": "x" * 121}, headers=alice)

    with app.app_context():
        assert db.session.scalars(select(Conversation)).all() == []


def test_without_a_token_is_401_json(client):
    response = client.post(URL, json={})

    assert response.status_code == 401
    assert response.get_json() == {"error": "unauthorized"}
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_an_api_key_creates_conversations_owned_by_its_own_identity(app, client, robot, api_key):
    conversation = client.post(URL, json={"title": "By key"}, headers=robot).get_json()[
        "conversation"
    ]

    assert conversation["userId"] == f"apikey_{api_key[0]}"
    row = stored(app, conversation["_id"])
    assert row.org_id == "org_01ACME"
