"""GET /api/florent/conversations?q=: the caller's conversations that match every word,
in any language, in the list's order and pages, each with a snippet."""

from __future__ import annotations

import re

import pytest
from flask_migrate import upgrade
from sqlalchemy import create_engine, text

from florent.config import sqlalchemy_url
from florent.extensions import db

from .conftest import fresh_database, recorded_statements
from .factories import CONVERSATION_FIELDS, URL, append_message, create_conversation
from .test_pagination import ALICE, insert_conversations

JAPANESE = (
    "昨日は雨でしたが、今日は晴れたので友達と一緒に東京タワーに行きました。とても楽しかったです。"
)


def search(client, caller, q: str, **params) -> dict:
    response = client.get(URL, query_string={"q": q, **params}, headers=caller)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def found(client, caller, q: str) -> list[str]:
    """The titles a search finds, in order."""
    return [c["title"] for c in search(client, caller, q)["conversations"]]


def conversation_with(client, caller, title: str, *contents: str) -> dict:
    conversation = create_conversation(client, caller, title=title)
    for content in contents:
        append_message(client, caller, conversation["_id"], content)
    return conversation


def test_a_word_in_a_title_or_in_a_message_finds_the_conversation(client, alice):
    conversation_with(client, alice, "Budget for the garden")
    conversation_with(client, alice, "Plans", "What will the garden cost?")
    conversation_with(client, alice, "Other", "Nothing to see here")

    assert found(client, alice, "garden") == ["Plans", "Budget for the garden"]
    assert found(client, alice, "GARDEN") == ["Plans", "Budget for the garden"]
    assert found(client, alice, "cost") == ["Plans"]
    assert found(client, alice, "nowhere") == []


def test_a_search_answers_the_list_s_fields_and_a_snippet(client, alice):
    conversation = conversation_with(client, alice, "Garden", "Roses")
    (match,) = search(client, alice, "roses")["conversations"]
    listed = client.get(f"{URL}/{conversation['_id']}", headers=alice).get_json()["conversation"]
    assert list(match) == [*CONVERSATION_FIELDS, "snippet"]
    assert {key: match[key] for key in CONVERSATION_FIELDS} == listed
    assert match["snippet"] == "Roses"


def test_every_word_is_required_in_the_title_or_in_one_message(client, alice):
    conversation_with(client, alice, "Both", "red apples and green pears")
    conversation_with(client, alice, "Apart", "red wine", "apples")
    conversation_with(client, alice, "Red title", "apples")
    conversation_with(client, alice, "One", "red")

    assert found(client, alice, "red apples") == ["Both"]
    assert found(client, alice, "apples red") == ["Both"]
    assert found(client, alice, "  red   pears ") == ["Both"]
    assert found(client, alice, "red") == ["One", "Red title", "Apart", "Both"]


def test_words_are_whole_words_and_never_stemmed(client, alice):
    conversation_with(client, alice, "Running", "I went running every morning")
    assert found(client, alice, "running") == ["Running"]
    assert found(client, alice, "run") == []
    assert found(client, alice, "runnings") == []


@pytest.mark.parametrize(
    ("content", "q"),
    [
        ("We landed in Zürich at noon", "zurich"),
        ("We landed in Zurich at noon", "Zürich"),
        ("We landed in ZÜRICH at noon", "zürich"),
        ("Un été à la plage", "ete plage"),
        ("Die Straße war leer", "strasse"),
        ("Ça coûte cher", "ca coute"),
    ],
)
def test_accents_and_case_are_ignored(client, alice, content, q):
    conversation_with(client, alice, "Travel", content)
    assert found(client, alice, q) == ["Travel"]


@pytest.mark.parametrize(
    ("content", "q"),
    [
        (JAPANESE, "東京タワー"),  # inside a run of text with no spaces
        (JAPANESE, "タワー"),
        (JAPANESE, "友達"),
        (JAPANESE, "東京 楽しかった"),  # every word, anywhere in the message
        ("我们明天去北京开会，讨论新项目的预算。", "北京"),  # noqa: RUF001
        ("내일 서울에서 회의가 있습니다", "서울"),
        ("Встреча в Москве перенесена на завтра", "москве"),
        ("Встреча в Москве перенесена на завтра", "ВСТРЕЧА завтра"),
        ("Συνάντηση στην Αθήνα αύριο", "αθηνα"),
    ],
)
def test_non_latin_scripts_are_found(client, alice, content, q):
    conversation_with(client, alice, "Notes", content)
    assert found(client, alice, q) == ["Notes"]


@pytest.mark.parametrize(
    "q",
    [
        "京都",  # both characters are there, but not side by side
        "東京タワーへ",
        "Москва",  # no stemming in Cyrillic either
    ],
)
def test_non_latin_words_must_be_there_as_they_are_written(client, alice, q):
    conversation_with(client, alice, "Notes", JAPANESE, "Встреча в Москве")
    assert found(client, alice, q) == []


