"""A schema ready to distribute by organization: every table of people's conversations
is keyed by (org_id, ...), every reference between them carries org_id, and every
statement a request runs on them says which organization."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import text

from florent.extensions import db

from .conftest import recorded_statements
from .factories import URL, append_message, create_conversation

TENANT_TABLES = ("conversations", "messages", "idempotency_keys", "socket_tickets")


def constraint_columns(app, table: str, kind: str) -> list[list[str]]:
    with app.app_context():
        rows = db.session.execute(
            text(
                "SELECT c.conname, array_agg(a.attname ORDER BY k.ordinality) "
                "FROM pg_constraint c "
                "CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, ordinality) "
                "JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum "
                "WHERE c.conrelid = to_regclass(:table) AND c.contype = :kind "
                "GROUP BY c.conname"
            ),
            {"table": table, "kind": kind},
        ).all()
        db.session.rollback()
    return [list(columns) for _, columns in rows]


@pytest.mark.parametrize("table", TENANT_TABLES)
def test_every_tenant_table_leads_its_primary_key_with_the_organization(app, table):
    (primary_key,) = constraint_columns(app, table, "p")
    assert primary_key[0] == "org_id", primary_key


@pytest.mark.parametrize("table", ["messages", "idempotency_keys", "socket_tickets"])
def test_every_reference_to_a_conversation_carries_the_organization(app, table):
    (foreign_key,) = constraint_columns(app, table, "f")
    assert foreign_key == ["org_id", "conversation_id"]


def test_every_statement_a_request_runs_on_people_s_data_names_the_organization(app, client, alice):
    with recorded_statements(app) as statements:
        conversation = create_conversation(client, alice, title="Sharded")
        conversation_id = conversation["_id"]
        append_message(client, alice, conversation_id, "hello")
        page = client.get(f"{URL}/{conversation_id}?messagesLimit=1", headers=alice).get_json()
        client.get(
            f"{URL}/{conversation_id}/messages?cursor={page['olderMessagesCursor']}",
            headers=alice,
        )
        client.get(URL, headers=alice)
        client.patch(f"{URL}/{conversation_id}", json={"title": "Renamed"}, headers=alice)
        second = client.post(URL, json={}, headers={**alice, "Idempotency-Key": "sharded-1"})
        append_message(client, alice, second.get_json()["conversation"]["_id"], "hello again")
        found = client.get(URL, query_string={"q": "hello", "limit": 1}, headers=alice)
        cursor = found.get_json()["nextCursor"]
        client.get(URL, query_string={"q": "hello", "limit": 1, "cursor": cursor}, headers=alice)
        assert client.get("/api/florent/export", headers=alice).get_data()
        client.post(f"{URL}/{conversation_id}/ws-ticket", headers=alice)
        client.post(f"{URL}/{conversation_id}/stop", headers=alice)
        client.delete(f"{URL}/{conversation_id}", headers=alice)
        assert client.delete(URL, headers=alice).get_json() == {"deleted": 1}

    tenant = re.compile(rf"\b({'|'.join(TENANT_TABLES)})\b")
    checked = [sql for sql, _ in statements if tenant.search(sql)]
    assert len(checked) >= 15
    assert sum("florent_search_query" in sql for sql in checked) == 2  # two pages of a search
    # Purges of expired rows are the only statements across organizations.
    for sql in checked:
        if sql.startswith("DELETE") and "< now()" in sql:
            continue
        assert "org_id" in sql, sql
