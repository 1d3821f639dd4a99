"""Test data through the API, the way clients make it."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient

from florent.audit import Actor
from florent.auth.apikeys import API_KEY_PATTERN

URL = "/api/florent/conversations"
# Who the audit trail says made the tests' own keys and accounts.
TESTER = Actor("operator", "tests")
# A conversation's fields in the seed's order (its OpenAPI `required` list).
CONVERSATION_FIELDS = [
    "_id",
    "userId",
    "title",
    "model",
    "messageCount",
    "lastMessageAt",
    "createdAt",
    "updatedAt",
]


def create_conversation(client: FlaskClient, caller: dict[str, str], **body: Any) -> dict[str, Any]:
    response = client.post(URL, json=body, headers=caller)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["conversation"]


def append_message(
    client: FlaskClient, caller: dict[str, str], conversation_id: str, content: str
) -> dict[str, Any]:
    response = client.post(
        f"{URL}/{conversation_id}/messages", json={"content": content}, headers=caller
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def api_key_secret(plaintext: str) -> str:
    """The secret part of a plaintext API key (it may itself contain underscores)."""
    return API_KEY_PATTERN.fullmatch(plaintext).group(2)
