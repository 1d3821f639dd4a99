"""A key that may impersonate acts as a named person of its organization
(X-Act-As-User); nobody else may, and every such request is in the audit trail."""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit

import pytest
from flask import Flask, g
from sqlalchemy import func, select

from florent.auth.apikeys import issue_api_key
from florent.extensions import db
from florent.models import READ, AuditEvent, Conversation

from .conftest import bearer
from .factories import TESTER, URL, create_conversation
from .serving import gunicorn

ALICE, BOB = "user_01ALICE", "user_01BOB"


def key(app: Flask, org: str = "org_01ACME", **options) -> tuple[str, dict[str, str]]:
    """(key id, its Authorization header)."""
    with app.app_context():
        made, plaintext = issue_api_key(org, "assistant bridge", by=TESTER, **options)
        return made.id, bearer(plaintext)


def as_user(headers: dict[str, str], user_id: str) -> dict[str, str]:
    return {**headers, "X-Act-As-User": user_id}


def events(app: Flask) -> list[AuditEvent]:
    with app.app_context():
        rows = db.session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action.startswith("api."))
            .order_by(AuditEvent.occurred_at, AuditEvent.id)
        )
        return list(rows)


# -- Acting as a person ----------------------------------------------------------


def test_a_key_acting_as_alice_creates_her_conversation(app, client, alice):
    _, robot = key(app, can_impersonate=True)

    response = client.post(URL, json={"title": "Drafted for Alice"}, headers=as_user(robot, ALICE))

    assert response.status_code == 201
    made = response.get_json()["conversation"]
    assert made["userId"] == ALICE
    listed = client.get(URL, headers=alice).get_json()["conversations"]
    assert [c["_id"] for c in listed] == [made["_id"]]


def test_acting_as_alice_shows_alices_conversations_only(app, client, alice, bob, alice_elsewhere):
    _, robot = key(app, can_impersonate=True)
    hers = create_conversation(client, alice, title="Alice's")
    create_conversation(client, bob, title="Bob's")
    create_conversation(client, alice_elsewhere, title="Alice's, in another organization")
    create_conversation(client, robot, title="The key's own")

    listed = client.get(URL, headers=as_user(robot, ALICE)).get_json()["conversations"]
    assert [c["_id"] for c in listed] == [hers["_id"]]
    # Bob's, read as Alice, is not hers.
    bobs = client.get(URL, headers=bob).get_json()["conversations"][0]
    assert client.get(f"{URL}/{bobs['_id']}", headers=as_user(robot, ALICE)).status_code == 404
    # The key's own, without the header, are still its own, and not Alice's.
    own = client.get(URL, headers=robot).get_json()["conversations"]
    assert [c["title"] for c in own] == ["The key's own"]


def test_a_key_of_another_organization_cannot_reach_alice(app, client, alice):
    create_conversation(client, alice, title="Alice's")
    _, stranger = key(app, org="org_02OTHER", can_impersonate=True)

    listed = client.get(URL, headers=as_user(stranger, ALICE)).get_json()["conversations"]

    assert listed == []


def test_permissions_still_apply_when_acting_as_someone(app, client, alice):
    hers = create_conversation(client, alice, title="Alice's")
    _, reader = key(app, can_impersonate=True, permissions=[READ])

    assert client.get(f"{URL}/{hers['_id']}", headers=as_user(reader, ALICE)).status_code == 200
    refused = client.patch(
        f"{URL}/{hers['_id']}", json={"title": "Renamed"}, headers=as_user(reader, ALICE)
    )
    assert (refused.status_code, refused.get_json()) == (403, {"error": "forbidden"})


# -- Who may not -----------------------------------------------------------------


def test_a_key_without_the_flag_may_not_impersonate(app, client):
    _, robot = key(app)

    response = client.get(URL, headers=as_user(robot, ALICE))

    assert (response.status_code, response.get_json()) == (
        403,
        {"error": "impersonation_not_allowed"},
    )


def test_a_person_may_not_impersonate(client, alice):
    response = client.get(URL, headers=as_user(alice, BOB))

    assert (response.status_code, response.get_json()) == (
        403,
        {"error": "impersonation_not_allowed"},
    )


@pytest.mark.parametrize(
    "value",
    [
        "",
        "u" * 256,
        "user\t01",
        "user\x7f01",
        "user 01",
        "usér",
        "apikey_0123456789abcdef01234567",  # a key's own identity is no person's
        # The header given twice, as gunicorn and werkzeug's server hand it to the app
        # (werkzeug's test client joins with ", " instead).
        f"{ALICE},{BOB}",
    ],
    ids=["empty", "too-long", "tab", "delete", "space", "non-ascii", "a-key-identity", "twice"],
)
def test_bad_header_values_are_400_invalid_header(app, client, value):
    _, robot = key(app, can_impersonate=True)

    response = client.get(URL, headers=as_user(robot, value))

    assert (response.status_code, response.get_json()) == (400, {"error": "invalid_header"})
    assert events(app) == []


def create_with_the_header_twice(base_url: str, authorization: str) -> tuple[int, dict]:
    """POST a conversation with X-Act-As-User sent twice on the wire (Alice, then Bob),
    for a real server to join, as no test client does."""
    connection = http.client.HTTPConnection(urlsplit(base_url).netloc, timeout=10)
    try:
        connection.putrequest("POST", URL)
        connection.putheader("Authorization", authorization)
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", "2")
        connection.putheader("X-Act-As-User", ALICE)
        connection.putheader("X-Act-As-User", BOB)
        connection.endheaders(b"{}")
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def assert_nothing_done_for_anyone(app: Flask) -> None:
    assert events(app) == []
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Conversation)) == 0


