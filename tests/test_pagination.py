"""GET /api/florent/conversations: keyset pagination, cursors, limits, the index."""

from __future__ import annotations

import base64

import pytest
from sqlalchemy import text

from florent.auth import Caller
from florent.extensions import db

from .conftest import recorded_statements
from .factories import URL, create_conversation

ALICE = Caller("org_01ACME", "user_01ALICE")


def walk(client, caller, limit: int) -> list[list[dict]]:
    pages, cursor = [], None
    while True:
        query = f"?limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        response = client.get(URL + query, headers=caller)
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        pages.append(body["conversations"])
        cursor = body["nextCursor"]
        if cursor is None:
            return pages
        assert len(pages) < 100


def insert_conversations(app, count: int, *, same_updated_at: bool, owner: Caller = ALICE) -> None:
    with app.app_context():
        db.session.execute(
            text(
                """
                INSERT INTO conversations (id, org_id, user_id, title, model, created_at, updated_at)
                SELECT lpad(to_hex(n), 24, '0'), :org, :user, 'Conversation ' || n, 'm', t, t
                FROM generate_series(1, :count) AS n,
                     LATERAL (SELECT CASE WHEN :same THEN timestamptz '2026-01-01T00:00:00Z'
                              ELSE timestamptz '2026-01-01T00:00:00Z' + n * interval '1 ms' END AS t) AS times
                """
            ),
            {"org": owner.org_id, "user": owner.user_id, "count": count, "same": same_updated_at},
        )
        db.session.commit()


@pytest.mark.parametrize("same_updated_at", [False, True])
def test_walking_75_conversations_by_30_gives_30_30_15_each_once_in_order(
    app, client, alice, same_updated_at
):
    insert_conversations(app, 75, same_updated_at=same_updated_at)

    pages = walk(client, alice, 30)

    assert [len(page) for page in pages] == [30, 30, 15]
    rows = [c for page in pages for c in page]
    assert len({c["_id"] for c in rows}) == 75
    keys = [(c["updatedAt"], c["_id"]) for c in rows]
    assert keys == sorted(keys, reverse=True)


def test_most_recently_updated_first_and_updates_move_a_conversation_up(client, alice):
    first = create_conversation(client, alice, title="first")
    second = create_conversation(client, alice, title="second")
    client.patch(f"{URL}/{first['_id']}", json={"title": "first again"}, headers=alice)

    titles = [c["title"] for c in client.get(URL, headers=alice).get_json()["conversations"]]
    assert titles == ["first again", "second"]
    assert second["_id"]


def test_default_limit_is_30_and_last_page_has_null_cursor(app, client, alice):
    insert_conversations(app, 31, same_updated_at=False)
    body = client.get(URL, headers=alice).get_json()
    assert len(body["conversations"]) == 30 and body["nextCursor"]
    everything = client.get(URL + "?limit=31", headers=alice).get_json()
    assert len(everything["conversations"]) == 31
    assert everything["nextCursor"] is None


def test_empty_list(client, alice):
    response = client.get(URL, headers=alice)
    assert response.status_code == 200
    assert response.get_json() == {"conversations": [], "nextCursor": None}


def test_exactly_one_full_page_has_no_next_cursor(app, client, alice):
    insert_conversations(app, 30, same_updated_at=False)
    body = client.get(URL + "?limit=30", headers=alice).get_json()
    assert len(body["conversations"]) == 30
    assert body["nextCursor"] is None


@pytest.mark.parametrize(
    "limit", ["0", "101", "abc", "-1", "1.5", "", "1e2", "99999999999999999999", " "]
)
def test_bad_limit_is_400_invalid_query(client, alice, limit):
    response = client.get(f"{URL}?limit={limit}", headers=alice)
    assert response.status_code == 400
    body = response.get_json()
    assert body["error"] == "invalid_query"
    assert body["issues"][0]["path"] == ["limit"]


@pytest.mark.parametrize("limit", ["1", "100", "50"])
def test_limits_in_range_are_accepted(client, alice, limit):
    assert client.get(f"{URL}?limit={limit}", headers=alice).status_code == 200


def cursor_after_first_page(app, client, caller) -> str:
    insert_conversations(app, 3, same_updated_at=False)
    cursor = client.get(URL + "?limit=1", headers=caller).get_json()["nextCursor"]
    assert cursor
    return cursor