def test_a_japanese_snippet_is_the_text_around_the_word(client, alice):
    conversation_with(client, alice, "Notes", JAPANESE)
    (match,) = search(client, alice, "タワー")["conversations"]
    assert "東京タワー" in match["snippet"]
    assert match["snippet"] in JAPANESE  # the text itself: no markers, nothing inserted
    assert len(match["snippet"]) < len(JAPANESE)


def test_a_snippet_is_plain_text_of_at_most_200_characters_around_the_match(client, alice):
    before = " ".join(f"before{n}" for n in range(300))
    after = " ".join(f"after{n}" for n in range(300))
    content = f"{before}\n\nthe <b>hidden</b>   needle\t& more\n{after}"
    conversation_with(client, alice, "Long", content)

    snippet = search(client, alice, "needle")["conversations"][0]["snippet"]
    assert "needle" in snippet
    assert len(snippet) <= 200
    assert "\n" not in snippet and "\t" not in snippet and "  " not in snippet
    assert "before299" in snippet and "after0" in snippet  # words on either side
    # The text as written, on one line, with nothing marked; markup tags are left out.
    assert "before299 the hidden needle & more after0" in snippet


def test_long_words_are_cut_to_200_characters(client, alice):
    conversation_with(client, alice, "Long", "x" * 150 + " needle " + "y" * 150)
    snippet = search(client, alice, "needle")["conversations"][0]["snippet"]
    assert len(snippet) == 200
    assert "needle" in snippet


def test_the_snippet_comes_from_the_title_when_it_matches(client, alice):
    conversation_with(client, alice, "Trip to Zürich", "Zürich was lovely in spring")
    (match,) = search(client, alice, "zurich")["conversations"]
    assert match["snippet"] == "Trip to Zürich"


def test_the_snippet_comes_from_the_best_matching_message(client, alice):
    conversation_with(
        client,
        alice,
        "Walks",
        "The lake was one stop of many on a very long walk around the town and hills",
        "Lake, lake and lake: nothing but the lake",
        "Mountains, no water at all",
    )
    (match,) = search(client, alice, "lake")["conversations"]
    assert match["snippet"] == "Lake, lake and lake: nothing but the lake"


def test_a_search_of_no_word_finds_nothing(client, alice):
    conversation_with(client, alice, "Punctuation", "!!! ??? ...")
    assert found(client, alice, "!!!") == []
    assert found(client, alice, "...") == []


# -- Pagination --------------------------------------------------------------------


def matching_five(app, client, alice) -> list[str]:
    """Five matching conversations between others that do not match; their ids, most
    recently updated first."""
    insert_conversations(app, 10, same_updated_at=False)  # "Conversation n", not matching
    ids = []
    for n in range(5):
        ids.append(conversation_with(client, alice, f"Match {n}", "the magic word")["_id"])
        create_conversation(client, alice, title=f"Filler {n}")
    return ids[::-1]


def test_walking_five_matches_two_at_a_time_gives_each_once_in_order(app, client, alice):
    expected = matching_five(app, client, alice)
    pages, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        body = search(client, alice, "magic", **params)
        pages.append([c["_id"] for c in body["conversations"]])
        cursor = body["nextCursor"]
        if cursor is None:
            break
        assert len(pages) < 10
    assert [len(page) for page in pages] == [2, 2, 1]
    assert [c for page in pages for c in page] == expected


def test_without_q_the_list_is_as_it_was(app, client, alice):
    matching_five(app, client, alice)
    body = client.get(URL + "?limit=3", headers=alice).get_json()
    assert set(body) == {"conversations", "nextCursor"}
    assert [list(c) for c in body["conversations"]] == [CONVERSATION_FIELDS] * 3


def test_a_search_cursor_continues_that_search_only(app, client, alice, bob):
    matching_five(app, client, alice)
    cursor = search(client, alice, "magic", limit=2)["nextCursor"]
    plain_cursor = client.get(URL + "?limit=2", headers=alice).get_json()["nextCursor"]

    refused = [
        client.get(URL, query_string={"cursor": cursor}, headers=alice),
        client.get(URL, query_string={"q": "word", "cursor": cursor}, headers=alice),
        client.get(URL, query_string={"q": "magic word", "cursor": cursor}, headers=alice),
        client.get(URL, query_string={"q": "magic", "cursor": plain_cursor}, headers=alice),
        client.get(URL, query_string={"q": "magic", "cursor": cursor}, headers=bob),
    ]
    for response in refused:
        assert response.status_code == 400
        assert response.get_json()["error"] == "invalid_query"
        assert response.get_json()["issues"][0]["path"] == ["cursor"]
    assert len(search(client, alice, "magic", cursor=cursor)["conversations"]) == 3


# -- Isolation ---------------------------------------------------------------------


