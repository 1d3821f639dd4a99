"""GET /api/florent/export: all the caller's conversations with their messages, one JSON
object a line, streamed from one snapshot with flat memory."""

from __future__ import annotations

import json
import threading

import psutil
import pytest
import requests
from flask import g
from sqlalchemy import text

from florent.auth import Caller
from florent.conversations import views
from florent.errors import ApiError
from florent.extensions import db
from florent.models import READ, WRITE

from .conftest import bearer, recorded_statements
from .factories import URL, append_message, create_conversation

EXPORT = "/api/florent/export"
MIB = 1024 * 1024


def export(client, caller) -> list[dict]:
    response = client.get(EXPORT, headers=caller)
    assert response.status_code == 200
    assert response.mimetype == "application/x-ndjson"
    body = response.get_data(as_text=True)
    assert body == "" or body.endswith("\n")
    return [json.loads(line) for line in body.splitlines()]


def as_shown(client, caller, conversation_id: str) -> dict:
    """The conversation as GET shows it, with its messages (all of them: fewer than 100)."""
    body = client.get(f"{URL}/{conversation_id}", headers=caller).get_json()
    assert body["olderMessagesCursor"] is None
    return {**body["conversation"], "messages": body["messages"]}


def test_each_line_is_a_conversation_with_all_its_messages_as_the_api_shows_them(client, alice):
    first = create_conversation(client, alice, title="First")
    for content in ("one", "two", "three"):
        append_message(client, alice, first["_id"], content)
    empty = create_conversation(client, alice, title="Empty")
    last = create_conversation(client, alice, title="Last")
    append_message(client, alice, last["_id"], 'quotes " and \\ and\nlines, é, 東京, 🙂')

    lines = export(client, alice)

    assert lines == [as_shown(client, alice, c["_id"]) for c in (last, empty, first)]
    assert [m["content"] for m in lines[2]["messages"]] == ["one", "two", "three"]
    assert lines[1]["messages"] == []


def test_conversations_come_most_recently_updated_first(client, alice):
    older = create_conversation(client, alice, title="Older")
    newer = create_conversation(client, alice, title="Newer")
    append_message(client, alice, older["_id"], "back to this one")
    assert [c["title"] for c in export(client, alice)] == ["Older", "Newer"]
    assert newer["_id"]


def test_another_caller_s_conversations_never_appear(client, alice, bob, alice_elsewhere, robot):
    mine = create_conversation(client, alice, title="Mine")
    append_message(client, alice, mine["_id"], "mine")
    for other in (bob, alice_elsewhere, robot):
        theirs = create_conversation(client, other, title="Theirs")
        append_message(client, other, theirs["_id"], "theirs")

    assert [c["_id"] for c in export(client, alice)] == [mine["_id"]]
    for other in (bob, alice_elsewhere, robot):
        (line,) = export(client, other)
        assert line["title"] == "Theirs"
        assert [m["content"] for m in line["messages"]] == ["theirs"]


def test_nothing_to_export_is_an_empty_body(client, alice):
    assert export(client, alice) == []


def test_the_export_needs_a_token_and_the_read_permission(app, client):
    assert client.get(EXPORT).status_code == 401
    assert views.export_conversations.permission == READ
    assert views.erase_conversations.permission == WRITE
    with app.test_request_context(EXPORT):
        g.caller = Caller("org_01ACME", "apikey_x", "x", permissions=frozenset({WRITE}))
        with pytest.raises(ApiError) as refused:
            views.export_conversations()
    assert refused.value.status == 403


def test_the_export_reads_in_one_statement_and_leaves_no_transaction_open(app, client, alice):
    create_conversation(client, alice)
    with recorded_statements(app) as statements:
        assert len(export(client, alice)) == 1
    (sql,) = [sql for sql, _ in statements if "FROM conversations" in sql]
    assert "org_id" in sql
    with app.app_context():
        # The transaction is over: no session of the export is left open.
        idle = db.session.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()"
            )
        ).scalar_one()
        db.session.rollback()
    assert idle == 0


# -- Bounded: an export holds a connection while it is read ------------------------------


