"""Every operation of the OpenAPI document needs the permission it names, and a key
without it is refused before anything is read or written."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from florent.auth.apikeys import issue_api_key
from florent.extensions import db
from florent.models import PERMISSIONS, READ, WRITE

from .conftest import bearer
from .factories import TESTER

# An id no conversation has: a key lacking the permission is refused before that is known.
SOMEONE_ELSES = "0" * 24
# Every combination of permissions a key can have, from none to both.
GRANTS = [frozenset(c) for n in range(3) for c in itertools.combinations(PERMISSIONS, n)]


def operations(app: Flask) -> list[tuple[str, str, dict[str, Any]]]:
    document = app.test_client().get("/api/openapi.json").get_json()
    return [
        (path, method, operation)
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    ]


def call(client: FlaskClient, path: str, method: str, operation: dict, headers: dict) -> Any:
    url = "/api" + path.replace("{conversation_id}", SOMEONE_ELSES)
    body = {} if "requestBody" in operation else None
    # Buffered: read whole and closed, as a server does, so an export's transaction ends.
    return client.open(url, method=method.upper(), json=body, headers=headers, buffered=True)


def row_counts(app: Flask) -> dict[str, int]:
    with app.app_context():
        return {
            table.name: db.session.execute(
                table.select().with_only_columns(db.func.count())
            ).scalar_one()
            for table in db.metadata.sorted_tables
            if table.name not in ("api_keys", "audit_events")
        }


# The contract (docs/api.md, "Permissions"): reading needs read, anything else write.
CONTRACT = {
    "post-florent-conversations": WRITE,
    "get-florent-conversations": READ,
    "delete-florent-conversations": WRITE,
    "get-florent-export": READ,
    "get-florent-conversation": READ,
    "get-florent-conversation-messages": READ,
    "patch-florent-conversation": WRITE,
    "delete-florent-conversation": WRITE,
    "post-florent-conversation-message": WRITE,
    "post-florent-conversation-stop": WRITE,
    "post-florent-conversation-ws-ticket": WRITE,
}


def test_every_operation_needs_the_permission_the_contract_gives_it(app):
    named = {op["operationId"]: op["x-permission"] for _, _, op in operations(app)}
    assert named == CONTRACT
    for _, _, operation in operations(app):
        assert "403" in operation["responses"]
        assert "X-Act-As-User" in [p["name"] for p in operation["parameters"]]


@pytest.mark.parametrize("grant", GRANTS, ids=lambda g: "+".join(sorted(g)) or "none")
def test_a_key_gets_403_exactly_where_it_lacks_the_permission(app, client, grant):
    with app.app_context():
        _, plaintext = issue_api_key("org_01ACME", "robot", by=TESTER, permissions=grant)
    before = row_counts(app)
    for path, method, operation in operations(app):
        response = call(client, path, method, operation, bearer(plaintext))
        needed = operation["x-permission"]
        if needed in grant:
            assert response.status_code != 403, (method, path, response.get_json())
        else:
            assert response.status_code == 403, (method, path)
            assert response.get_json() == {"error": "forbidden"}
    if WRITE not in grant:
        assert row_counts(app) == before  # nothing written by a key that may not write


def test_a_person_has_both_permissions_on_their_own_conversations(app, client, alice):
    for path, method, operation in operations(app):
        response = call(client, path, method, operation, alice)
        assert response.status_code != 403, (method, path, response.get_json())


def test_a_read_only_key_reads_what_its_organization_wrote_as_itself(app, client):
    """Read means reading: a read-only key lists and gets its own, and writes nothing."""
    with app.app_context():
        _, both = issue_api_key("org_01ACME", "writer", by=TESTER)
    created = client.post("/api/florent/conversations", headers=bearer(both)).get_json()
    assert created["conversation"]["userId"].startswith("apikey_")
    with app.app_context():
        _, reader = issue_api_key("org_01ACME", "reader", by=TESTER, permissions=[READ])
    listed = client.get("/api/florent/conversations", headers=bearer(reader))
    assert listed.status_code == 200
    assert listed.get_json()["conversations"] == []  # another key's are not its own
    assert client.post("/api/florent/conversations", headers=bearer(reader)).status_code == 403
