"""GET /api/openapi.json, and real responses validated against it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from .factories import URL, append_message, create_conversation


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


SEED_PAGE = (
    Path(__file__).resolve().parent.parent / "docs" / "seed" / "post-florent-conversations.md"
)


@pytest.fixture(scope="module")
def seed() -> dict[str, Any]:
    """The OpenAPI fragment of the seed page (the public reference of the create endpoint)."""
    fragment = re.search(r"```yaml\n(.*?)```", SEED_PAGE.read_text(), re.S).group(1)
    return yaml.safe_load(fragment)


def without_order(schema: dict[str, Any]) -> dict[str, Any]:
    """`required` is a set in JSON Schema: compare it as one."""
    return {**schema, "required": sorted(schema.get("required", []))}


@pytest.mark.parametrize(
    "name", ["FlorentConversation", "FlorentConversationResponse", "ErrorResponse"]
)
def test_the_seed_components_are_kept_name_for_name_and_field_for_field(document, seed, name):
    ours = document["components"]["schemas"][name]
    assert without_order(ours) == without_order(seed["components"]["schemas"][name])


def test_the_seed_operation_is_kept(document, seed):
    assert document["openapi"] == "3.1.0"
    assert document["servers"] == seed["servers"]
    assert document["components"]["securitySchemes"] == seed["components"]["securitySchemes"]
    theirs = seed["paths"]["/florent/conversations"]["post"]
    ours = document["paths"]["/florent/conversations"]["post"]
    for key in ("operationId", "summary", "tags"):
        assert ours[key] == theirs[key]
    assert ours["description"] == " ".join(theirs["description"].split())
    assert ours["parameters"][0] == theirs["parameters"][0]
    for status in ("201", "400", "401"):
        assert ours["responses"][status]["content"] == theirs["responses"][status]["content"]
        assert (
            ours["responses"][status]["description"] == theirs["responses"][status]["description"]
        )
    body = ours["requestBody"]["content"]["application/json"]["schema"]
    assert body["type"] == "object"
    assert body["properties"] == {
        "title": {"type": "string", "minLength": 1, "maxLength": 120},
        "userDisplay": {"type": "string", "minLength": 0, "maxLength": 200},
        "timezone": {"type": "string", "minLength": 0, "maxLength": 100},
    }
    assert "Idempotency-Key" in {p["name"] for p in ours["parameters"]}


# The one error that says more than ErrorResponse: which message was stored.
SEND_MESSAGE_502 = ("/florent/conversations/{conversation_id}/messages", "post", "502")


def test_every_operation_is_documented_with_every_status_it_can_answer(document):
    operations = {(p, m): op for p, item in document["paths"].items() for m, op in item.items()}
    assert set(operations) == {
        ("/florent/conversations", "post"),
        ("/florent/conversations", "get"),
        ("/florent/conversations", "delete"),
        ("/florent/export", "get"),
        ("/florent/conversations/{conversation_id}", "get"),
        ("/florent/conversations/{conversation_id}", "patch"),
        ("/florent/conversations/{conversation_id}", "delete"),
        ("/florent/conversations/{conversation_id}/messages", "get"),
        ("/florent/conversations/{conversation_id}/messages", "post"),
        ("/florent/conversations/{conversation_id}/stop", "post"),
        ("/florent/conversations/{conversation_id}/ws-ticket", "post"),
    }
    for (path, method), operation in operations.items():
        statuses = set(operation["responses"])
        assert {"401", "405", "429", "503"} <= statuses, (path, method)
        if "requestBody" in operation:
            assert {"400", "413"} <= statuses, (path, method)
        if "{conversation_id}" in path:
            assert "404" in statuses, (path, method)
        for status, response in operation["responses"].items():
            if status >= "400" and (path, method, status) != SEND_MESSAGE_502:
                assert response["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/ErrorResponse"
                }


def schemas_under(node: Any, pointer: str) -> Iterator[tuple[str, Any]]:
    """Every schema the paths hold inline (parameters, bodies, responses), by JSON pointer."""
    if isinstance(node, dict):
        items = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return
    for key, value in items:
        where = f"{pointer}/{str(key).replace('~', '~0').replace('/', '~1')}"
        if key == "schema" and isinstance(node, dict):
            yield where, value
        else:
            yield from schemas_under(value, where)


def test_every_schema_of_the_document_is_valid_json_schema_2020_12(document):
    # OpenAPI 3.1 schemas are JSON Schema 2020-12: a client's validator or generator
    # refuses a document whose schemas its metaschema rejects.
    schemas = {
        f"#/components/schemas/{name}": schema
        for name, schema in document["components"]["schemas"].items()
    }
    schemas.update(schemas_under(document["paths"], "#/paths"))
    invalid = {}
    for where, schema in schemas.items():
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as error:
            invalid[where] = error.message
    assert invalid == {}


# The fields of an OpenAPI 3.1 Media Type Object; its schema refuses any other.
MEDIA_TYPE_FIELDS = {"schema", "example", "examples", "encoding"}


def test_every_media_type_holds_only_the_fields_openapi_3_1_allows(document):
    misplaced = {}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            bodies = {"requestBody": operation.get("requestBody", {}), **operation["responses"]}
            for part, body in bodies.items():
                for media_type, media in body.get("content", {}).items():
                    extra = {key for key in media if not key.startswith("x-")} - MEDIA_TYPE_FIELDS
                    if extra:
                        misplaced[path, method, part, media_type] = sorted(extra)
    assert misplaced == {}


def test_document_needs_no_token(client):
    assert client.get("/api/openapi.json").status_code == 200


def test_real_responses_match_the_document(client, document, alice):
    create = client.post(URL, json={"title": "Spec"}, headers=alice)
    validate(document, "/florent/conversations", "post", create)
    conversation_id = create.get_json()["conversation"]["_id"]
    item = "/florent/conversations/{conversation_id}"

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
    found = client.get(URL, query_string={"q": "hi", "limit": 1}, headers=alice)
    assert found.get_json()["conversations"][0]["snippet"] == "hi"
    validate(document, "/florent/conversations", "get", found)

    errors = [
        ("/florent/conversations", "post", client.post(URL, json={"title": 1}, headers=alice)),
        ("/florent/conversations", "post", client.post(URL, json={})),
        ("/florent/conversations", "get", client.get(URL + "?limit=0", headers=alice)),
        ("/florent/conversations", "get", client.get(URL + "?q=", headers=alice)),
        ("/florent/conversations", "delete", client.delete(URL)),
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
    validate(document, "/florent/conversations", "delete", client.delete(URL, headers=alice))


def test_the_export_is_documented_as_ndjson_lines_of_the_export_schema(client, document, alice):
    conversation = create_conversation(client, alice)
    append_message(client, alice, conversation["_id"], "x")
    response = client.get("/api/florent/export", headers=alice)
    ok = document["paths"]["/florent/export"]["get"]["responses"]["200"]
    (media_type,) = ok["content"]
    assert media_type == response.mimetype == "application/x-ndjson"
    schema = ok["content"][media_type]["schema"]
    for line in response.get_data(as_text=True).splitlines():
        Draft202012Validator({**schema, "components": document["components"]}).validate(
            json.loads(line)
        )


def test_timestamps_in_responses_are_utc_milliseconds(client, alice):
    conversation = create_conversation(client, alice)
    message = append_message(client, alice, conversation["_id"], "x")["message"]
    for value in (conversation["createdAt"], conversation["updatedAt"], message["createdAt"]):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", value)


def test_the_502_of_a_turn_is_documented_with_the_message_stored(
    make_app, jwks_server, model, document, alice
):
    path, method, status = SEND_MESSAGE_502
    content = document["paths"][path][method]["responses"][status]["content"]
    schema = content["application/json"]["schema"]
    component = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    assert {"error", "message"} <= set(component["required"]) <= set(component["properties"])
    validator = Draft202012Validator({**schema, "components": document["components"]})
    assert not validator.is_valid({"error": "assistant_unavailable"})

    chat = make_app(jwks_server.url, llm_base_url=model.base_url)
    try:
        client = chat.test_client()
        conversation = create_conversation(client, alice)
        model.status = 500
        response = client.post(
            f"{URL}/{conversation['_id']}/messages", json={"content": "hi"}, headers=alice
        )
    finally:
        chat.extensions["florent.assistant"].close()

    assert response.status_code == 502
    assert response.get_json()["message"]["content"] == "hi"
    validate(document, path, method, response)