def tamper(cursor: str) -> str:
    raw = bytearray(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    raw[3] = ord("9") if raw[3] != ord("9") else ord("8")
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "mangle",
    [
        tamper,
        lambda c: c[:-2],
        lambda c: c + "AAAA",
        lambda c: "garbage",
        lambda c: "%%%%",
        lambda c: "é",
        lambda c: "x" * 500,
        lambda c: base64.urlsafe_b64encode(b"1700000000000:" + b"0" * 24).decode(),
    ],
)
def test_tampered_or_malformed_cursor_is_400(app, client, alice, mangle):
    cursor = cursor_after_first_page(app, client, alice)
    response = client.get(URL, query_string={"cursor": mangle(cursor)}, headers=alice)
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_query"


def test_another_callers_cursor_is_400(app, client, alice, bob, alice_elsewhere):
    cursor = cursor_after_first_page(app, client, alice)
    for other in (bob, alice_elsewhere):
        response = client.get(URL, query_string={"cursor": cursor}, headers=other)
        assert response.status_code == 400
        assert response.get_json()["error"] == "invalid_query"


def explain_request(app, client, caller, url: str) -> list[str]:
    """EXPLAIN the SELECTs a request runs, exactly as SQLAlchemy sent them."""
    with recorded_statements(app) as statements:
        assert client.get(url, headers=caller).status_code == 200
    selects = [(sql, params) for sql, params in statements if sql.lstrip().startswith("SELECT")]
    return [explain(app, sql, params) for sql, params in selects]


def explain(app, sql: str, params) -> str:
    with app.app_context(), db.engine.connect() as connection:
        cursor = connection.connection.cursor()
        cursor.execute(f"EXPLAIN {sql}", params)
        return "\n".join(row[0] for row in cursor.fetchall())


def insert_others(app, count: int, *, org: str, user: str) -> None:
    """`count` conversations newer than Alice's, of the organization and person that the
    SQL expressions `org` and `user` (of n, 1 to count) name; then fresh statistics."""
    with app.app_context():
        db.session.execute(
            text(
                "INSERT INTO conversations (id, org_id, user_id, title, model) "
                f"SELECT lpad(to_hex(n + 100000), 24, '0'), {org}, {user}, 't', 'm' "
                "FROM generate_series(1, :count) AS n"
            ),
            {"count": count},
        )
        db.session.commit()
        db.session.execute(text("ANALYZE conversations"))
        db.session.commit()


@pytest.mark.slow  # a large data set
def test_a_page_is_an_index_scan_without_a_sort_at_any_depth(app, client, alice):
    insert_conversations(app, 20_000, same_updated_at=False)
    insert_others(app, 20_000, org="'org_' || (n % 50)", user="'user_' || n")

    first = client.get(URL + "?limit=30", headers=alice).get_json()
    deep = walk_to_page(client, alice, 40)  # 4,000 rows deep, within the rate limit
    for url in (URL + "?limit=30", f"{URL}?limit=30&cursor={first['nextCursor']}", deep):
        (plan,) = explain_request(app, client, alice, url)
        assert "Index Scan using ix_conversations_owner_recent" in plan, plan
        assert "Sort" not in plan, plan
        # The cursor is an index condition, not a filter applied after reading rows.
        if "cursor" in url:
            index_condition = next(line for line in plan.splitlines() if "Index Cond:" in line)
            assert "ROW(updated_at" in index_condition, plan
            assert "Filter:" not in plan, plan


def walk_to_page(client, caller, pages: int) -> str:
    cursor = None
    for _ in range(pages):
        query = "?limit=100" + (f"&cursor={cursor}" if cursor else "")
        cursor = client.get(URL + query, headers=caller).get_json()["nextCursor"]
    return f"{URL}?limit=30&cursor={cursor}"


@pytest.mark.slow  # a large data set
def test_a_caller_who_owns_most_of_the_table_still_reads_their_page_along_their_index(
    app, client, alice
):
    """The planner cannot know that someone else holds the newest rows: walking everyone's
    conversations by last update would pass all of those before the caller's first."""
    insert_conversations(app, 20_000, same_updated_at=False)
    insert_others(app, 2_000, org=f"'{ALICE.org_id}'", user="'user_newest'")

    (plan,) = explain_request(app, client, alice, URL + "?limit=30")

    assert "Index Scan using ix_conversations_owner_recent" in plan, plan
    assert "Sort" not in plan, plan
