"""The audit trail: one event per security-relevant change, written with the change,
with who acted; append-only; erased for a person only by `people erase`."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from flask import Flask
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from florent import audit
from florent.auth.apikeys import issue_api_key
from florent.extensions import db
from florent.models import PERMISSIONS, READ, WRITE, ApiKey, AuditEvent

from .conftest import bearer
from .factories import TESTER, URL, create_conversation
from .test_admin import (  # noqa: F401 (fixtures, found by their names)
    PASSWORD,
    administrator_fixture,
    cheap_password_hashes_fixture,
    conversation_fixture,
    csrf_token,
    make_staff,
    sign_in,
    sql_statements_fixture,
    viewer_fixture,
)


def trail(app: Flask, action: str | None = None) -> list[AuditEvent]:
    with app.app_context():
        query = select(AuditEvent).order_by(AuditEvent.occurred_at, AuditEvent.id)
        if action is not None:
            query = query.where(AuditEvent.action == action)
        return list(db.session.scalars(query))


def who(event: AuditEvent) -> tuple[str, str, str | None]:
    return event.actor_kind, event.actor_id, event.target


# -- API keys ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "permissions", "can_impersonate"),
    [
        ([], list(PERMISSIONS), False),
        (["--permission", READ], [READ], False),
        (["--permission", WRITE, "--can-impersonate"], [WRITE], True),
        (
            ["--permission", READ, "--permission", WRITE, "--can-impersonate"],
            list(PERMISSIONS),
            True,
        ),
    ],
)
def test_the_cli_issues_keys_with_each_flag_and_records_who(
    app, monkeypatch, flags, permissions, can_impersonate
):
    monkeypatch.setenv("USER", "ops-oncall")
    monkeypatch.delenv("SUDO_USER", raising=False)
    runner = app.test_cli_runner()

    result = runner.invoke(
        args=["api-keys", "create", "--org", "org_01ACME", "--name", "bridge", *flags]
    )
    assert result.exit_code == 0, result.output

    with app.app_context():
        key = db.session.scalars(select(ApiKey)).one()
        assert (key.permissions, key.can_impersonate) == (permissions, can_impersonate)
    listed = runner.invoke(args=["api-keys", "list"]).output.splitlines()
    assert listed[0].split()[4:6] == ["PERMISSIONS", "IMPERSONATE"]
    assert listed[1].split()[4:6] == [",".join(permissions), "yes" if can_impersonate else "no"]
    [event] = trail(app)
    assert (event.org_id, event.action) == ("org_01ACME", audit.KEY_ISSUED)
    assert who(event) == ("operator", "ops-oncall", key.id)


def test_an_unknown_permission_is_refused_by_the_cli(app):
    result = app.test_cli_runner().invoke(
        args=["api-keys", "create", "--org", "o", "--name", "n", "--permission", "admin:all"]
    )
    assert result.exit_code != 0
    assert trail(app) == []


def test_revoking_a_key_is_recorded_once(app, monkeypatch):
    monkeypatch.setenv("USER", "ops-oncall")
    with app.app_context():
        key, _ = issue_api_key("org_01ACME", "bridge", by=TESTER)
    runner = app.test_cli_runner()

    assert runner.invoke(args=["api-keys", "revoke", key.id]).exit_code == 0
    assert runner.invoke(args=["api-keys", "revoke", key.id]).exit_code == 0  # already revoked

    [event] = trail(app, audit.KEY_REVOKED)
    assert (event.org_id, *who(event)) == ("org_01ACME", "operator", "ops-oncall", key.id)


def test_the_admin_issues_and_revokes_keys_with_the_staff_member_recorded(app, administrator):
    form = administrator.get("/admin/api-keys/new/").get_data(as_text=True)
    # Both permissions are offered checked, impersonation unchecked.
    assert form.count("checked") == 2 and 'name="can_impersonate"' in form
    once = form.split('name="once" type="hidden" value="')[1].split('"')[0]
    created = administrator.post(
        "/admin/api-keys/new/",
        data={
            "csrf_token": csrf_token(form),
            "once": once,
            "org_id": "org_01ACME",
            "name": "bridge",
            "permissions": [READ],
            "can_impersonate": "y",
        },
    )
    assert created.status_code == 200
    with app.app_context():
        key = db.session.scalars(select(ApiKey)).one()
    assert (key.permissions, key.can_impersonate) == ([READ], True)
    confirm = administrator.get(f"/admin/api-keys/revoke/?id={key.id}").get_data(as_text=True)
    administrator.post(
        f"/admin/api-keys/revoke/?id={key.id}", data={"csrf_token": csrf_token(confirm)}
    )

    issued, revoked = trail(app, audit.KEY_ISSUED), trail(app, audit.KEY_REVOKED)
    assert [who(e) for e in issued] == [("staff", "admin@florent.test", key.id)]
    assert [who(e) for e in revoked] == [("staff", "admin@florent.test", key.id)]
    assert issued[0].client_address == "127.0.0.1" and issued[0].request_id


def test_a_key_issued_with_no_permissions_can_do_nothing(app, client):
    with app.app_context():
        _, plaintext = issue_api_key("org_01ACME", "inert", by=TESTER, permissions=[])
    assert client.get(URL, headers=bearer(plaintext)).status_code == 403
    assert client.post(URL, headers=bearer(plaintext)).status_code == 403


def test_revocation_is_immediate_on_every_instance(app, make_app, jwks_server):
    """Two instances, each with its own connection pool: a key revoked through one is
    refused by the other on its very next request."""
    other = make_app(jwks_server.url).test_client()
    with app.app_context():
        key, plaintext = issue_api_key("org_01ACME", "bridge", by=TESTER)
    assert other.get(URL, headers=bearer(plaintext)).status_code == 200

    assert app.test_cli_runner().invoke(args=["api-keys", "revoke", key.id]).exit_code == 0

    assert other.get(URL, headers=bearer(plaintext)).status_code == 401


# -- Staff ---------------------------------------------------------------------


def test_staff_sign_in_failure_and_sign_out_are_recorded(app, client):
    make_staff(app, "vic@florent.test")
    assert sign_in(client, "vic@florent.test", "wrong password!").status_code == 401
    assert sign_in(client, "nobody@florent.test").status_code == 401
    assert sign_in(client, "vic@florent.test").status_code == 302
    page = client.get("/admin/").get_data(as_text=True)
    client.post("/admin/logout", data={"csrf_token": csrf_token(page)})

    events = [(e.action, e.actor_kind, e.actor_id) for e in trail(app)]
    assert events == [
        (audit.STAFF_CREATED, "operator", "tests"),
        (audit.STAFF_SIGN_IN_FAILED, "staff", "vic@florent.test"),
        (audit.STAFF_SIGN_IN_FAILED, "staff", "nobody@florent.test"),
        (audit.STAFF_SIGNED_IN, "staff", "vic@florent.test"),
        (audit.STAFF_SIGNED_OUT, "staff", "vic@florent.test"),
    ]
    assert all(e.client_address == "127.0.0.1" for e in trail(app)[1:])


def test_staff_created_and_deactivated_with_the_cli_are_recorded(app, monkeypatch):
    monkeypatch.setenv("USER", "ops-oncall")
    monkeypatch.delenv("SUDO_USER", raising=False)
    runner = app.test_cli_runner()
    runner.invoke(
        args=["staff", "create", "ada@florent.test", "--role", "admin"],
        input=f"{PASSWORD}\n{PASSWORD}\n",
    )
    runner.invoke(args=["staff", "deactivate", "ada@florent.test"])

    events = [(e.action, *who(e)) for e in trail(app)]
    assert events == [
        (audit.STAFF_CREATED, "operator", "ops-oncall", "ada@florent.test"),
        (audit.STAFF_DEACTIVATED, "operator", "ops-oncall", "ada@florent.test"),
    ]


def test_an_admin_deactivating_staff_is_recorded(app, administrator):
    staff_id = make_staff(app, "other@florent.test")
    confirm = administrator.get(f"/admin/staff/deactivate/?id={staff_id}").get_data(as_text=True)
    administrator.post(
        f"/admin/staff/deactivate/?id={staff_id}", data={"csrf_token": csrf_token(confirm)}
    )

    [event] = trail(app, audit.STAFF_DEACTIVATED)
    assert who(event) == ("staff", "admin@florent.test", "other@florent.test")


def test_staff_opening_a_conversations_messages_is_recorded(app, viewer, conversation):
    key = f"{conversation['_id']}"
    with app.app_context():
        org = db.session.scalar(text("SELECT org_id FROM conversations"))
        message_id = db.session.scalar(text("SELECT id FROM messages LIMIT 1"))
    assert viewer.get(f"/admin/conversations/details/?id={org},{key}").status_code == 200
    assert viewer.get(f"/admin/messages/details/?id={org},{message_id}").status_code == 200
    assert viewer.get("/admin/conversations/").status_code == 200  # a list opens nothing

    events = trail(app, audit.CONVERSATION_OPENED)
    assert [(e.org_id, *who(e)) for e in events] == [
        ("org_01ACME", "staff", "viewer@florent.test", key),
        ("org_01ACME", "staff", "viewer@florent.test", key),
    ]


def cells(page: str, column: str) -> list[str]:
    """The values of one column of an admin list, top to bottom."""
    return re.findall(rf'<td class="col-{column}">\s*(.*?)\s*</td>', page, re.DOTALL)


def test_the_messages_list_shows_no_content_and_opening_a_message_is_recorded(
    app, viewer, conversation, sql_statements
):
    """Contents are seen only where opening them is recorded: not in the list of
    everyone's messages, filtered by conversation or not; on a message's own page."""
    for url in ("/admin/messages/", f"/admin/messages/?flt0_0={conversation['_id']}"):
        page = viewer.get(url).get_data(as_text=True)
        assert page.count(">Quarterly roadmap</a>") == 2, url  # both messages are listed
        assert "budget" not in page and "hiring plan" not in page, url
        assert cells(page, "role") == ["user", "user"], url
        assert cells(page, "status") == ["complete", "complete"], url
        assert sorted(cells(page, "content_chars")) == ["18", "22"], url
    assert not [s for s in sql_statements if re.search(r"messages\.content\b(?!_)", s)]
    assert trail(app, audit.CONVERSATION_OPENED) == []

    with app.app_context():
        message_id = db.session.scalar(
            text("SELECT id FROM messages WHERE content = 'First, the budget.'")
        )
    page = viewer.get(f"/admin/messages/details/?id=org_01ACME,{message_id}")
    assert "First, the budget." in page.get_data(as_text=True)
    [event] = trail(app, audit.CONVERSATION_OPENED)
    assert (event.org_id, *who(event)) == (
        "org_01ACME",
        "staff",
        "viewer@florent.test",
        conversation["_id"],
    )


# -- Append-only -----------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_events SET action = 'nothing.happened'",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
        "TRUNCATE api_keys, audit_events",
    ],
)
def test_the_database_refuses_to_change_or_delete_events(app, statement):
    with app.app_context():
        issue_api_key("org_01ACME", "bridge", by=TESTER)
        with pytest.raises(DBAPIError) as refused:
            db.session.execute(text(statement))
        db.session.rollback()
        assert isinstance(refused.value.orig, psycopg.errors.InsufficientPrivilege)
        assert db.session.scalar(text("SELECT action FROM audit_events")) == audit.KEY_ISSUED


# -- Reading the trail -------------------------------------------------------------


def test_audit_list_prints_json_lines_filtered_by_organization_and_time(app):
    with app.app_context():
        issue_api_key("org_01ACME", "acme", by=TESTER)
        issue_api_key("org_02OTHER", "other", by=TESTER)
    runner = app.test_cli_runner()

    everything = [
        json.loads(line) for line in runner.invoke(args=["audit", "list"]).stdout.splitlines()
    ]
    acme = runner.invoke(args=["audit", "list", "--org", "org_01ACME"]).stdout.splitlines()
    later = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    future = runner.invoke(args=["audit", "list", "--since", later]).stdout
    bad = runner.invoke(args=["audit", "list", "--since", "yesterday"])

    assert [e["org_id"] for e in everything] == ["org_01ACME", "org_02OTHER"]
    assert set(everything[0]) == {
        "id",
        "occurred_at",
        "org_id",
        "actor_kind",
        "actor_id",
        "acting_for",
        "action",
        "target",
        "request_id",
        "client_address",
    }
    assert [json.loads(line)["org_id"] for line in acme] == ["org_01ACME"]
    assert future == ""
    assert bad.exit_code == 2 and "ISO 8601" in bad.output


def test_the_admin_trail_is_for_admins_only(app, viewer):
    assert viewer.get("/admin/audit/").status_code == 403


def test_admins_read_and_filter_the_trail_but_cannot_change_it(app, administrator):
    with app.app_context():
        issue_api_key("org_01ACME", "acme", by=TESTER)
        issue_api_key("org_02OTHER", "other", by=TESTER)

    page = administrator.get("/admin/audit/").get_data(as_text=True)
    assert "org_02OTHER" in page and "api_key.issued" in page and "staff.signed_in" in page
    filtered = administrator.get("/admin/audit/?flt0_0=org_02OTHER").get_data(as_text=True)
    assert "org_02OTHER" in filtered and "org_01ACME" not in filtered
    for change in ("new/", "edit/?id=x", "delete/"):
        assert administrator.get(f"/admin/audit/{change}").status_code in (302, 404, 405)


# -- A person's erasure ------------------------------------------------------------


def test_people_erase_removes_a_persons_data_and_events_and_records_that_it_did(
    app, client, alice, bob, monkeypatch
):
    monkeypatch.setenv("USER", "dpo")
    monkeypatch.delenv("SUDO_USER", raising=False)
    with app.app_context():
        _, plaintext = issue_api_key("org_01ACME", "bridge", by=TESTER, can_impersonate=True)
    acting_for_alice = {**bearer(plaintext), "X-Act-As-User": "user_01ALICE"}
    create_conversation(client, acting_for_alice, title="Alice's, through the key")
    create_conversation(client, alice, title="Alice's")
    bobs = create_conversation(client, bob, title="Bob's")
    client.get(URL, headers={**bearer(plaintext), "X-Act-As-User": "user_01BOB"})
    runner = app.test_cli_runner()

    refused = runner.invoke(
        args=["people", "erase", "--org", "org_01ACME", "--user", "user_01ALICE"]
    )
    assert refused.exit_code != 0  # asks first
    result = runner.invoke(
        args=["people", "erase", "--org", "org_01ACME", "--user", "user_01ALICE", "--yes"]
    )

    assert result.exit_code == 0, result.output
    assert "Erased 2 conversations and 1 audit events" in result.output
    assert client.get(URL, headers=alice).get_json()["conversations"] == []
    assert [c["_id"] for c in client.get(URL, headers=bob).get_json()["conversations"]] == [
        bobs["_id"]
    ]
    remaining = trail(app)
    assert all(e.acting_for != "user_01ALICE" for e in remaining)
    assert [e.acting_for for e in remaining if e.action.startswith("api.")] == ["user_01BOB"]
    [erased] = trail(app, audit.PERSON_ERASED)
    assert (erased.org_id, *who(erased)) == ("org_01ACME", "operator", "dpo", "user_01ALICE")
    with app.app_context(), pytest.raises(DBAPIError):
        db.session.execute(text("DELETE FROM audit_events"))  # still append-only after


def erase(app: Flask, user_id: str) -> str:
    result = app.test_cli_runner().invoke(
        args=["people", "erase", "--org", "org_01ACME", "--user", user_id, "--yes"]
    )
    assert result.exit_code == 0, result.output
    return result.output


def test_erasing_a_person_named_like_a_key_leaves_the_keys_events_about_others(
    app, client, monkeypatch
):
    """A key may act for any well-formed id, its own key id included: the person of that
    id is erased, and with them only the events about them, never the key's."""
    monkeypatch.setenv("USER", "dpo")
    monkeypatch.delenv("SUDO_USER", raising=False)
    with app.app_context():
        made, plaintext = issue_api_key("org_01ACME", "bridge", by=TESTER, can_impersonate=True)
    hers = create_conversation(client, {**bearer(plaintext), "X-Act-As-User": "user_01ALICE"})
    create_conversation(client, {**bearer(plaintext), "X-Act-As-User": made.id})

    output = erase(app, made.id)

    assert f"Erased 1 conversations and 1 audit events of {made.id}" in output
    assert [(e.action, e.actor_id, e.acting_for, e.target) for e in trail(app)] == [
        (audit.KEY_ISSUED, "tests", None, made.id),
        ("api.create_conversation", made.id, "user_01ALICE", hers["_id"]),
        (audit.PERSON_ERASED, "dpo", None, made.id),
    ]


def test_erasing_a_person_named_like_an_operator_leaves_the_operators_events(
    app, client, monkeypatch
):
    monkeypatch.setenv("USER", "user_01ALICE")
    monkeypatch.delenv("SUDO_USER", raising=False)
    result = app.test_cli_runner().invoke(
        args=["api-keys", "create", "--org", "org_01ACME", "--name", "bridge"]
    )
    assert result.exit_code == 0, result.output

    output = erase(app, "user_01ALICE")

    assert "Erased 0 conversations and 0 audit events" in output
    assert [(e.action, e.actor_id) for e in trail(app)] == [
        (audit.KEY_ISSUED, "user_01ALICE"),
        (audit.PERSON_ERASED, "user_01ALICE"),
    ]
