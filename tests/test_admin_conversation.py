"""A conversation's page in the admin shows its messages 50 at a time, oldest first,
walked by a keyset on (created_at, id) along ix_messages_conversation_order."""

from __future__ import annotations

import html
import re

import pytest
from sqlalchemy import text

from florent.extensions import db

from .conftest import recorded_statements
from .test_admin import (  # noqa: F401 (fixtures, found by their names)
    CONVERSATIONS,
    cheap_password_hashes_fixture,
    viewer_fixture,
)
from .test_pagination import explain

MESSAGE = re.compile(r'data-testid="message-content">(\d+) ')


def insert_messages(app, conversation_id: str, count: int) -> None:
    """`count` messages numbered from 1 in their content, two to a millisecond, so that
    pairs share created_at and only their ids order them."""
    with app.app_context():
        db.session.execute(
            text(
                """
                INSERT INTO messages (org_id, id, conversation_id, role, content, created_at)
                SELECT (SELECT org_id FROM conversations WHERE id = :conversation),
                       lpad(to_hex(n), 24, '0'), :conversation,
                       CASE WHEN n % 2 = 1 THEN 'user' ELSE 'assistant' END,
                       n || ' message',
                       timestamptz '2026-01-01T00:00:00Z' + (n / 2) * interval '1 ms'
                FROM generate_series(1, :count) AS n
                """
            ),
            {"conversation": conversation_id, "count": count},
        )
        db.session.execute(
            text("UPDATE conversations SET message_count = :count WHERE id = :conversation"),
            {"conversation": conversation_id, "count": count},
        )
        db.session.commit()


def new_conversation(app, caller: dict[str, str], title: str = "Long") -> str:
    made = app.test_client().post(CONVERSATIONS, json={"title": title}, headers=caller)
    assert made.status_code == 201
    return made.get_json()["conversation"]["_id"]


@pytest.fixture
def long_conversation(app, alice) -> str:
    conversation_id = new_conversation(app, alice)
    insert_messages(app, conversation_id, 120)
    return conversation_id


def details(client, conversation_id: str, **query: str) -> str:
    response = client.get(
        "/admin/conversations/details/",
        query_string={"id": f"org_01ACME,{conversation_id}", **query},
    )
    assert response.status_code == 200
    return response.get_data(as_text=True)


def shown(page: str) -> list[int]:
    return [int(n) for n in MESSAGE.findall(page)]


def link(page: str, label: str) -> str | None:
    found = re.search(rf'href="([^"]+)">{label}</a>', page)
    return html.unescape(found.group(1)) if found else None


def test_the_first_page_is_the_first_50_messages_oldest_first(viewer, long_conversation):
    page = details(viewer, long_conversation)

    assert shown(page) == list(range(1, 51))
    assert "120 messages, 50 to a page." in page
    assert link(page, "Later messages") and link(page, "Latest messages")
    assert link(page, "Earlier messages") is None and link(page, "First messages") is None


def test_later_and_earlier_links_walk_the_whole_conversation_once(viewer, long_conversation):
    pages, url = [], link(details(viewer, long_conversation), "Latest messages")
    while url:
        page = viewer.get(url).get_data(as_text=True)
        pages.append(shown(page))
        url = link(page, "Earlier messages")
    assert pages == [list(range(71, 121)), list(range(21, 71)), list(range(1, 21))]

    pages, url = [], link(details(viewer, long_conversation), "Later messages")
    while url:
        page = viewer.get(url).get_data(as_text=True)
        pages.append(shown(page))
        assert link(page, "First messages") and link(page, "Earlier messages")
        url = link(page, "Later messages")
    assert pages == [list(range(51, 101)), list(range(101, 121))]
    assert link(page, "Latest messages") is None


def test_bad_page_parameters_show_the_first_page(app, viewer, long_conversation, alice):
    other = new_conversation(app, alice, "Other")
    insert_messages(app, other, 0)
    with app.app_context():
        db.session.execute(
            text(
                "INSERT INTO messages (org_id, id, conversation_id, role, content)"
                " SELECT org_id, 'ffffffffffffffffffffffff', id, 'user', '1 elsewhere'"
                " FROM conversations WHERE id = :other"
            ),
            {"other": other},
        )
        db.session.commit()
    third = "0" * 21 + "03c"  # message 60 of the long conversation
    for query in (
        {"after": "nope"},
        {"before": "' OR 1=1 --"},
        {"after": "0" * 24},  # no such message
        {"after": "ffffffffffffffffffffffff"},  # another conversation's message
        {"after": third, "before": third},
        {"latest": "yes"},
        {"latest": third},
        {"after": "\x00"},
        {"before": "9" * 5000},
        {"after": ""},
    ):
        assert shown(details(viewer, long_conversation, **query)) == list(range(1, 51)), query


def test_a_page_is_read_along_the_index_with_no_offset(app, viewer, alice):
    conversation_id = new_conversation(app, alice)
    insert_messages(app, conversation_id, 10_000)
    with app.app_context():
        db.session.execute(text("ANALYZE messages"))
        db.session.commit()
    middle = f"{5_000:024x}"

    for query in ({}, {"after": middle}, {"before": middle}, {"latest": "1"}):
        with recorded_statements(app) as statements:
            page = details(viewer, conversation_id, **query)
        assert len(shown(page)) == 50
        walks = [
            (sql, params) for sql, params in statements if "ORDER BY messages.created_at" in sql
        ]
        assert len(walks) == 1, query
        sql, params = walks[0]
        assert "OFFSET" not in sql.upper() and "LIMIT" in sql.upper()
        plan = explain(app, sql, params)
        assert "ix_messages_conversation_order" in plan, plan
        assert "Sort" not in plan, plan
        if query.keys() & {"after", "before"}:
            index_condition = next(line for line in plan.splitlines() if "Index Cond:" in line)
            assert "ROW(created_at" in index_condition, plan