def test_other_people_s_matches_never_appear(client, alice, bob, alice_elsewhere, robot):
    conversation_with(client, alice, "Mine", "the secret recipe")
    for other in (bob, alice_elsewhere, robot):
        conversation_with(client, other, "Secret recipe", "the secret recipe")

    assert found(client, alice, "secret recipe") == ["Mine"]
    assert found(client, bob, "secret recipe") == ["Secret recipe"]
    assert found(client, alice_elsewhere, "secret recipe") == ["Secret recipe"]


@pytest.mark.slow  # a large data set
def test_others_matching_messages_are_never_read(app, client, alice):
    """The index walks the caller's matching entries only: EXPLAIN ANALYZE counts the
    rows it gives, with thousands of other people's messages holding the same word."""
    conversation_with(client, alice, "Mine", "the word zebra", "zebra again", "no")
    with app.app_context():
        db.session.execute(text("SET LOCAL statement_timeout = 0"))
        for statement in (
            "INSERT INTO conversations (org_id, id, user_id, title, model) "
            "SELECT CASE WHEN n % 2 = 0 THEN 'org_01ACME' ELSE 'org_' || n % 7 END, "
            "'b' || lpad(to_hex(n), 23, '0'), 'user_' || n % 100, 'Zebra ' || n, 'm' "
            "FROM generate_series(1, 200) AS n",
            "INSERT INTO messages (org_id, id, conversation_id, role, content) "
            "SELECT c.org_id, 'c' || lpad(to_hex(n), 23, '0'), c.id, 'user', 'zebra ' || n "
            "FROM generate_series(1, 20000) AS n "
            "JOIN conversations AS c ON c.id = 'b' || lpad(to_hex(n % 200 + 1), 23, '0')",
            "ANALYZE",
        ):
            db.session.execute(text(statement))
        db.session.commit()

    with recorded_statements(app) as statements:
        assert found(client, alice, "zebra") == ["Mine"]
    (sql, params), *_ = [s for s in statements if "florent_search_query" in s[0]]
    with app.app_context(), db.engine.connect() as connection:
        plan = "\n".join(
            row[0] for row in connection.exec_driver_sql(f"EXPLAIN ANALYZE {sql}", params)
        )
    scan = re.search(r"Bitmap Index Scan on ix_messages_search .*actual .*rows=(\d+)", plan)
    assert scan and int(scan.group(1)) == 2, plan


def test_messages_written_with_sql_learn_their_owner(app, client, alice):
    conversation = create_conversation(client, alice, title="Loaded")
    with app.app_context():
        db.session.execute(
            text(
                "INSERT INTO messages (org_id, id, conversation_id, role, content) "
                "VALUES ('org_01ACME', :id, :conversation, 'user', 'bulk loaded')"
            ),
            {"id": "f" * 24, "conversation": conversation["_id"]},
        )
        db.session.commit()
        owner = db.session.execute(text("SELECT user_id FROM messages")).scalar_one()
        db.session.rollback()
    assert owner == ALICE.user_id
    assert found(client, alice, "bulk") == ["Loaded"]


# -- Bad queries ---------------------------------------------------------------------


@pytest.mark.parametrize("q", ["", " ", "\t", "x" * 201, "a\x00b", "a\x1fb"])
def test_a_bad_q_is_400_invalid_query(client, alice, q):
    response = client.get(URL, query_string={"q": q}, headers=alice)
    assert response.status_code == 400
    body = response.get_json()
    assert body["error"] == "invalid_query"
    assert body["issues"][0]["path"] == ["q"]


def test_q_of_200_characters_is_accepted(client, alice):
    assert search(client, alice, "x" * 200)["conversations"] == []


# -- The migration ------------------------------------------------------------------


def test_the_migration_gives_existing_messages_their_owner_and_words(server_url, make_app):
    url = fresh_database(server_url, "florent_search_migration")
    app = make_app(None, database_url=url)
    engine = create_engine(sqlalchemy_url(url))
    try:
        with app.app_context():
            upgrade(revision="0009")
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO conversations (org_id, id, user_id, title, model) VALUES "
                    "('org_1', 'a' || repeat('0', 23), 'user_1', 'Grüße aus Zürich', 'm'), "
                    "('org_2', 'b' || repeat('0', 23), 'user_2', 'Hello', 'm')"
                )
            )
            connection.execute(
                text(
                    "INSERT INTO messages (org_id, id, conversation_id, role, content) VALUES "
                    "('org_1', 'c' || repeat('0', 23), 'a' || repeat('0', 23), 'user', 'été'), "
                    "('org_2', 'd' || repeat('0', 23), 'b' || repeat('0', 23), 'user', '東京')"
                )
            )
        with app.app_context():
            upgrade()
        with engine.connect() as connection:
            messages = connection.execute(
                text(
                    "SELECT user_id, search @@ florent_search_query(:q) FROM messages ORDER BY id"
                ),
                {"q": "ete"},
            ).all()
            titles = connection.execute(
                text("SELECT search @@ florent_search_query('zurich') FROM conversations")
            ).scalars()
            assert messages == [("user_1", True), ("user_2", False)]
            assert list(titles) == [True, False]
    finally:
        engine.dispose()