def test_the_header_sent_twice_to_werkzeugs_server_is_400_invalid_header(app, live_server):
    _, robot = key(app, can_impersonate=True)

    answer = create_with_the_header_twice(live_server, robot["Authorization"])

    assert answer == (400, {"error": "invalid_header"})
    assert_nothing_done_for_anyone(app)


@pytest.mark.slow  # gunicorn
def test_the_header_sent_twice_to_gunicorn_is_400_invalid_header(app, database_url, jwks_server):
    _, robot = key(app, can_impersonate=True)

    with gunicorn(database_url, jwks_server.url) as service:
        answer = create_with_the_header_twice(service.url, robot["Authorization"])

    assert answer == (400, {"error": "invalid_header"})
    assert_nothing_done_for_anyone(app)


def test_the_longest_user_id_is_accepted(app, client):
    _, robot = key(app, can_impersonate=True)

    assert client.get(URL, headers=as_user(robot, "u" * 255)).status_code == 200


def test_naming_other_people_is_no_way_round_the_keys_rate_limit(app, make_app, jwks_server):
    limited = make_app(jwks_server.url, rate_limit="3 per minute")
    client = limited.test_client()
    with limited.app_context():
        _, plaintext = issue_api_key("org_01ACME", "bridge", by=TESTER, can_impersonate=True)
    statuses = [
        client.get(URL, headers=as_user(bearer(plaintext), f"user_{i}")).status_code
        for i in range(5)
    ]
    assert statuses == [200, 200, 200, 429, 429]


# -- The audit trail ---------------------------------------------------------------


def test_every_request_made_through_impersonation_is_recorded(app, client):
    robot_id, robot = key(app, can_impersonate=True)

    made = client.post(URL, json={"title": "For Alice"}, headers=as_user(robot, ALICE))
    conversation_id = made.get_json()["conversation"]["_id"]
    got = client.get(f"{URL}/{conversation_id}", headers=as_user(robot, ALICE))
    refused = client.post(
        f"{URL}/{conversation_id}/messages", json={"content": ""}, headers=as_user(robot, ALICE)
    )
    assert refused.status_code == 400  # rejected, recorded all the same

    recorded = events(app)
    assert [(e.action, e.target) for e in recorded] == [
        ("api.create_conversation", conversation_id),
        ("api.get_conversation", conversation_id),
        ("api.send_message", conversation_id),
    ]
    for event, response in zip(recorded, (made, got, refused), strict=True):
        assert (event.org_id, event.actor_kind, event.actor_id) == (
            "org_01ACME",
            "api_key",
            robot_id,
        )
        assert event.acting_for == ALICE
        assert event.request_id == response.headers["X-Request-Id"]
        assert event.client_address == "127.0.0.1"


def test_a_conversation_created_once_for_alice_is_named_in_the_trail(app, client):
    _, robot = key(app, can_impersonate=True)
    headers = {**as_user(robot, ALICE), "Idempotency-Key": "for-alice-1"}

    made = client.post(URL, json={"title": "For Alice"}, headers=headers)
    again = client.post(URL, json={"title": "For Alice"}, headers=headers)

    conversation_id = made.get_json()["conversation"]["_id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    # The replay made nothing: its event names no conversation.
    assert [(e.action, e.target) for e in events(app)] == [
        ("api.create_conversation", conversation_id),
        ("api.create_conversation", None),
    ]


def test_requests_without_impersonation_are_not_recorded(app, client, alice):
    _, robot = key(app, can_impersonate=True)
    create_conversation(client, robot)
    create_conversation(client, alice)

    assert events(app) == []


def test_a_refused_request_made_through_impersonation_is_recorded(app, client):
    robot_id, reader = key(app, can_impersonate=True, permissions=[READ])

    assert client.post(URL, headers=as_user(reader, ALICE)).status_code == 403

    [event] = events(app)
    assert (event.action, event.actor_id, event.acting_for) == (
        "api.create_conversation",
        robot_id,
        ALICE,
    )


def test_a_change_that_fails_keeps_its_event(app, client, alice):
    """The event rides the change's transaction; when that rolls back (here, a rename of
    a conversation that does not exist), the request is still recorded."""
    _, robot = key(app, can_impersonate=True)

    response = client.patch(f"{URL}/{'0' * 24}", json={"title": "x"}, headers=as_user(robot, ALICE))

    assert response.status_code == 404
    assert [e.action for e in events(app)] == ["api.rename_conversation"]


def test_a_socket_opened_with_a_ticket_minted_for_alice_is_recorded(app, client, alice):
    from florent.assistant import sockets

    robot_id, robot = key(app, can_impersonate=True)
    hers = create_conversation(client, alice)
    minted = client.post(f"{URL}/{hers['_id']}/ws-ticket", headers=as_user(robot, ALICE))
    ticket = minted.get_json()["ticket"]

    socket_url = f"{URL}/{hers['_id']}/ws?ticket={ticket}"
    with app.test_request_context(socket_url, base_url="ws://localhost"):
        sockets.admit_with_ticket()
        caller = g.caller

    assert (caller.user_id, caller.api_key_id, caller.impersonating) == (ALICE, robot_id, True)
    assert [(e.action, e.target, e.acting_for) for e in events(app)] == [
        ("api.socket_ticket", hers["_id"], ALICE),
        ("api.conversation_socket", hers["_id"], ALICE),
    ]
