"""A conversation's messages come a page at a time: the newest with the conversation,
earlier ones going back with a signed cursor; no page and no conversation is unbounded."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from florent.conversations import messages
from florent.extensions import db

from .conftest import recorded_statements
from .factories import URL, append_message, create_conversation
from .test_pagination import explain


def insert_messages(app, conversation_id: str, count: int, content: str = "m") -> None:
    """`count` messages, one millisecond apart, numbered in their content from 1."""
    with app.app_context():
        db.session.execute(
            text(
                """
                INSERT INTO messages (org_id, id, conversation_id, role, content, created_at)
                SELECT (SELECT org_id FROM conversations WHERE id = :conversation),
                       lpad(to_hex(n), 24, '0'), :conversation,
                       CASE WHEN n % 2 = 1 THEN 'user' ELSE 'assistant' END,
                       n || ' ' || :content,
                       timestamptz '2026-01-01T00:00:00Z' + n * interval '1 ms'
                FROM generate_series(1, :count) AS n
                """
            ),
            {"conversation": conversation_id, "count": count, "content": content},
        )
        db.session.execute(
            text(
                "UPDATE conversations SET message_count = :count, "
                "last_message_at = timestamptz '2026-01-01T00:00:00Z' + :count * interval '1 ms'"
                " WHERE id = :conversation"
            ),
            {"conversation": conversation_id, "count": count},
        )
        db.session.commit()


def numbers(messages: list[dict]) -> list[int]:
    return [int(m["content"].split()[0]) for m in messages]


def page_back(client, caller, conversation_id: str, cursor: str | None, limit: int) -> list[int]:
    seen: list[int] = []
    while cursor is not None:
        response = client.get(
            f"{URL}/{conversation_id}/messages",
            query_string={"limit": limit, "cursor": cursor},
            headers=caller,
        )
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        assert set(body) == {"messages", "olderMessagesCursor"}
        seen = numbers(body["messages"]) + seen
        cursor = body["olderMessagesCursor"]
    return seen


@pytest.fixture
def long_conversation(app, client, alice) -> str:
    conversation = create_conversation(client, alice, title="Long")
    insert_messages(app, conversation["_id"], 250)
    return conversation["_id"]


def test_get_has_the_newest_messages_oldest_first_and_a_cursor_for_the_rest(
    client, alice, long_conversation
):
    body = client.get(f"{URL}/{long_conversation}", headers=alice).get_json()
    assert numbers(body["messages"]) == list(range(151, 251))
    assert body["conversation"]["messageCount"] == 250
    assert body["olderMessagesCursor"]

    few = client.get(f"{URL}/{long_conversation}?messagesLimit=10", headers=alice).get_json()
    assert numbers(few["messages"]) == list(range(241, 251))


def test_paging_back_sees_every_message_once_in_order(client, alice, long_conversation):
    first = client.get(f"{URL}/{long_conversation}?messagesLimit=30", headers=alice).get_json()
    earlier = page_back(client, alice, long_conversation, first["olderMessagesCursor"], 37)
    assert earlier + numbers(first["messages"]) == list(range(1, 251))

    newest = client.get(f"{URL}/{long_conversation}/messages?limit=200", headers=alice)
    assert numbers(newest.get_json()["messages"]) == list(range(51, 251))


def test_a_conversation_with_few_messages_has_no_older_cursor(client, alice):
    conversation = create_conversation(client, alice)
    append_message(client, alice, conversation["_id"], "only")
    body = client.get(f"{URL}/{conversation['_id']}?messagesLimit=1", headers=alice).get_json()
    assert [m["content"] for m in body["messages"]] == ["only"]
    assert body["olderMessagesCursor"] is None
    pages = client.get(f"{URL}/{conversation['_id']}/messages", headers=alice).get_json()
    assert pages == {"messages": body["messages"], "olderMessagesCursor": None}


@pytest.mark.parametrize(
    "query",
    [
        "?messagesLimit=0",
        "?messagesLimit=201",
        "?messagesLimit=ten",
        "?messagesLimit=",
    ],
)
def test_bad_get_parameters_are_400_invalid_query(client, alice, long_conversation, query):
    response = client.get(f"{URL}/{long_conversation}{query}", headers=alice)
    assert (response.status_code, response.get_json()["error"]) == (400, "invalid_query")


@pytest.mark.parametrize("query", ["?limit=0", "?limit=201", "?limit=x", "?cursor=", "?cursor=zz"])
def test_bad_page_parameters_are_400_invalid_query(client, alice, long_conversation, query):
    response = client.get(f"{URL}/{long_conversation}/messages{query}", headers=alice)
    assert (response.status_code, response.get_json()["error"]) == (400, "invalid_query")


def test_a_cursor_works_for_its_caller_and_its_conversation_only(
    client, app, alice, bob, long_conversation
):
    cursor = client.get(f"{URL}/{long_conversation}", headers=alice).get_json()[
        "olderMessagesCursor"
    ]
    other = create_conversation(client, alice)["_id"]
    insert_messages_elsewhere = client.get(
        f"{URL}/{other}/messages", query_string={"cursor": cursor}, headers=alice
    )
    assert insert_messages_elsewhere.status_code == 400
    conversation_list = client.get(URL, query_string={"cursor": cursor}, headers=alice)
    assert conversation_list.status_code == 400
    intruder = client.get(
        f"{URL}/{long_conversation}/messages", query_string={"cursor": cursor}, headers=bob
    )
    assert intruder.status_code in (400, 404)
    assert client.get(f"{URL}/{long_conversation}/messages", headers=bob).status_code == 404


def test_a_page_stops_at_its_byte_budget_and_the_rest_follows(app, client, alice, monkeypatch):
    conversation = create_conversation(client, alice)["_id"]
    insert_messages(app, conversation, 20, content="é" * 32_000)  # 64,000 bytes each
    monkeypatch.setattr(messages, "PAGE_CONTENT_BYTES", 200_000)

    body = client.get(f"{URL}/{conversation}", headers=alice).get_json()
    assert numbers(body["messages"]) == [17, 18, 19, 20]  # 3 x 64,000 before the 4th < 200,000
    earlier = page_back(client, alice, conversation, body["olderMessagesCursor"], 200)
    assert earlier == list(range(1, 17))


@pytest.mark.slow  # a large data set
def test_a_page_reads_the_order_index_backwards_without_a_sort(app, client, alice):
    conversation = create_conversation(client, alice)["_id"]
    insert_messages(app, conversation, 20_000)
    with app.app_context():
        db.session.execute(text("ANALYZE messages"))
        db.session.commit()
    first = client.get(f"{URL}/{conversation}?messagesLimit=50", headers=alice).get_json()

    for url in (
        f"{URL}/{conversation}",
        f"{URL}/{conversation}/messages?limit=200&cursor={first['olderMessagesCursor']}",
    ):
        with recorded_statements(app) as statements:
            assert client.get(url, headers=alice).status_code == 200
        (page,) = [(sql, params) for sql, params in statements if "FROM messages" in sql]
        plan = explain(app, *page)
        assert "Index Scan Backward using ix_messages_conversation_order" in plan, plan
        assert "Sort" not in plan, plan


def test_a_full_conversation_refuses_the_next_message_and_stores_nothing(
    make_app, jwks_server, alice
):
    app = make_app(jwks_server.url, max_messages=3)
    client = app.test_client()
    conversation = create_conversation(client, alice)["_id"]
    for n in range(3):
        append_message(client, alice, conversation, f"m{n}")

    refused = client.post(
        f"{URL}/{conversation}/messages", json={"content": "one more"}, headers=alice
    )

    assert (refused.status_code, refused.get_json()) == (409, {"error": "conversation_full"})
    body = client.get(f"{URL}/{conversation}", headers=alice).get_json()
    assert body["conversation"]["messageCount"] == 3
    assert [m["content"] for m in body["messages"]] == ["m0", "m1", "m2"]
