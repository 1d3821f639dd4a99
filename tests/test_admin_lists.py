"""The admin's lists: their order, search and filters, and staying fast on big tables
(no COUNT(*), index-served pages)."""

from __future__ import annotations

import html
import re

from sqlalchemy import select, text

from florent import admin
from florent.auth.apikeys import issue_api_key
from florent.extensions import db
from florent.models import Conversation, Message

from .conftest import recorded_statements
from .factories import TESTER, append_message, create_conversation
from .test_admin import (  # noqa: F401 (fixtures, found by their names)
    CONVERSATIONS,
    cheap_password_hashes_fixture,
    conversation_fixture,
    sql_statements_fixture,
    viewer_fixture,
)
from .test_pagination import explain, insert_conversations

# -- Staying fast on big tables ---------------------------------------------------


def test_lists_never_count_their_rows(viewer, conversation, sql_statements):
    for url in ("/admin/conversations/", "/admin/messages/", "/admin/api-keys/?search=x"):
        assert viewer.get(url).status_code == 200
    assert sql_statements
    assert not [s for s in sql_statements if "count(" in s.lower()]


def test_index_counts_exactly_while_tables_are_small(app, viewer, conversation):
    with app.app_context():
        issue_api_key("org_01ACME", "live", by=TESTER)
        revoked, _ = issue_api_key("org_01ACME", "dead", by=TESTER)
        db.session.execute(
            text("UPDATE api_keys SET revoked_at = now() WHERE id = :id"), {"id": revoked.id}
        )
        db.session.commit()

    page = viewer.get("/admin/").get_data(as_text=True)
    counts = re.findall(r'<p class="h3 mb-0">([^<]+)</p>', page)
    assert counts == ["1", "2", "1"]  # conversations, messages, active keys
    assert "about" not in page


def test_index_shows_postgres_estimate_for_large_tables(app, viewer, conversation, monkeypatch):
    monkeypatch.setattr(admin.views.index, "ESTIMATE_ROWS_ABOVE", 1_000_000)
    # Pretend the planner's statistics say the tables are large (the tests' role is a
    # superuser); ANALYZE at the end puts the real figures back for later tests.
    with app.app_context():
        db.session.execute(
            text(
                "UPDATE pg_class SET reltuples = CASE relname WHEN 'conversations' THEN 2500000"
                " ELSE 7000000 END WHERE relname IN ('conversations', 'messages')"
            )
        )
        db.session.commit()
    try:
        page = viewer.get("/admin/").get_data(as_text=True)
    finally:
        with app.app_context():
            db.session.execute(text("ANALYZE conversations, messages"))
            db.session.commit()
    counts = re.findall(r'<p class="h3 mb-0">([^<]+)</p>', page)
    assert counts[:2] == ["about 2,500,000", "about 7,000,000"]
    assert "estimate" in page


# -- Search and filters -------------------------------------------------------------


def test_conversations_are_searched_by_title_owner_and_organization(app, viewer, conversation, bob):
    app.test_client().post(CONVERSATIONS, json={"title": "Office party"}, headers=bob)

    def titles(query: str) -> set[str]:
        page = viewer.get(f"/admin/conversations/?search={query}").get_data(as_text=True)
        return {t for t in ("Quarterly roadmap", "Office party") if t in page}

    assert titles("roadmap") == {"Quarterly roadmap"}
    assert titles("01BOB") == {"Office party"}
    assert titles("org_01ACME") == {"Quarterly roadmap", "Office party"}


def test_conversations_filter_by_organization(app, viewer, conversation, alice_elsewhere):
    app.test_client().post(CONVERSATIONS, json={"title": "Elsewhere"}, headers=alice_elsewhere)
    view = next(v for v in app.extensions["admin"][0]._views if v.endpoint == "conversations")
    index = next(i for i, f in enumerate(view._filters) if f.name == "Organization")

    page = viewer.get(f"/admin/conversations/?flt0_{index}=org_02OTHER").get_data(as_text=True)
    assert "Elsewhere" in page and "Quarterly roadmap" not in page


def test_conversations_list_newest_first(app, viewer):
    # Ids begin with their creation second: these two were made 100 s apart (and, in one
    # transaction, updated at the same time: the id breaks the tie).
    with app.app_context():
        for object_id, title in (
            ("6b49d200" + "f" * 16, "Older"),
            ("6b49d264" + "0" * 16, "Newer"),
        ):
            db.session.add(
                Conversation(id=object_id, org_id="o", user_id="u", title=title, model="m")
            )
        db.session.commit()

    page = viewer.get("/admin/conversations/").get_data(as_text=True)
    assert page.index("Newer") < page.index("Older")

    # The "Created" header sorts (by id, which the primary key index serves).
    ascending = re.search(r'<a href="([^"]+)" title="Sort by Created"', page).group(1)
    page = viewer.get(ascending.replace("&amp;", "&")).get_data(as_text=True)
    assert page.index("Older") < page.index("Newer")


def test_conversations_list_most_recently_updated_first(app, viewer, alice):
    api = app.test_client()
    started_first = create_conversation(api, alice, title="Started first")
    create_conversation(api, alice, title="Started second")
    append_message(api, alice, started_first["_id"], "Back to the first one.")

    page = viewer.get("/admin/conversations/").get_data(as_text=True)
    assert page.index("Started first") < page.index("Started second")

    # The "Updated" header sorts the other way round: least recently updated first.
    ascending = re.search(r'<a href="([^"]+)" title="Sort by Updated"', page).group(1)
    page = viewer.get(html.unescape(ascending)).get_data(as_text=True)
    assert page.index("Started second") < page.index("Started first")


def test_conversation_pages_are_read_along_ix_conversations_recent(app, viewer):
    insert_conversations(app, 20_000, same_updated_at=False)
    with app.app_context():
        db.session.execute(text("ANALYZE conversations"))
        db.session.commit()

    for query in ("", "?page=39", "?sort=7", "?sort=7&desc=1"):
        with recorded_statements(app) as statements:
            assert viewer.get(f"/admin/conversations/{query}").status_code == 200
        (sql, params), *others = [
            (sql, params) for sql, params in statements if "FROM conversations" in sql
        ]
        assert not others, query
        assert "ORDER BY conversations.updated_at" in sql, query
        plan = explain(app, sql, params)
        assert "using ix_conversations_recent" in plan, plan
        assert "Sort" not in plan, plan


def test_messages_list_shows_each_conversations_title_read_in_one_statement(
    app, viewer, alice, sql_statements
):
    api = app.test_client()
    made = {}
    for title in ("Alpha plan", "Beta plan", "Gamma plan"):
        made[title] = create_conversation(api, alice, title=title)["_id"]
        append_message(api, alice, made[title], f"About the {title}.")
    sql_statements.clear()

    page = viewer.get("/admin/messages/").get_data(as_text=True)

    for title, conversation_id in made.items():
        link = rf'<a href="/admin/conversations/details/\?id=org_01ACME,{conversation_id}"[^>]*>{title}</a>'
        assert len(re.findall(link, page)) == 1, title
    assert len([s for s in sql_statements if "FROM conversations" in s]) == 1

    with app.app_context():
        message_id = db.session.scalar(
            select(Message.id).where(Message.conversation_id == made["Beta plan"])
        )
    page = viewer.get(f"/admin/messages/details/?id=org_01ACME,{message_id}")
    page = page.get_data(as_text=True)
    assert re.search(
        rf'href="/admin/conversations/details/\?id=org_01ACME,{made["Beta plan"]}"[^>]*>Beta plan<',
        page,
    )
    assert "About the Beta plan." in page