def test_a_caller_has_one_export_at_a_time(client, alice, bob):
    create_conversation(client, alice)
    first = client.get(EXPORT, headers=alice, buffered=False)  # sent, not yet read
    try:
        second = client.get(EXPORT, headers=alice)
        assert second.status_code == 429
        assert second.get_json() == {"error": "export_in_progress"}
        assert second.headers["Retry-After"] == "10"
        with client.get(EXPORT, headers=bob) as theirs:  # others are not held up
            assert theirs.status_code == 200
    finally:
        first.close()
    with client.get(EXPORT, headers=alice) as again:
        assert again.status_code == 200


def test_a_process_gives_exports_half_its_connections(app, client, make_token):
    share = app.config["SQLALCHEMY_ENGINE_OPTIONS"]["pool_size"] // 2
    people = [bearer(make_token(f"user_{n:02d}", "org_01ACME")) for n in range(share + 1)]
    for person in people:  # an export of nothing ends before its first line is read
        create_conversation(client, person)
    reading = [client.get(EXPORT, headers=person, buffered=False) for person in people[:share]]
    try:
        assert all(response.status_code == 200 for response in reading)
        over = client.get(EXPORT, headers=people[share])
        assert over.status_code == 503
        assert over.get_json() == {"error": "service_unavailable"}
        assert over.headers["Retry-After"] == "10"
        assert client.get(f"{URL}?limit=1", headers=people[0]).status_code == 200
    finally:
        for response in reading:
            response.close()
    with client.get(EXPORT, headers=people[share]) as freed:
        assert freed.status_code == 200


# -- Flat memory ----------------------------------------------------------------------

CONVERSATIONS, MESSAGES_EACH = 10_000, 50
LOAD = (
    """
    INSERT INTO conversations (org_id, id, user_id, title, model, message_count,
                               created_at, updated_at)
    SELECT :org, lpad(to_hex(c), 24, '0'), :user, 'Conversation ' || c, 'm', :each,
           timestamptz '2026-01-01' + c * interval '1 s',
           timestamptz '2026-01-01' + c * interval '1 s'
    FROM generate_series(1, :conversations) AS c
    """,
    # About 300 bytes a message: some 150 MiB of JSON in all, which a process that kept
    # what it sends could not hold under the bound.
    """
    INSERT INTO messages (org_id, id, conversation_id, user_id, role, content, created_at)
    SELECT :org, 'a' || lpad(to_hex(c * 100 + m), 23, '0'), lpad(to_hex(c), 24, '0'), :user,
           'user', repeat('Lorem ipsum dolor sit amet. ', 10) || m,
           timestamptz '2026-01-01' + c * interval '1 s' + m * interval '1 ms'
    FROM generate_series(1, :conversations) AS c, generate_series(1, :each) AS m
    """,
)


@pytest.mark.slow  # about a minute and a half, most of it loading half a million messages
def test_exporting_10_000_conversations_of_50_messages_keeps_memory_flat(
    app, client, alice, bob, live_server
):
    theirs = create_conversation(client, bob, title="Not Alice's")
    with app.app_context():
        db.session.execute(text("SET LOCAL statement_timeout = 0"))
        params = {
            "org": "org_01ACME",
            "user": "user_01ALICE",
            "conversations": CONVERSATIONS,
            "each": MESSAGES_EACH,
        }
        for statement in LOAD:
            db.session.execute(text(statement), params)
        db.session.commit()
        db.session.execute(text("ANALYZE"))
        db.session.commit()

    process = psutil.Process()
    baseline = peak = process.memory_info().rss
    lines = messages = 0
    previous = None
    with requests.get(
        f"{live_server}{EXPORT}", headers=alice, stream=True, timeout=120
    ) as response:
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "application/x-ndjson"
        for raw in response.iter_lines(chunk_size=64 * 1024):
            line = json.loads(raw)
            assert line["_id"] != theirs["_id"]
            if previous is not None:
                assert line["updatedAt"] < previous  # most recently updated first
            previous = line["updatedAt"]
            assert [m["content"][-2:].strip() for m in line["messages"][:2]] == ["1", "2"]
            lines += 1
            messages += len(line["messages"])
            if lines % 500 == 0:
                peak = max(peak, process.memory_info().rss)
    peak = max(peak, process.memory_info().rss)

    assert (lines, messages) == (CONVERSATIONS, CONVERSATIONS * MESSAGES_EACH)
    # The server runs in this process (a thread of the live server): its growth is here.
    assert peak - baseline < 200 * MIB, f"grew by {(peak - baseline) / MIB:.0f} MiB"
    assert threading.active_count() < 50
