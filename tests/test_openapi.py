"""GET /api/openapi.json, and real responses validated against it."""

from __future__ import annotations

import re
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from .factories import CONVERSATION_FIELDS, URL, append_message, create_conversation


@pytest.fixture(scope="module")
def document(app) -> dict[str, Any]:
    response = app.test_client().get("/api/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def validate(document: dict[str, Any], path: str, method: str, response) -> None:
    """Validate a response body against the schema the document declares for its status."""
    responses = document["paths"][path][method]["responses"]
    schema = responses[str(response.status_code)]["content"]["application/json"]["schema"]
    # Carry the components along so "#/components/schemas/..." resolves within the schema.
    Draft202012Validator({**schema, "components": document["components"]}).validate(
        response.get_json()
    )


def test_document_is_openapi_31_with_the_seed_components(document):
    assert document["openapi"] == "3.1.0"
    schemas = document["components"]["schemas"]
    assert schemas["FlorentConversation"]["required"] == CONVERSATION_FIELDS
    assert schemas["FlorentConversation"]["properties"]["lastMessageAt"] == {
        "type": ["string", "null"]
    }
    assert schemas["FlorentConversationResponse"]["required"] == ["conversation"]
    assert schemas["ErrorResponse"]["required"] == ["error"]
    create = document["paths"]["/florent/conversations"]["post"]
    assert create["operationId"] == "post-florent-conversations"
    assert create["responses"]["201"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/FlorentConversationResponse"
    }
    assert set(create["requestBody"]["content"]["application/json"]["schema"]["properties"]) == {
        "title",
        "userDisplay",
        "timezone",
    }
    operations = {(p, m) for p, item in document["paths"].items() for m in item}
    assert operations == {
        ("/florent/conversations", "post"),
        ("/florent/conversations", "get"),
        ("/florent/conversations/{id}", "get"),
        ("/florent/conversations/{id}", "patch"),
        ("/florent/conversations/{id}", "delete"),
        ("/florent/conversations/{id}/messages", "post"),
    }


def test_document_needs_no_token(client):
    assert client.get("/api/openapi.json").status_code == 200


def test_real_responses_match_the_document(client, document, alice):
    create = client.post(URL, json={"title": "Spec"}, headers=alice)
    validate(document, "/florent/conversations", "post", create)
    conversation_id = create.get_json()["conversation"]["_id"]
    item = "/florent/conversations/{id}"

    message = client.post(
        f"{URL}/{conversation_id}/messages", json={"content": "hi"}, headers=alice
    )
    validate(document, item + "/messages", "post", message)
    validate(document, item, "get", client.get(f"{URL}/{conversation_id}", headers=alice))
    validate(
        document,
        item,
        "patch",
        client.patch(f"{URL}/{conversation_id}", json={"title": "T"}, headers=alice),
    )
    create_conversation(client, alice)
    listing = client.get(URL + "?limit=1", headers=alice)
    validate(document, "/florent/conversations", "get", listing)
    assert listing.get_json()["nextCursor"]

    errors = [
        ("/florent/conversations", "post", client.post(URL, json={"title": 1}, headers=alice)),
        ("/florent/conversations", "post", client.post(URL, json={})),
        ("/florent/conversations", "get", client.get(URL + "?limit=0", headers=alice)),
        (item, "get", client.get(f"{URL}/{'0' * 24}", headers=alice)),
        (item, "patch", client.patch(f"{URL}/{conversation_id}", json={}, headers=alice)),
        (
            item + "/messages",
            "post",
            client.post(f"{URL}/{'0' * 24}/messages", json={"content": "x"}, headers=alice),
        ),
    ]
    for path, method, response in errors:
        assert response.status_code in (400, 401, 404)
        validate(document, path, method, response)

    deleted = client.delete(f"{URL}/{conversation_id}", headers=alice)
    assert deleted.status_code == 204
    assert "204" in document["paths"][item]["delete"]["responses"]


def test_timestamps_in_responses_are_utc_milliseconds(client, alice):
    conversation = create_conversation(client, alice)
    message = append_message(client, alice, conversation["_id"], "x")["message"]
    for value in (conversation["createdAt"], conversation["updatedAt"], message["createdAt"]):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", value)
