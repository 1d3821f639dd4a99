"""Who may keep a conversation's WebSocket open, and how much it may do: a revoked key's
tickets and sockets stop working, and so do an expired session token's; frames count
against the caller's rate limit, one caller holds a bounded number of sockets in a
process, and expired tickets are purged. Real sockets, on the development server (the
gunicorn path is in test_streaming.py)."""

from __future__ import annotations

import base64
import json
import time

import orjson
import pytest
from flask import Flask
from simple_websocket import ConnectionClosed
from sqlalchemy import func, select, text

from florent.assistant import sockets, tickets
from florent.auth.apikeys import issue_api_key, revoke_api_key
from florent.auth.sessions import LEEWAY_SECONDS
from florent.extensions import db
from florent.models import AuditEvent, Message, SocketTicket

from .conftest import bearer, recorded_statements
from .factories import TESTER, create_conversation
from .sockets import connect, hang_up, mint, say, socket_opened, upgrade_status

ALICE = "user_01ALICE"


def robot(app: Flask, **options) -> tuple[str, dict[str, str]]:
    with app.app_context():
        made, plaintext = issue_api_key("org_01ACME", "bridge", by=TESTER, **options)
        return made.id, bearer(plaintext)


@pytest.mark.parametrize("acting_for_alice", [False, True], ids=["as itself", "for alice"])
def test_a_ticket_minted_by_a_key_revoked_since_opens_nothing(
    app, client, live_server, alice, acting_for_alice
):
    key_id, headers = robot(app, can_impersonate=True)
    if acting_for_alice:
        headers = {**headers, "X-Act-As-User": ALICE}
    conversation = create_conversation(client, headers)
    ticket = mint(live_server, headers, conversation["_id"])
    with app.app_context():
        revoke_api_key(key_id, by=TESTER)

    status, body = upgrade_status(live_server, conversation["_id"], ticket)

    assert (status, body) == (401, {"error": "unauthorized"})


def test_a_socket_of_a_key_revoked_while_open_answers_unauthorized_and_closes(
    app, client, live_server
):
    key_id, headers = robot(app)
    conversation = create_conversation(client, headers)
    ws = connect(live_server, conversation["_id"], mint(live_server, headers, conversation["_id"]))
    try:
        assert [f["type"] for f in say(ws, "Before")] == ["message", "done"]
        with app.app_context():
            revoke_api_key(key_id, by=TESTER)

        assert say(ws, "After") == [{"type": "error", "error": "unauthorized"}]
        with pytest.raises(ConnectionClosed):
            ws.receive(timeout=5)
    finally:
        hang_up(ws)
    with app.app_context():
        stored = db.session.scalars(
            select(Message.content).where(Message.conversation_id == conversation["_id"])
        )
        assert list(stored) == ["Before"]


@pytest.mark.slow  # waits for a token to expire
def test_a_socket_opened_with_a_session_token_stops_when_the_token_expires(
    app, client, live_server, make_token
):
    # A token the service still accepts for a few seconds: expired, but within the
    # clock skew it tolerates.
    grace = 3
    expires = int(time.time()) - LEEWAY_SECONDS + grace
    headers = bearer(make_token(exp=expires, iat=expires - 600))
    conversation = create_conversation(client, headers)
    spare = mint(live_server, headers, conversation["_id"])
    ws = connect(live_server, conversation["_id"], mint(live_server, headers, conversation["_id"]))
    try:
        assert [f["type"] for f in say(ws, "Before")] == ["message", "done"]
        time.sleep(max(0.0, expires + LEEWAY_SECONDS - time.time()) + 0.2)

        assert say(ws, "After") == [{"type": "error", "error": "unauthorized"}]
        with pytest.raises(ConnectionClosed):
            ws.receive(timeout=5)
    finally:
        hang_up(ws)
    # A ticket minted while the token was good opens nothing once it has expired.
    assert upgrade_status(live_server, conversation["_id"], spare) == (
        401,
        {"error": "unauthorized"},
    )
    with app.app_context():
        stored = db.session.scalars(
            select(Message.content).where(Message.conversation_id == conversation["_id"])
        )
        assert list(stored) == ["Before"]


