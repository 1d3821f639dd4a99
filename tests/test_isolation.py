"""Nothing crosses callers: not another user in the organization, not the same user id
in another organization, not an API key of the same organization."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from florent.extensions import db
from florent.models import Conversation

from .factories import URL, append_message, create_conversation

OTHERS = ["bob", "alice_elsewhere", "robot"]


@pytest.fixture
def owned(client, alice):
    conversation = create_conversation(client, alice, title="Alice's secret plan")
    append_message(client, alice, conversation["_id"], "the secret")
    return conversation


@pytest.mark.parametrize("other", OTHERS)
def test_others_cannot_read_list_rename_delete_or_append(app, client, alice, owned, other, request):
    intruder = request.getfixturevalue(other)
    path = f"{URL}/{owned['_id']}"

    assert client.get(URL, headers=intruder).get_json() == {"conversations": [], "nextCursor": None}
    for response in (
        client.get(path, headers=intruder),
        client.patch(path, json={"title": "pwned"}, headers=intruder),
        client.post(f"{path}/messages", json={"content": "pwned"}, headers=intruder),
        client.delete(path, headers=intruder),
    ):
        assert response.status_code == 404
        assert response.get_json() == {"error": "not_found"}

    detail = client.get(path, headers=alice).get_json()
    assert detail["conversation"]["title"] == "Alice's secret plan"
    assert detail["conversation"]["messageCount"] == 1
    assert [m["content"] for m in detail["messages"]] == ["the secret"]


def test_each_caller_lists_only_their_own(client, alice, bob, alice_elsewhere, robot):
    mine = {
        create_conversation(client, caller, title=name)["_id"]: name
        for name, caller in [
            ("alice", alice),
            ("bob", bob),
            ("elsewhere", alice_elsewhere),
            ("robot", robot),
        ]
    }

    for name, caller in [
        ("alice", alice),
        ("bob", bob),
        ("elsewhere", alice_elsewhere),
        ("robot", robot),
    ]:
        listed = client.get(URL, headers=caller).get_json()["conversations"]
        assert [c["title"] for c in listed] == [name]
        assert mine[listed[0]["_id"]] == name


def test_same_user_id_in_two_organizations_are_two_owners(app, client, alice, alice_elsewhere):
    first = create_conversation(client, alice)
    second = create_conversation(client, alice_elsewhere)
    with app.app_context():
        rows = db.session.execute(
            select(Conversation.id, Conversation.org_id, Conversation.user_id)
        ).all()
    assert {(r.id, r.org_id, r.user_id) for r in rows} == {
        (first["_id"], "org_01ACME", "user_01ALICE"),
        (second["_id"], "org_02OTHER", "user_01ALICE"),
    }


def test_an_api_key_cannot_reach_a_member_conversation_nor_a_member_the_keys(client, alice, robot):
    by_key = create_conversation(client, robot, title="robot's")
    assert client.get(f"{URL}/{by_key['_id']}", headers=alice).status_code == 404
    assert client.get(f"{URL}/{by_key['_id']}", headers=robot).status_code == 200
