"""Every statement of every endpoint goes through SQLAlchemy's execution, where its
events (and echo, and instrumentation) see it; and each endpoint runs only the
statements its use case needs."""

from __future__ import annotations

import pytest

from .conftest import recorded_statements
from .factories import URL, append_message, create_conversation


def verbs(statements: list[tuple[str, object]]) -> list[str]:
    return [sql.split(None, 1)[0] for sql, _ in statements]


@pytest.fixture
def conversation(client, alice) -> str:
    conversation = create_conversation(client, alice, title="Counted")
    append_message(client, alice, conversation["_id"], "hello")
    return conversation["_id"]


@pytest.mark.parametrize(
    ("method", "path", "body", "expected"),
    [
        ("post", "", {"title": "x"}, ["INSERT"]),
        ("get", "", None, ["SELECT"]),
        ("get", "/{id}", None, ["SELECT"]),  # the conversation and its messages: one snapshot
        ("get", "/{id}/messages", None, ["SELECT"]),
        ("patch", "/{id}", {"title": "y"}, ["UPDATE"]),
        ("post", "/{id}/messages", {"content": "z"}, ["WITH"]),  # counted and stored
        ("delete", "/{id}", None, ["DELETE"]),
    ],
)
def test_each_endpoint_runs_its_statements_through_sqlalchemy(
    app, client, alice, conversation, method, path, body, expected
):
    url = URL + path.format(id=conversation)
    with recorded_statements(app) as statements:
        response = getattr(client, method)(url, json=body, headers=alice)
    assert response.status_code < 300, response.get_json()
    assert verbs(statements) == expected


def test_an_idempotent_create_runs_in_one_transaction_of_three_statements(app, client, alice):
    with recorded_statements(app) as statements:
        response = client.post(URL, json={}, headers={**alice, "Idempotency-Key": "k1"})
    assert response.status_code == 201
    # Claim the key, insert the conversation, store the response (then, at most once a
    # minute per process, a purge of expired keys).
    assert verbs(statements)[:3] == ["INSERT", "INSERT", "UPDATE"]
    assert set(verbs(statements)[3:]) <= {"DELETE"}


def test_an_api_key_is_looked_up_by_sqlalchemy_too(app, client, robot):
    with recorded_statements(app) as statements:
        assert client.get(URL, headers=robot).status_code == 200
    assert any("FROM api_keys" in sql for sql, _ in statements)