def test_frames_count_against_the_callers_rate_limit(app, make_app, jwks_server, make_token):
    limited = make_app(jwks_server.url, rate_limit="3 per minute")
    alice = bearer(make_token(ALICE, "org_01ACME"))
    with socket_opened(limited, alice) as (_, ws, _):
        answers = [say(ws, f"Message {n}")[-1] for n in range(4)]
    assert [a["type"] for a in answers] == ["done", "done", "done", "error"]
    assert answers[-1] == {"type": "error", "error": "rate_limited"}


def test_a_frame_over_the_rate_limit_costs_no_statement(app, make_app, jwks_server):
    """Not even the check that the key which opened the socket is still live: a flood of
    frames over the limit never reaches the database."""
    limited = make_app(jwks_server.url, rate_limit="3 per minute")
    _, headers = robot(limited)
    with socket_opened(limited, headers) as (_, ws, _):
        for _ in range(3):  # frames have a window of their own, beside requests
            ws.send("{}")
            assert orjson.loads(ws.receive(timeout=5))["error"] == "invalid_body"
        with recorded_statements(limited) as statements:
            ws.send("{}")
            over = orjson.loads(ws.receive(timeout=5))
    assert over == {"type": "error", "error": "rate_limited"}
    assert statements == []


@pytest.mark.slow  # waits for a token to expire
def test_a_socket_whose_token_has_expired_is_closed_even_over_the_rate_limit(
    app, make_app, jwks_server, make_token
):
    """Expiry is known without a statement, so it comes before the limit, as a request's
    authentication does: `unauthorized` and a close, not `rate_limited` and open."""
    limited = make_app(jwks_server.url, rate_limit="1 per minute")
    expires = int(time.time()) - LEEWAY_SECONDS + 2  # accepted for two more seconds
    headers = bearer(make_token(exp=expires, iat=expires - 600))
    with socket_opened(limited, headers) as (_, ws, _):
        ws.send("{}")  # the minute's one frame
        assert orjson.loads(ws.receive(timeout=5))["error"] == "invalid_body"
        time.sleep(max(0.0, expires + LEEWAY_SECONDS - time.time()) + 0.2)
        ws.send("{}")
        assert orjson.loads(ws.receive(timeout=5)) == {"type": "error", "error": "unauthorized"}
        with pytest.raises(ConnectionClosed):
            ws.receive(timeout=5)


def test_one_caller_holds_a_bounded_number_of_sockets(client, live_server, alice, monkeypatch):
    monkeypatch.setattr(sockets, "MAX_OPEN_SOCKETS", 2)
    conversation_id = create_conversation(client, alice)["_id"]
    held = [connect(live_server, conversation_id, mint(live_server, alice, conversation_id))]
    held.append(connect(live_server, conversation_id, mint(live_server, alice, conversation_id)))
    try:
        status, body = upgrade_status(
            live_server, conversation_id, mint(live_server, alice, conversation_id)
        )
        assert (status, body) == (429, {"error": "too_many_sockets"})
    finally:
        hang_up(held.pop())
    # The server frees the closed socket's place when it sees the close (within a tick).
    deadline = time.monotonic() + 10
    while sum(sockets._open_sockets.values()) > 1:
        assert time.monotonic() < deadline, "the closed socket's place was not freed"
        time.sleep(0.1)
    held.append(connect(live_server, conversation_id, mint(live_server, alice, conversation_id)))
    for ws in held:
        hang_up(ws)


def test_an_upgrade_refused_for_too_many_sockets_is_in_the_trail_when_acting_for_alice(
    app, client, live_server, monkeypatch
):
    """Every request made acting for a person is recorded, whatever its answer."""
    monkeypatch.setattr(sockets, "MAX_OPEN_SOCKETS", 0)
    _, headers = robot(app, can_impersonate=True)
    headers = {**headers, "X-Act-As-User": ALICE}
    conversation_id = create_conversation(client, headers)["_id"]

    status, body = upgrade_status(
        live_server, conversation_id, mint(live_server, headers, conversation_id)
    )

    assert (status, body) == (429, {"error": "too_many_sockets"})
    with app.app_context():
        actions = db.session.scalars(
            select(AuditEvent.action).where(AuditEvent.action.startswith("api."))
        ).all()
    assert sorted(actions) == [
        "api.conversation_socket",
        "api.create_conversation",
        "api.socket_ticket",
    ]


def test_a_frame_escaped_as_json_may_be_as_long_as_the_rest_body(client, live_server, alice):
    """The longest content, each character escaped as JSON (`\\ud83d\\ude00`, twelve
    bytes): a frame the REST body's rules accept."""
    conversation_id = create_conversation(client, alice)["_id"]
    ws = connect(live_server, conversation_id, mint(live_server, alice, conversation_id))
    try:
        content = "\U0001f600" * 32_000
        ws.send(json.dumps({"type": "message", "content": content}))  # ensure_ascii
        first = orjson.loads(ws.receive(timeout=10))
    finally:
        hang_up(ws)
    assert (first["type"], first["message"]["content"]) == ("message", content)


def test_every_expired_ticket_is_purged_not_one_batch(app, client, alice):
    conversation_id = create_conversation(client, alice)["_id"]
    expired = tickets.PURGE_BATCH * 2 + 500
    with app.app_context():
        db.session.execute(
            text(
                "INSERT INTO socket_tickets"
                " (org_id, ticket_hash, user_id, conversation_id, expires_at)"
                " SELECT 'org_01ACME', sha256(n::text::bytea), 'user_01ALICE', :conversation,"
                " now() - interval '1 minute' FROM generate_series(1, :expired) n"
            ),
            {"expired": expired, "conversation": conversation_id},
        )
        db.session.commit()
        assert tickets.purge_expired_tickets() == expired
        assert db.session.scalar(select(func.count()).select_from(SocketTicket)) == 0


def test_a_ticket_or_conversation_id_no_database_could_hold_is_refused_not_a_500(
    client, live_server, alice
):
    """PostgreSQL's text holds no NUL: a ticket naming such an organization, or such a
    conversation id, is refused like any unknown ticket, before the database."""
    conversation_id = create_conversation(client, alice)["_id"]
    ticket = mint(live_server, alice, conversation_id)
    nul_organization = base64.urlsafe_b64encode(b"org\x00").rstrip(b"=").decode()
    for path_id, refused in (
        (conversation_id, f"{nul_organization}.{ticket.partition('.')[2]}"),
        (conversation_id, "AA.x"),
        ("%00", ticket),
        ("a%00b", ticket),
    ):
        status, body = upgrade_status(live_server, path_id, refused)
        assert (status, body) == (401, {"error": "unauthorized"}), (path_id, refused)
    # The ticket is still good: the refusals above never reached it.
    hang_up(connect(live_server, conversation_id, ticket))


@pytest.mark.parametrize(
    "organization", ["Société Acme, EU", "Я" * 255], ids=["spaces and accents", "255 letters"]
)
def test_a_keys_ticket_opens_the_socket_whatever_its_organization_is_called(
    app, client, live_server, organization
):
    """An API key's organization may hold spaces, commas and accents, up to 255 of any
    characters, as the admin and the CLI let it: its tickets open sockets all the same."""
    with app.app_context():
        _, plaintext = issue_api_key(organization, "bridge", by=TESTER)
    headers = bearer(plaintext)
    conversation_id = create_conversation(client, headers)["_id"]
    ws = connect(live_server, conversation_id, mint(live_server, headers, conversation_id))
    try:
        assert [f["type"] for f in say(ws, "Bonjour")] == ["message", "done"]
    finally:
        hang_up(ws)
